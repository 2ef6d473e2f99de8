"""The spec → vLLM serving mapping (CPU and GPU from one builder), the checks that run before
any work, and the one-engine-per-config rule. No Ray or vLLM needed, except the test that
hands the planned app to Ray Serve LLM inside the vLLM venv."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from trustray.config import CompressionSpec, EngineSpec, ResourceSpec, SweepSpec, TrialSpec
from trustray.serve.builder import ServingOptions
from trustray.serve.vllm_serving import (
    VLLMCheckpointError,
    VLLMOptions,
    check_vllm_can_load,
    cpu_has_avx512,
    cpu_loadable_reason,
    plan_vllm_serving,
    quantized_weight_bits,
    vllm_python,
)


def _llm(plan):
    return plan.app_args["llm_configs"][0]


def test_cpu_plan_maps_replicas_cpus_env_and_python(tmp_path):
    plan = plan_vllm_serving(tmp_path, name="cfg", dtype="bfloat16", num_cpus=1.5,
                             serving=ServingOptions(num_replicas=2, max_ongoing_requests=128),
                             options=VLLMOptions(kv_cache_gib=2), python="/opt/vllm/bin/python")
    cfg = _llm(plan)
    assert plan.accelerator == "cpu"
    assert cfg["accelerator_config"] == {"kind": "cpu"}
    # the replica costs exactly model_cpus: the engine's bundle holds them, the actor asks for none
    assert cfg["placement_group_config"] == {"bundle_per_worker": {"CPU": 1.5}}
    assert cfg["deployment_config"]["ray_actor_options"] == {"num_cpus": 0}
    scaling = cfg["deployment_config"]["autoscaling_config"]
    assert scaling["min_replicas"] == scaling["max_replicas"] == 2
    assert cfg["deployment_config"]["max_ongoing_requests"] == 128
    eng = cfg["engine_kwargs"]
    assert eng["dtype"] == "bfloat16" and eng["enforce_eager"] is True and eng["enable_chunked_prefill"] is False
    assert eng["tensor_parallel_size"] == 1 and eng["max_model_len"] == 2048
    env = cfg["runtime_env"]["env_vars"]
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_INT4_W4A8": "0"}
    assert cfg["runtime_env"]["py_executable"] == "/opt/vllm/bin/python"
    ingress = plan.app_args["ingress_deployment_config"]["ray_actor_options"]
    assert ingress["num_cpus"] == 0 and ingress["runtime_env"]["py_executable"] == "/opt/vllm/bin/python"
    assert plan.engine_version("0.29.0") == "0.29.0 cpu int4=w4a16"


def test_cpu_auto_dtype_follows_the_cpu_like_hfengine(tmp_path):
    from trustray.engines.hf import cpu_has_bf16

    eng = _llm(plan_vllm_serving(tmp_path, name="cfg", python=""))["engine_kwargs"]
    assert eng["dtype"] == ("bfloat16" if cpu_has_bf16() else "float32")


def test_gpu_plan_differs_only_in_accelerator_settings(tmp_path):
    opts = VLLMOptions(accelerator_type="L4", engine_kwargs={"gpu_memory_utilization": 0.8})
    plan = plan_vllm_serving(tmp_path, name="cfg", num_cpus=2, serving=ServingOptions(num_gpus=2), options=opts,
                             python="")
    cfg = _llm(plan)
    assert plan.accelerator == "gpu"
    assert "accelerator_config" not in cfg and "placement_group_config" not in cfg
    assert cfg["accelerator_type"] == "L4"
    assert cfg["engine_kwargs"]["tensor_parallel_size"] == 2
    assert cfg["engine_kwargs"]["enforce_eager"] is False and "enable_chunked_prefill" not in cfg["engine_kwargs"]
    assert cfg["engine_kwargs"]["gpu_memory_utilization"] == 0.8
    assert cfg["deployment_config"]["ray_actor_options"] == {"num_cpus": 2}
    assert "env_vars" not in cfg.get("runtime_env", {})
    assert plan.engine_version("0.29.0") == "0.29.0 gpu"
    cpu = _llm(plan_vllm_serving(tmp_path, name="cfg", num_cpus=2, python=""))
    assert cfg["model_loading_config"] == cpu["model_loading_config"]
    device_keys = {"tensor_parallel_size", "enforce_eager", "enable_chunked_prefill", "gpu_memory_utilization",
                   "dtype"}
    assert {k: v for k, v in cfg["engine_kwargs"].items() if k not in device_keys} == {
        k: v for k, v in cpu["engine_kwargs"].items() if k not in device_keys}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"serving": ServingOptions(num_gpus=0.5)}, "whole GPUs"),
        ({"serving": ServingOptions(torch_threads=2)}, "torch_threads"),
        ({"serving": ServingOptions(max_batch_rows=64)}, "max_batch_rows"),
        ({"num_cpus": 0}, "model_cpus"),
        ({"options": VLLMOptions(accelerator_type="L4")}, "needs GPUs"),
    ],
)
def test_settings_vllm_cannot_honour_are_rejected(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_vllm_serving(tmp_path, name="cfg", python="", **kwargs)


def test_engine_kwargs_may_not_override_mapped_settings():
    with pytest.raises(ValueError, match="dtype"):
        VLLMOptions(engine_kwargs={"dtype": "float16"})


def _write_config(path, quantization):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": quantization}))
    return path


def _ct(bits, activations=None):
    return {"quant_method": "compressed-tensors", "config_groups": {
        "group_0": {"weights": {"num_bits": bits, "type": "int"}, "input_activations": activations}}}


def test_weight_bits_of_checkpoints(tmp_path):
    assert quantized_weight_bits(_write_config(tmp_path / "w4", _ct(4))) == 4
    assert quantized_weight_bits(_write_config(tmp_path / "w8", _ct(8))) == 8
    assert quantized_weight_bits(_write_config(tmp_path / "w8a8", _ct(8, {"num_bits": 8}))) is None
    assert quantized_weight_bits(_write_config(tmp_path / "gptq", {"quant_method": "gptq", "bits": 8})) == 8
    assert quantized_weight_bits(_write_config(tmp_path / "dense", None)) is None


def test_w8a16_on_cpu_fails_naming_the_hf_backend(tmp_path):
    w8 = _write_config(tmp_path / "w8", _ct(8))
    with pytest.raises(VLLMCheckpointError, match=r"W8A16.*engine\.backend: hf"):
        check_vllm_can_load(w8, "cpu")
    with pytest.raises(VLLMCheckpointError):
        plan_vllm_serving(w8, name="cfg", python="")
    check_vllm_can_load(w8, "gpu")


def test_w4_on_cpu_needs_avx512(tmp_path):
    # vllm-cpu's AVX2 build has no 4-bit weight kernel: its engine dies at the first request.
    assert cpu_loadable_reason(4, avx512=True) is None and cpu_loadable_reason(None, avx512=False) is None
    assert re.search(r"W4A16.*AVX-512.*engine\.backend: hf", cpu_loadable_reason(4, avx512=False) or "")
    w4 = _write_config(tmp_path / "w4", _ct(4))
    check_vllm_can_load(w4, "gpu")
    check_vllm_can_load(w4, "gpu", "float32")
    if cpu_has_avx512():
        check_vllm_can_load(w4, "cpu")
    else:
        with pytest.raises(VLLMCheckpointError, match="AVX-512"):
            check_vllm_can_load(w4, "cpu")


def test_spec_rejects_what_vllm_cannot_do_at_load_time():
    w8 = CompressionSpec(method="gptq", bits=8, group_size=64)
    with pytest.raises(ValueError, match=r"gptq-w8-g64: vLLM on CPU cannot load W8A16.*backend: hf"):
        SweepSpec(compressions=(CompressionSpec(method="none"), w8), engine=EngineSpec(backend="vllm"))
    # on GPUs the same config is fine, and the HF backend takes it anywhere
    SweepSpec(compressions=(w8,), engine=EngineSpec(backend="vllm"), resources=ResourceSpec(model_gpus=1))
    TrialSpec(compression=w8, engine=EngineSpec(backend="hf"))
    with pytest.raises(ValueError, match="batch_size"):
        EngineSpec(backend="vllm", batch_size=8)
    # what Tune hands a trial: the full dump of the spec, defaults included
    trial = TrialSpec(engine=EngineSpec(backend="vllm"))
    assert TrialSpec.model_validate(trial.model_dump(mode="json")) == trial
    with pytest.raises(ValueError, match="torch_threads"):
        TrialSpec(engine=EngineSpec(backend="vllm"), resources=ResourceSpec(torch_threads=1))
    assert EngineSpec(backend="vllm", vllm={"kv_cache_gib": 2}).vllm.kv_cache_gib == 2


def test_vllm_python_from_env_then_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("TRUSTRAY_VLLM_PYTHON", "/x/bin/python")
    assert vllm_python() == "/x/bin/python"
    assert vllm_python("/y/bin/python") == "/y/bin/python"
    monkeypatch.delenv("TRUSTRAY_VLLM_PYTHON")
    found = vllm_python()
    assert found is None or found.endswith(".venv-vllm/bin/python")


def _vllm_venv_python() -> str:
    python = vllm_python()
    if python is None or not os.path.exists(python):
        if os.environ.get("TRUSTRAY_VLLM_PYTHON"):
            pytest.fail(f"TRUSTRAY_VLLM_PYTHON={os.environ['TRUSTRAY_VLLM_PYTHON']} does not exist")
        pytest.skip("no vLLM venv here: `make env-vllm` builds .venv-vllm (make test always does)")
    return python


def run_in_vllm_venv(code: str, *args: str) -> None:
    """Run ``code`` under the vLLM venv's Python (this checkout importable); it must print ``ok``."""
    import subprocess

    proc = subprocess.run([_vllm_venv_python(), "-c", code, *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


@pytest.mark.slow
def test_planned_app_is_accepted_by_ray_serve_llm(tmp_path):
    """The CPU and GPU plans build a Serve application in the vLLM venv's Ray Serve LLM."""
    python = _vllm_venv_python()
    args = {
        "cpu": plan_vllm_serving(tmp_path, name="m", num_cpus=1, python=python).app_args,
        "gpu": plan_vllm_serving(tmp_path, name="m", serving=ServingOptions(num_gpus=1),
                                 options=VLLMOptions(accelerator_type="L4"), python=python).app_args,
    }
    code = (
        "import json, sys\n"
        "from ray.serve import Application\n"
        "from trustray.serve.llm_builder import build_openai_app_from_args\n"
        "for name, args in json.load(sys.stdin).items():\n"
        "    assert isinstance(build_openai_app_from_args(args), Application), name\n"
        "print('ok')\n"
    )
    proc = subprocess.run([python, "-c", code], input=json.dumps(args), capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_project_venv_does_not_import_vllm():
    """The driver side never needs vLLM: the vLLM modules of trustray import without it."""
    code = "import trustray.serve.vllm_serving, trustray.config, sys; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _mixed_run(tmp_path):
    from test_report_fixtures import config, row, write_run

    dense, w4 = config("aaa111", "none"), config("bbb222", "gptq", bits=4, group_size=64, seed=0)
    rows = [{**row(dense, "mmlu", f"i{k}", correct=k % 2 == 0, gold="A", label="A"), "engine_reproducible": True}
            for k in range(6)]
    rows += [{**row(w4, "mmlu", f"i{k}", correct=k % 3 == 0, gold="A", label="A"), "engine_name": "vllm",
              "engine_version": "0.29.0 cpu int4=w4a16", "engine_reproducible": False} for k in range(6)]
    return write_run(tmp_path, rows)


def test_report_marks_settings_served_by_a_non_reproducible_engine(tmp_path):
    from trustray.report.markdown import render_markdown
    from trustray.scoring.scores import registered_benchmarks
    from trustray.report.store import read_results
    from trustray.report.summary import build_tables

    tables = build_tables(read_results(_mixed_run(tmp_path)), registered_benchmarks())
    by_setting = tables.summary.set_index("setting")
    assert bool(by_setting.loc["dense", "reproducible"]) is True
    assert bool(by_setting.loc["gptq w4g64", "reproducible"]) is False
    assert by_setting.loc["gptq w4g64", "engines"] == "vllm 0.29.0 cpu int4=w4a16"
    note = [n for n in tables.notes if n.startswith("not reproducible")]
    assert len(note) == 1 and "gptq w4g64" in note[0] and "dense" not in note[0]
    assert "not reproducible" in render_markdown(tables, "run")


def test_a_resumed_config_never_mixes_engines(tmp_path):
    from trustray.pipeline import EngineMixError, check_one_engine

    run = _mixed_run(tmp_path)
    check_one_engine(run, "bbb222", "vllm", "0.29.0 cpu int4=w4a16")
    check_one_engine(run, "ccc333", "hf")  # nothing committed yet
    with pytest.raises(EngineMixError, match="bbb222 has rows from vllm 0.29.0 cpu int4=w4a16"):
        check_one_engine(run, "bbb222", "hf")
    with pytest.raises(EngineMixError, match="mix engines"):
        check_one_engine(run, "bbb222", "vllm", "0.32.0 cpu int4=w4a16")


def test_http_handle_retries_while_a_replica_is_replaced():
    """5xx answers (a dead replica) are retried until the server answers; 4xx are not."""
    import asyncio

    import httpx

    from trustray.generation import GenerationRequest
    from trustray.serve.handle import HTTPGenerateError, OpenAIHTTPHandle

    calls = {"n": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            return httpx.Response(500, json={"error": {"message": "replica died"}})
        if b"bad" in request.content:
            return httpx.Response(400, json={"error": {"message": "bad prompt"}})
        return httpx.Response(200, json={"choices": [{"index": 0, "text": " ok", "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 3, "completion_tokens": 1}})

    class Handle(OpenAIHTTPHandle):
        def _client(self) -> httpx.AsyncClient:
            return httpx.AsyncClient(base_url=self.base_url, transport=httpx.MockTransport(answer))

    handle = Handle("http://127.0.0.1:1/app", model_id="m", retry_s=30)

    async def call(request: GenerationRequest):
        return await handle.generate.remote(request)

    gen = asyncio.run(call(GenerationRequest("r1", prompt="hi")))
    assert gen.texts == (" ok",) and calls["n"] == 3
    with pytest.raises(HTTPGenerateError, match="400"):
        asyncio.run(call(GenerationRequest("r2", prompt="bad")))
    assert calls["n"] == 4


def test_w4_on_cpu_runs_in_bfloat16(tmp_path):
    # vllm-cpu's 4-bit GEMM has no float32 path ("cpu_gemm_wna16 not implemented for 'Float'").
    assert re.search(r"W4A16 checkpoints in float32.*engine\.dtype: bfloat16.*engine\.backend: hf",
                     cpu_loadable_reason(4, avx512=True, dtype="float32") or "")
    assert cpu_loadable_reason(4, avx512=True, dtype="bfloat16") is None
    assert cpu_loadable_reason(None, avx512=True, dtype="float32") is None
    w4 = _write_config(tmp_path / "w4", _ct(4))
    if cpu_has_avx512():
        with pytest.raises(VLLMCheckpointError, match="float32"):
            plan_vllm_serving(w4, name="cfg", dtype="float32", python="")
        plan = plan_vllm_serving(w4, name="cfg", python="")  # auto picks the kernel's type
        assert plan.app_args["llm_configs"][0]["engine_kwargs"]["dtype"] == "bfloat16"
    with pytest.raises(ValueError, match=r"gptq-w4-g64: vLLM on CPU cannot run W4A16 checkpoints"):
        SweepSpec(compressions=(CompressionSpec(method="gptq", bits=4, group_size=64),),
                  engine=EngineSpec(backend="vllm", dtype="float32"))
