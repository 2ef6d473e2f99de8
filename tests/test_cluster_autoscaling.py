"""Autoscaled cloud runs on one machine: a simulated autoscaling cluster (Ray's fake multi-node
provider) with a CPU-less head and GPU worker nodes that the autoscaler adds and removes, running a
sweep on the simulated engine. Checks scale-up from zero, every shard written once, scale-down when
idle, and a worker node lost mid-evaluation (its processes killed, as a spot preemption would)."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from fake_cluster import FakeCluster, start_fake_cluster, wait_for
from test_cli_pipeline import TRUSTRAY
from test_pipeline_ray import expected_shards, read_rows

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "tests" / "specs" / "gpu_sim_sweep.yaml"
# Mirrors cluster/aws-gpu.yaml: a head that runs no work, GPU workers from 0 up to a cap.
WORKER_TYPES = {"gpu_a10g": {"resources": {"CPU": 1, "GPU": 1}, "min_workers": 0, "max_workers": 4}}
KEY = ["config_id", "perspective", "item_id", "generation_index"]


class GPUWatch:
    """Samples the cluster's GPU count in the background: the most seen, and when first above 0."""

    def __init__(self) -> None:
        import ray

        self._ray = ray
        self.max_gpus = 0.0
        self.first_gpu_s: float | None = None
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def gpus(self) -> float:
        return self._ray.cluster_resources().get("GPU", 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            g = self.gpus()
            self.max_gpus = max(self.max_gpus, g)
            if g and self.first_gpu_s is None:
                self.first_gpu_s = time.monotonic() - self._start
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import os

    import ray

    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "TRUSTRAY_DATA")}
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the same on both sides; this cluster is test-local
    os.environ["TRUSTRAY_DATA"] = str(SHARED_DATA)
    fake: FakeCluster = start_fake_cluster(tmp_path_factory.mktemp("fakeray"), head_cpus=0,
                                           worker_types=WORKER_TYPES, idle_timeout_minutes=0.25)
    try:
        ray.init(address=fake.address, log_to_driver=False)
        yield fake
    finally:
        try:
            from ray import serve

            serve.shutdown()
            ray.shutdown()
        finally:
            fake.stop()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="module")
def scaled_sweep(cluster, tmp_path_factory):
    from trustray.config import load_sweep_spec
    from trustray.sweep import run_sweep

    spec = load_sweep_spec(SPEC)
    watch = GPUWatch()
    gpus_before = watch.gpus()
    start = time.monotonic()
    outcome = run_sweep(spec, storage_path=str(tmp_path_factory.mktemp("runs")), data_dir=str(SHARED_DATA),
                        address=cluster.address)
    seconds = time.monotonic() - start
    watch.stop()
    scale_down_s = wait_for(lambda: watch.gpus() == 0, 240, "idle GPU workers to be removed")
    return spec, outcome, {"gpus_before": gpus_before, "max_gpus": watch.max_gpus, "first_gpu_s": watch.first_gpu_s,
                           "sweep_s": seconds, "scale_down_s": scale_down_s}


def test_sweep_scales_gpu_workers_up_from_zero_and_back_down(scaled_sweep):
    spec, outcome, timings = scaled_sweep
    print(f"autoscaling timings: {timings}")
    assert outcome.ok, outcome.errors
    assert timings["gpus_before"] == 0 and timings["max_gpus"] >= 1
    rows, files = read_rows(outcome.run_dir)
    assert set(files) == expected_shards(outcome.run_dir, spec)
    assert rows["config_id"].nunique() == 2 and not rows.duplicated(KEY).any()
    assert set(rows["engine_name"]) == {"simulated"}
    assert len(outcome.metrics) == 2


def test_worker_node_lost_mid_evaluation_is_retried_elsewhere(cluster, scaled_sweep, tmp_path):
    import ray

    spec, reference, _ = scaled_sweep
    results = tmp_path / spec.name / "results"
    # The sweep runs as a driver process of its own, as `ray job submit` would run it: a failed
    # assertion here stops it by pid instead of leaving a sweep thread inside this process while
    # the fixtures shut Ray down. One config at a time, so the node killed is the one evaluating.
    cmd = [TRUSTRAY, "sweep", str(SPEC), "--storage-path", str(tmp_path), "--data-dir", str(SHARED_DATA),
           "--address", cluster.address, "--no-report", "--set", "resources.max_concurrent_trials=1"]

    def evaluating_node() -> str | None:
        if not list(results.glob("config=*/perspective=*/shard-*.parquet")):
            return None
        alive = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")]
        return alive[0]["NodeID"] if alive else None

    with (tmp_path / "sweep.log").open("w") as log:
        runner = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: evaluating_node() is not None or runner.poll() is not None, 600, "the first committed shard")
            assert runner.poll() is None, "the sweep ended before a node could be lost"
            victim = evaluating_node()
            committed = {p: p.stat().st_mtime_ns for p in results.glob("config=*/perspective=*/shard-*.parquet")}
            assert victim and cluster.kill_node(victim) > 0  # the fake provider's node id is the Ray node id
            rc = runner.wait(timeout=900)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait(timeout=60)
    assert rc == 0, (tmp_path / "sweep.log").read_text()[-4000:]
    for p, mtime in committed.items():  # committed shards were kept, not recomputed
        assert p.stat().st_mtime_ns == mtime
    rows, _ = read_rows(tmp_path / spec.name)
    ref, _ = read_rows(reference.run_dir)
    assert not rows.duplicated(KEY).any()
    cols = [*KEY, "output_text", "parsed_label", "correct", "refused"]
    a = rows[cols].sort_values(KEY).reset_index(drop=True)
    b = ref[cols].sort_values(KEY).reset_index(drop=True)
    assert a.equals(b)  # the simulated engine is deterministic: the same table as the undisturbed run
