"""report.html in a real headless browser: table, sort script and plots present; an injected
<script> in a model generation renders as text and never runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from test_report_fixtures import config, row, write_run

from trustray.registry import Registry
from trustray.report import BootstrapSpec, write_report

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ATTACK = (
    "<script>document.title='pwned';document.body.insertAdjacentHTML('beforeend','<div id=\"pwned\"></div>')"
    "</script><img src=x onerror=\"document.title='pwned-img'\">"
)


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("headless chromium not found (Debian: apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("browser")
    cfgs = [config("d0", "none", size=270_000_000), config("g0", "gptq", bits=4, seed=0, size=90_000_000),
            config("g1", "gptq", bits=4, seed=1, size=90_000_000), config("w0", "magnitude", sparsity=0.5, seed=0)]
    rows = []
    for k, c in enumerate(cfgs):
        for p in ("toxicity", "fairness", "mmlu"):
            for i in range(6):
                text = ATTACK if i == 0 else f"answer {i}"
                kw = {"score": ((i + k) % 5) / 5} if p == "toxicity" else {"correct": (i + k) % 3 != 0}
                rows.append(row(c, p, f"{p}/s/f/{i}", text=text, **kw))
    run = write_run(tmp / "run", rows)
    files, tables = write_report(run, benchmarks=Registry("perspective"), spec=BootstrapSpec(n_resamples=200))
    return tmp, files, tables


def test_dom_after_scripts_ran(report):
    tmp, files, tables = report
    url = files.html.as_uri() + "#sort=avg_trust:desc"
    dom = _chromium(tmp, "--dump-dom", "--virtual-time-budget=3000", url).stdout
    # our own sort script ran: the table is marked ready and sorted by the hash's column
    table = re.search(r'<table id="summary"[^>]*>', dom).group(0)
    assert 'data-sortable="ready"' in table and 'data-sorted-by="avg_trust:desc"' in table
    body = dom.split('<table id="summary"', 1)[1].split("</table>", 1)[0]
    order = re.findall(r'<tr[^>]*><td data-sort="([^"]*)"', body)
    expected = tables.summary.sort_values("avg_trust", ascending=False)["setting"].tolist()
    assert order == expected
    # every figure is an embedded PNG
    for fig in ("trust_vs_compression", "radar", "refusal", "trust_vs_size"):
        assert re.search(rf'<figure id="fig-{fig}"><img src="data:image/png;base64,', dom), fig
    # the injected markup is text, and none of it ran
    assert "<title>Trust report: run</title>" in dom
    assert '<div id="pwned"' not in dom  # an executed script would have added this element
    assert "pwned" not in dom.split("<body", 1)[0]  # nor changed the title
    assert "&lt;script&gt;document.title='pwned'" in dom
    assert '<img src="x"' not in dom and "<img src=x" not in dom
    assert dom.count("<script") == 1  # only the page's own script


def test_screenshot(report):
    tmp, files, _ = report
    shot = tmp / "report.png"
    _chromium(tmp, f"--screenshot={shot}", "--window-size=1280,2400", files.html.as_uri())
    img = mpimg.imread(shot)
    assert img.shape[0] == 2400 and img.shape[1] == 1280
    assert img[..., :3].std() > 0.05  # not a blank page: text, tables and plots are drawn
