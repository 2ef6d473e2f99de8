"""The distributed pipeline on a local Ray: a 2-config smoke sweep, an evaluator killed
mid-shard, and a sweep driver killed mid-run and resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from conftest import SHARED_DATA

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "specs" / "tiny_sweep.yaml"


def read_rows(run_dir: Path):
    files = sorted(str(p) for p in (run_dir / "results").glob("config=*/perspective=*/shard-*.parquet"))
    return ds.dataset(files, format="parquet", partitioning=None).to_table().to_pandas(), files


def expected_shards(run_dir: Path, spec) -> set[str]:
    """Every shard path the plan asks for, per config id recorded by the run."""
    import json

    from trustray.data import DataDir
    from trustray.evaluate.store import shard_path
    from trustray.pipeline import eval_context, plan

    out = set()
    for record in (run_dir / "configs").glob("*.json"):
        body = json.loads(record.read_text())
        trial = spec.trials()[0].model_validate(body["trial"])
        for _, shards in plan(trial, body["config_id"], DataDir(SHARED_DATA), eval_context(trial), run_dir).values():
            out |= {str(shard_path(run_dir, s)) for s in shards}
    return out


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    import ray

    os.environ["TRUSTRAY_DATA"] = str(SHARED_DATA)
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             _temp_dir=str(tmp_path_factory.mktemp("ray")), log_to_driver=False)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def sweep_run(ray_session, tmp_path_factory):
    from trustray.config import load_sweep_spec
    from trustray.sweep import run_sweep

    spec = load_sweep_spec(TINY)
    outcome = run_sweep(spec, storage_path=str(tmp_path_factory.mktemp("runs")), data_dir=str(SHARED_DATA))
    return spec, outcome


def test_smoke_sweep_commits_every_shard_once_and_reports_scores(sweep_run):
    spec, outcome = sweep_run
    assert outcome.ok, outcome.errors
    rows, files = read_rows(outcome.run_dir)
    assert set(files) == expected_shards(outcome.run_dir, spec)
    assert rows["config_id"].nunique() == 2
    key = ["config_id", "item_id", "generation_index"]
    assert not rows.duplicated(key).any()
    assert set(rows["method"]) == {"none", "magnitude"}
    assert rows["engine_version"].str.contains("transformers").all()
    assert len(outcome.metrics) == 2
    for m in outcome.metrics:
        for p in ("stereotype", "mmlu"):
            assert 0 <= m[f"{p}/score"] <= 100 and 0 <= m[f"{p}/refusal_rate"] <= 100
        # both replicas' counters: each engine ran, and never longer than the evaluation around it
        assert m["engine_replicas"] == 2 and m["engine_batches"] >= 2
        assert 0 < m["engine_busy_max_s"] <= m["eval_seconds"]
        assert m["engine_busy_max_s"] < m["engine_busy_s"] <= 2 * m["engine_busy_max_s"]
    # the report has a CI for every perspective of every setting, containing its score, and no
    # empty cell without a reason
    from trustray.report import write_report

    report_files, tables = write_report(outcome.run_dir)
    for _, r in tables.summary.iterrows():
        for p in ("stereotype", "mmlu"):
            assert r[f"{p}_ci_low"] <= r[p] <= r[f"{p}_ci_high"], (r["setting"], p)
    assert rows["setting_id"].nunique() == 2 and rows["config_id"].str.len().eq(16).all()
    for line in report_files.summary_md.read_text().splitlines():
        if line.startswith("| ") and "---" not in line:
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            assert all(cells), line
    # a finished sweep re-run does no new work and changes nothing
    from trustray.sweep import run_sweep

    again = run_sweep(spec, storage_path=str(outcome.run_dir.parent), data_dir=str(SHARED_DATA))
    assert again.ok
    assert read_rows(outcome.run_dir)[1] == files


def test_sweep_opens_no_http_listener(sweep_run):
    """Evaluators reach the models through Serve handles: no Serve HTTP proxy runs, so nothing
    of the sweep listens for HTTP (Ray's own cluster ports are Ray's, behind its token auth)."""
    import psutil
    from ray import serve

    from trustray.sweep import SERVE_HTTP_PORT

    assert sweep_run[1].ok
    assert serve.status().proxies == {}
    me = psutil.Process()
    listeners = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            command = " ".join(proc.cmdline())
            conns = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listeners += [(command, c.laddr) for c in conns if c.status == psutil.CONN_LISTEN]
    assert any("raylet" in command for command, _ in listeners)  # the check sees the session's processes
    assert not [(c, a) for c, a in listeners if "ProxyActor" in c or a.port == SERVE_HTTP_PORT]


def test_evaluator_killed_mid_shard_still_completes_without_duplicates(sweep_run, tmp_path):
    import ray
    from ray import serve

    from trustray.benchmarks import BENCHMARKS
    from trustray.data import DataDir
    from trustray.engines.hf import EngineOptions
    from trustray.evaluate.actor import EvaluatorActor
    from trustray.evaluate.plan import Shard
    from trustray.evaluate.store import read_config_rows
    from trustray.pipeline import eval_context
    from trustray.serve import build_model_app

    spec, _ = sweep_run
    trial = spec.trials()[0]
    ctx = eval_context(trial)
    items = BENCHMARKS.get("mmlu").items(DataDir(SHARED_DATA), ctx)[:6]
    serve.run(build_model_app("smollm2-135m", engine_options=EngineOptions(batch_size=8), name="fault"),
              name="fault", route_prefix="/fault")
    try:
        actor = EvaluatorActor.options(num_cpus=0.1).remote("local")
        first_pid = ray.get(actor.pid.remote())
        shard = Shard("faultcfg", "mmlu", 0, 0, len(items))
        from test_report_fixtures import provenance

        prov = provenance("faultcfg")
        ref = actor.run_shard.remote(str(tmp_path), shard, items, ctx, prov, "fault")
        time.sleep(1.0)
        ray.kill(actor, no_restart=False)  # dies mid-shard; Ray restarts it and retries the call
        result = ray.get(ref, timeout=600)
        assert ray.get(actor.pid.remote()) != first_pid
    finally:
        serve.delete("fault")
    assert result.items == len(items)
    rows = read_config_rows(tmp_path, "faultcfg").to_pandas()
    assert len(rows) == len(items) and not rows.duplicated(["item_id", "generation_index"]).any()


def test_driver_killed_mid_sweep_resumes_to_the_same_table(sweep_run, tmp_path):
    _, reference = sweep_run
    env = {**os.environ, "TRUSTRAY_DATA": str(SHARED_DATA), "RAY_ADDRESS": ""}
    cmd = [sys.executable, str(REPO / "sweeps" / "bits_sweep.py"), "--spec", str(TINY),
           "--storage-path", str(tmp_path), "--no-report"]
    results = tmp_path / "tiny" / "results"
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and not list(results.glob("config=*/perspective=*/shard-*.parquet")):
            time.sleep(0.5)
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray, mid-run
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    committed_before = {p: p.stat().st_mtime_ns for p in results.glob("config=*/perspective=*/shard-*.parquet")}
    assert committed_before
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for p, mtime in committed_before.items():  # committed shards were not recomputed
        assert p.stat().st_mtime_ns == mtime
    resumed, _ = read_rows(tmp_path / "tiny")
    ref, _ = read_rows(reference.run_dir)
    key = ["config_id", "item_id", "generation_index"]
    assert not resumed.duplicated(key).any()
    cols = [*key, "output_text", "parsed_label", "correct", "refused"]
    a = resumed[cols].sort_values(key).reset_index(drop=True)
    b = ref[cols].sort_values(key).reset_index(drop=True)
    assert a.equals(b)  # greedy items: identical to the uninterrupted run
