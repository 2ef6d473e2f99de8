(function () {
  "use strict";
  var table = document.getElementById("summary");
  if (!table) { return; }
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  function key(row, col) {
    var v = row.cells[col].getAttribute("data-sort");
    var n = parseFloat(v);
    return v !== "" && !isNaN(n) && isFinite(v) ? n : v;
  }
  function sortBy(col, desc) {
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, col), y = key(b, col);
      var ex = x === "", ey = y === "";
      if (ex || ey) { return ex === ey ? 0 : (ex ? 1 : -1); }  // empty cells last
      var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
      return desc ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    heads[col].setAttribute("aria-sort", desc ? "descending" : "ascending");
    table.setAttribute("data-sorted-by", heads[col].getAttribute("data-key") + (desc ? ":desc" : ":asc"));
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      sortBy(col, th.getAttribute("aria-sort") === "ascending");
    });
  });
  // #sort=<column key>[:desc] sorts on load, so a sorted view can be linked to.
  var m = /sort=([^&:]+)(:desc)?/.exec(decodeURIComponent(location.hash));
  if (m) {
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].getAttribute("data-key") === m[1]) { sortBy(i, !!m[2]); }
    }
  }
  table.setAttribute("data-sortable", "ready");
})();
