"""A simulated autoscaling Ray cluster on one machine (Ray's fake multi-node provider).

The head is a real ``ray start --head`` with an autoscaling config whose provider is
``fake_multinode``: the autoscaler "launches" a worker node by starting another raylet on this
machine that advertises the node type's resources (e.g. ``{"CPU": 2, "GPU": 1}``) and removes it
after the idle timeout, as it would on a cloud. ``ray.cluster_utils.AutoscalingCluster`` is not
used: its ``start()`` runs ``ray stop --force`` (every Ray on the machine), and the pip wheel lacks
the example config it reads. Everything started here is stopped by pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

HEAD_TYPE = "ray.head.default"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_config(gcs_address: str, worker_types: Mapping[str, Mapping[str, Any]],
                   idle_timeout_minutes: float) -> dict[str, Any]:
    """The autoscaler config: the launcher YAML's shape with the fake provider."""
    types = {HEAD_TYPE: {"resources": {}, "node_config": {}, "max_workers": 0}}
    for name, t in worker_types.items():
        types[name] = {"node_config": {}, "resources": dict(t["resources"]),
                       "min_workers": int(t.get("min_workers", 0)), "max_workers": int(t["max_workers"])}
    return {
        "cluster_name": "fake-autoscaling",
        "max_workers": sum(int(t["max_workers"]) for t in worker_types.values()),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs_address},
        "available_node_types": types,
        "head_node_type": HEAD_TYPE,
        "docker": {}, "auth": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


@dataclass
class FakeCluster:
    """A running simulated cluster: ``address`` for ``ray.init``, ``temp_dir`` marks its processes."""

    temp_dir: Path
    address: str
    env: dict[str, str]
    head_pid: int = 0
    started: list[int] = field(default_factory=list)

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster (their command lines or environments name its temp dir)."""
        out = []
        marker = str(self.temp_dir)
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if marker in " ".join(p.info["cmdline"] or ()) or p.environ().get("TRUSTRAY_FAKE_CLUSTER") == marker:
                    out.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def worker_node_processes(self, node_id: str) -> list[psutil.Process]:
        """The processes of one fake worker node (they carry its id in their environment)."""
        out = []
        for p in self.processes():
            try:
                if p.environ().get("RAY_OVERRIDE_NODE_ID_FOR_TESTING") == node_id:
                    out.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def kill_node(self, node_id: str) -> int:
        """SIGKILL every process of a worker node, as a spot preemption would; returns how many."""
        procs = self.worker_node_processes(node_id)
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        return len(procs)

    def stop(self) -> None:
        procs = self.processes()
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)


def start_fake_cluster(temp_dir: Path, *, head_cpus: float, worker_types: Mapping[str, Mapping[str, Any]],
                       idle_timeout_minutes: float = 0.25, extra_env: Mapping[str, str] | None = None) -> FakeCluster:
    """Start the head with the fake autoscaler; worker nodes come and go with demand."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    gcs = f"127.0.0.1:{port}"
    config = temp_dir / "autoscaler.json"
    config.write_text(json.dumps(cluster_config(gcs, worker_types, idle_timeout_minutes)))
    env = {**os.environ, **(extra_env or {}), "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"), "TRUSTRAY_FAKE_CLUSTER": str(temp_dir)}
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).parent / "ray")
    cmd = [ray_bin, "start", "--head", f"--port={port}", f"--num-cpus={head_cpus:g}", "--num-gpus=0",
           f"--autoscaling-config={config}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
           "--node-ip-address=127.0.0.1", "--disable-usage-stats",
           # the agent's default HTTP port (52365) is taken whenever another Ray runs on this machine
           f"--dashboard-agent-listen-port={free_port()}"]
    cluster = FakeCluster(temp_dir=temp_dir, address=gcs, env=env)
    try:
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    except BaseException:
        cluster.stop()  # whatever did start
        raise
    return cluster


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 1.0) -> float:
    """Poll ``condition()`` until true; returns the seconds it took, or fails naming ``what``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - start
