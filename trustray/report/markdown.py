"""``summary.md``: the paper's table layout, refusal rates and the paired comparison."""

from __future__ import annotations

import math

import pandas as pd

from trustray.report.perspectives import label
from trustray.report.summary import Tables


def num(value: object, digits: int = 1) -> str:
    """A number for display; empty for null/NaN."""
    if value is None or value is pd.NA:
        return ""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return "" if math.isnan(v) else f"{v:.{digits}f}"


def pm(mean: object, std: object) -> str:
    """``mean ± std``, or the mean alone where std is undefined (one seed)."""
    m, s = num(mean), num(std)
    return f"{m} ± {s}" if m and s else m


def compression(r: pd.Series) -> str:
    """The bits / sparsity cell of the paper's table."""
    if r["method"] == "none":
        return "16"
    parts = []
    if not pd.isna(r["bits"]):
        parts.append(f"{int(r['bits'])}-bit")
    if isinstance(r["structure"], str) and r["structure"]:
        parts.append(r["structure"])
    elif not pd.isna(r["sparsity"]):
        parts.append(f"{100 * float(r['sparsity']):g}%")
    return " ".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: c.replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(t: Tables, run_name: str) -> str:
    s = t.summary
    out = [f"# Trust report: {run_name}", ""]
    header = ["Setting", "Method", "Bits / sparsity", "Seeds", "Size (MB)",
              *[label(p) for p in t.trust], "Avg trust", *[label(p) for p in t.utility], "PPL"]
    rows = [
        [str(r["setting"]), str(r["method"]), compression(r), str(r["calib_seeds"]),
         num(r["model_size_bytes"] / 1e6), *[pm(r[p], r[f"{p}_std"]) for p in t.trust],
         pm(r["avg_trust"], r["avg_trust_std"]), *[pm(r[p], r[f"{p}_std"]) for p in t.utility],
         pm(r["perplexity"], r["perplexity_std"])]
        for _, r in s.iterrows()
    ]
    out += ["Scores in 0–100 (higher is more trustworthy), mean ± std over calibration seeds.",
            f"DecodingTrust reference: {t.dt_reference or 'not recorded'}.", "",
            _table(header, rows), ""]
    for title, key, legend in (
        ("Refusal rates (%)", "refusal",
         "Each perspective's own refusal rate, as its DecodingTrust source counts it."),
        ("Unparsed answers (%)", "unparsed",
         "Answers with no valid label that are not explicit refusals."),
    ):
        out += [f"## {title}", "", legend, "",
                _table(["Setting", *[label(p) for p in [*t.trust, *t.utility]]],
                       [[str(r["setting"]), *[num(r[f"{p}_{key}"]) for p in [*t.trust, *t.utility]]]
                        for _, r in s.iterrows()]), ""]
    out += ["## 95 % confidence intervals", "",
            "Over calibration seeds where a setting has several; over items (labelled) where it has one.", "",
            _table(["Setting", *[label(p) for p in [*t.trust, *t.utility]]],
                   [[str(r["setting"]), *[_ci(r, p) for p in [*t.trust, *t.utility]]] for _, r in s.iterrows()]), ""]
    if t.baseline is not None and not t.paired.empty:
        legend = (
            "Δ = mean item-level difference (points), 95 % paired-bootstrap CI; ✱ = CI excludes zero. "
            "Flips: safe/correct in the baseline and not in the compressed model (↓), and the reverse (↑). "
            "McNemar exact p for binary outcomes with one seed."
        )
        out += [f"## Paired comparison with {t.baseline.label}", "", legend, ""]
        rows = [
            [str(r["setting"]), label(r["perspective"]),
             f"{num(r['item_delta'])} [{num(r['item_delta_ci_low'])}, {num(r['item_delta_ci_high'])}]"
             + (" ✱" if r["changed"] else ""),
             str(r["flips_to_unsafe"]), str(r["flips_to_safe"]), num(r["mcnemar_p"], 3), str(r["paired_items"])]
            for _, r in t.paired.iterrows()
        ]
        out += [_table(["Setting", "Perspective", "Δ [95 % CI]", "↓", "↑", "McNemar p", "items"], rows), ""]
    if t.notes:
        out += ["## Notes", "", *[f"- {n}" for n in t.notes], ""]
    return "\n".join(out)


def _ci(r: pd.Series, p: str) -> str:
    lo, hi = num(r[f"{p}_ci_low"]), num(r[f"{p}_ci_high"])
    if not lo:
        return ""
    over = r[f"{p}_ci_over"]
    return f"[{lo}, {hi}]" + (" (items)" if over == "items" else "")
