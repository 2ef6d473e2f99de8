"""The seed-variance sweep script end to end on the embedded model: dense + GPTQ 4-bit under two
calibration seeds. The two seeds pool into one setting, every score's interval contains it, and
the run ends with the seed-vs-item variance table."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_DATA

# Two small GPTQ compressions (8 × 64 calibration tokens) and three smoke evaluations: about 9 min
# on a 2-core fp32 CPU, so it stays in `make test` there too.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "tests" / "specs" / "seed_variance_smoke.yaml"
PERSPECTIVES = ["stereotype", "mmlu"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "TRUSTRAY_DATA": str(SHARED_DATA), "RAY_ADDRESS": "", "RAY_TMPDIR": ray_tmp}
    cmd = [sys.executable, str(REPO / "sweeps" / "seed_variance.py"), "--spec", str(SPEC),
           "--storage-path", str(storage)]
    try:
        done = subprocess.run(cmd, env=env, cwd=storage, capture_output=True, text=True, timeout=1500)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return storage / "seed-variance-smoke", done.stdout


def test_two_seeds_pool_into_one_setting_with_intervals_containing_each_score(run):
    run_dir, _ = run
    from trustray.report import read_results

    rows = read_results(run_dir)
    gptq = rows[rows["method"] == "gptq"]
    assert gptq["config_id"].nunique() == 2 and gptq["setting_id"].nunique() == 1
    assert gptq["config_id"].str.len().eq(16).all() and set(gptq["calib_seed"]) == {0, 1}
    # activations at the served dtype: bf16 where the CPU has it, else fp32
    act = {"bfloat16": "16", "float16": "16", "float32": "32"}
    assert (gptq["precision"] == "W4A" + gptq["served_dtype"].map(act)).all()
    assert (gptq["weight_bytes"] < rows["weight_bytes"].max()).all()
    s = pd.read_csv(run_dir / "report" / "summary.csv").set_index("setting")
    assert s.loc["gptq w4g64", "calib_seeds"] == 2 and math.isnan(s.loc["dense", "calib_seeds"])
    for setting in s.index:
        for p in PERSPECTIVES:
            r = s.loc[setting]
            assert r[f"{p}_ci_low"] <= r[p] <= r[f"{p}_ci_high"], (setting, p)
    assert s.loc["gptq w4g64", "mmlu_ci_over"] == "seeds" and s.loc["dense", "mmlu_ci_over"] == "items"
    paired = pd.read_csv(run_dir / "report" / "paired.csv")
    assert len(paired) == len(PERSPECTIVES)
    assert ((paired["delta_ci_low"] <= paired["delta"]) & (paired["delta"] <= paired["delta_ci_high"])).all()


def test_report_and_script_end_with_the_seed_vs_item_split(run):
    run_dir, stdout = run
    v = pd.read_csv(run_dir / "report" / "seed_variance.csv")
    assert sorted(v["perspective"]) == sorted(PERSPECTIVES) and (v["seeds"] == 2).all()
    assert (v["seed_std"] >= 0).all() and (v["item_std"] >= 0).all() and v["verdict"].notna().all()
    # the seed share is seed variance / (seed + item variance): undefined only when both are zero
    # (a perspective every item of which got the same outcome under both seeds, e.g. a smoke MMLU at 0)
    total = v["seed_std"] ** 2 + v["item_std"] ** 2
    assert (v["seed_share"].isna() == (total == 0)).all()
    defined = v[total > 0]
    assert not defined.empty and defined["seed_share"].between(0, 1).all()
    assert (defined["seed_share"] - defined["seed_std"] ** 2 / total[total > 0]).abs().max() < 1e-9
    assert "Calibration-seed noise vs item noise" in (run_dir / "report" / "summary.md").read_text()
    tail = stdout[stdout.index("calibration-seed noise vs item noise"):]
    assert "Stereotype" in tail and "MMLU" in tail
