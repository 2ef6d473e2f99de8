"""The GPU serving builder: the LLMConfig dict (checked against Ray's own LLMConfig model, which
imports without vLLM) and the import guard. The app itself is built only where vLLM exists."""

from __future__ import annotations

import importlib.util

import pytest

from trustray.serve.llm_builder import (
    COMPRESS_PYTHON_ENV,
    AutoscalingSpec,
    VLLMReplica,
    VLLMUnavailableError,
    build_vllm_app,
    compress_python,
    compress_runtime_env,
    known_accelerator_types,
    vllm_llm_config_dict,
)

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def _ray_llm_config():
    # Internal path (pinned Ray 2.60): the public ray.serve.llm re-export needs vLLM installed.
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig

    return LLMConfig


_REPLICA_FIELDS = ("accelerator", "accelerator_type", "tensor_parallel_size", "num_cpus")


def _config(path, name, **kwargs):
    """``vllm_llm_config_dict`` with the replica's fields given flat, as the cases below list them."""
    replica = {k: kwargs.pop(k) for k in _REPLICA_FIELDS if k in kwargs}
    return vllm_llm_config_dict(path, name=name, replica=VLLMReplica(**replica), **kwargs)


def test_config_dict_fields(tmp_path):
    ckpt = tmp_path / "gptq-w4"
    ckpt.mkdir()
    cfg = vllm_llm_config_dict(
        ckpt,
        name="cfg-1a2b3c",
        replica=VLLMReplica(accelerator_type="A10G", tensor_parallel_size=2),
        max_model_len=4096,
        engine_kwargs={"gpu_memory_utilization": 0.85, "dtype": "float16"},
        autoscaling={"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 48},
    )
    assert cfg["model_loading_config"] == {"model_id": "cfg-1a2b3c", "model_source": str(ckpt.resolve())}
    assert cfg["accelerator_type"] == "A10G"
    assert cfg["engine_kwargs"] == {
        "gpu_memory_utilization": 0.85,
        "dtype": "float16",
        "tensor_parallel_size": 2,
        "max_model_len": 4096,
    }
    scaling = cfg["deployment_config"]["autoscaling_config"]
    assert scaling == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 48.0}
    assert cfg["deployment_config"]["max_ongoing_requests"] >= scaling["target_ongoing_requests"]


def test_defaults_set_target_ongoing_requests_and_omit_unset_fields(tmp_path):
    cfg = vllm_llm_config_dict(tmp_path, name="m")
    assert cfg["deployment_config"]["autoscaling_config"]["target_ongoing_requests"] > 0
    assert "accelerator_type" not in cfg
    assert cfg["engine_kwargs"] == {"tensor_parallel_size": 1}


def test_remote_checkpoint_becomes_a_bucket_mirror():
    cfg = vllm_llm_config_dict("s3://bucket/trustray/ckpt/abc/", name="abc")
    assert cfg["model_loading_config"]["model_source"] == {"bucket_uri": "s3://bucket/trustray/ckpt/abc"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"accelerator_type": "A10G", "tensor_parallel_size": 2, "max_model_len": 2048},
        {"autoscaling": {"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 8}},
        {"engine_kwargs": {"enforce_eager": True}, "accelerator_type": "H100"},
    ],
)
def test_dict_is_accepted_by_ray_llm_config(tmp_path, kwargs):
    LLMConfig = _ray_llm_config()
    parsed = LLMConfig.model_validate(_config(tmp_path, "m", **kwargs))
    assert parsed.model_id == "m"
    autoscaling = parsed.deployment_config["autoscaling_config"]
    assert autoscaling["target_ongoing_requests"] > 0
    assert parsed.engine_kwargs["tensor_parallel_size"] == kwargs.get("tensor_parallel_size", 1)


def test_ray_llm_config_rejects_a_broken_dict(tmp_path):
    LLMConfig = _ray_llm_config()
    broken = vllm_llm_config_dict(tmp_path, name="m")
    broken["deployment_config"]["autoscaling_config"]["min_replicas"] = -1
    with pytest.raises(ValueError):
        LLMConfig.model_validate(broken)
    broken = vllm_llm_config_dict(tmp_path, name="m")
    broken["accelerator_typ"] = "A10G"
    with pytest.raises(ValueError):
        LLMConfig.model_validate(broken)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accelerator_type": "A10"}, "did you mean"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
        ({"max_model_len": -5}, "max_model_len"),
        ({"tensor_parallel_size": 2, "engine_kwargs": {"tensor_parallel_size": 4}}, "contradicts"),
        ({"autoscaling": {"target_ongoing_requests": 0}}, "target_ongoing_requests"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "max_replicas"),
        ({"autoscaling": {"target_ongoing_requests": 512, "max_ongoing_requests": 64}}, "never"),
        ({"autoscaling": {"target": 4}}, "Extra inputs"),
    ],
)
def test_bad_arguments_fail_clearly(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, "m", **kwargs)


def test_empty_name_rejected(tmp_path):
    with pytest.raises(ValueError, match="name"):
        vllm_llm_config_dict(tmp_path, name=" ")


def test_accelerator_names_match_the_cluster_configs():
    known = known_accelerator_types()
    assert {"A10G", "L4", "A100", "H100"} <= known
    assert "A10" not in known


def test_autoscaling_spec_is_frozen():
    spec = AutoscalingSpec()
    with pytest.raises(ValueError):
        spec.min_replicas = 2  # type: ignore[misc]


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the import guard does not trigger")
def test_build_without_vllm_names_the_install(tmp_path):
    with pytest.raises(VLLMUnavailableError, match=r'pip install "ray\[llm\]==2\.60\.0"'):
        build_vllm_app(tmp_path, name="m")


def test_build_validates_before_importing_vllm(tmp_path):
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        build_vllm_app(tmp_path, name="m", replica=VLLMReplica(tensor_parallel_size=0))


@pytest.mark.slow
def test_build_openai_app_with_vllm(tmp_path):
    """In the vLLM venv (GPU image: the serving venv; here .venv-vllm), for GPU and CPU."""
    import os
    import subprocess

    from test_vllm_serving import run_in_vllm_venv

    code = (
        "import sys\n"
        "from ray.serve import Application\n"
        "from trustray.serve.llm_builder import VLLMReplica, build_vllm_app\n"
        "gpu = build_vllm_app(sys.argv[1], name='m', replica=VLLMReplica(accelerator_type='L4'), max_model_len=2048)\n"
        "cpu = build_vllm_app(sys.argv[1], name='m', replica=VLLMReplica(accelerator='cpu', num_cpus=1),\n"
        "                     max_model_len=2048)\n"
        "assert isinstance(gpu, Application) and isinstance(cpu, Application)\n"
        "print('ok')\n"
    )
    run_in_vllm_venv(code, str(tmp_path))


def test_compress_python_from_env(monkeypatch):
    monkeypatch.delenv(COMPRESS_PYTHON_ENV, raising=False)
    assert compress_python() is None
    assert compress_runtime_env() == {}
    monkeypatch.setenv(COMPRESS_PYTHON_ENV, "/opt/venv-compress/bin/python")
    assert compress_runtime_env() == {"py_executable": "/opt/venv-compress/bin/python"}
    assert compress_runtime_env("/other/python") == {"py_executable": "/other/python"}
    monkeypatch.setenv(COMPRESS_PYTHON_ENV, "  ")
    assert compress_runtime_env() == {}


def test_compress_runtime_env_is_a_valid_ray_runtime_env(monkeypatch):
    from ray.runtime_env import RuntimeEnv

    monkeypatch.setenv(COMPRESS_PYTHON_ENV, "/opt/venv-compress/bin/python")
    env = RuntimeEnv(**compress_runtime_env())
    assert env.get("py_executable") == "/opt/venv-compress/bin/python"
