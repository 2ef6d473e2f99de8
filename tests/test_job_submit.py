"""`ray job submit` of a sweep script against a `ray start --head` cluster on free ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_job_submit_runs_the_bits_sweep_script(tmp_path):
    ray = str(Path(sys.executable).with_name("ray"))
    # Same auth mode for head and client; a short temp dir (socket paths have a length limit).
    temp = Path("/tmp") / f"trj{os.getpid()}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "TRUSTRAY_DATA": str(SHARED_DATA),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    port, dash = free_port(), free_port()
    head = subprocess.run(
        [ray, "start", "--head", f"--port={port}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
         "--num-cpus=2", "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert head.returncode == 0, head.stderr[-2000:]
    try:
        spec = REPO / "tests" / "specs" / "tiny_sweep.yaml"
        job = subprocess.run(
            [ray, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(REPO), "--",
             "python", "sweeps/bits_sweep.py", "--profile", "smoke", "--spec", str(spec),
             "--storage-path", str(tmp_path), "--perspectives", "stereotype", "--no-report"],
            env=env, capture_output=True, text=True, timeout=1200,
        )
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
    shards = list((tmp_path / "tiny" / "results").glob("config=*/perspective=stereotype/shard-*.parquet"))
    assert len({p.parent.parent.name for p in shards}) == 2
    import pyarrow.dataset as ds

    rows = ds.dataset([str(p) for p in shards], format="parquet", partitioning=None).to_table()
    assert rows.num_rows > 0 and set(rows["profile"].to_pylist()) == {"smoke"}
