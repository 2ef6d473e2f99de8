"""GPU serving: one ``ray.serve.llm`` (vLLM) OpenAI app per compressed checkpoint.

``ray.serve.llm`` needs the ``ray[llm]`` extra (vLLM), which only the GPU image's serving
virtualenv has, so it is imported inside :func:`build_vllm_app`. :func:`vllm_llm_config_dict`
builds the plain ``LLMConfig`` dict without importing vLLM, so the configuration is testable
on any machine.

vLLM reads ``quantization_config`` from the checkpoint's ``config.json``: compressed-tensors
(llm-compressor), GPTQ and AWQ checkpoints need no extra engine flag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Environment variable naming the Python of the compression virtualenv (GPU image).
COMPRESS_PYTHON_ENV = "TRUSTRAY_COMPRESS_PYTHON"
#: What to install when ``ray.serve.llm`` is missing. Same Ray version as the rest of the image.
RAY_LLM_REQUIREMENT = "ray[llm]==2.60.0"
_REMOTE_SCHEMES = ("s3://", "gs://", "abfss://", "azure://")
# Arguments of build_vllm_app that own an engine keyword; engine_kwargs may not contradict them.
_OWNED_ENGINE_KEYS = ("tensor_parallel_size", "max_model_len")


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
    accelerator_type: str | None = None,
    tensor_parallel_size: int = 1,
    max_model_len: int | None = None,
    engine_kwargs: Mapping[str, Any] | None = None,
    autoscaling: AutoscalingSpec | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``ray.serve.llm.LLMConfig`` fields for one checkpoint, as a plain dict.

    ``checkpoint_path`` is a local directory (it must exist on the replica's node: the image,
    a shared volume) or an ``s3://``/``gs://`` prefix that Serve mirrors before loading.
    ``engine_kwargs`` (from the sweep spec) pass through to vLLM unchanged, except that they may
    not contradict ``tensor_parallel_size`` or ``max_model_len``.
    """
    if not name or not name.strip():
        raise ValueError("name must be a non-empty model id (the config id of the checkpoint)")
    if not str(checkpoint_path).strip():
        raise ValueError("checkpoint_path is empty")
    if not isinstance(tensor_parallel_size, int) or tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size must be an integer >= 1, got {tensor_parallel_size!r}")
    if max_model_len is not None and (not isinstance(max_model_len, int) or max_model_len < 1):
        raise ValueError(f"max_model_len must be a positive integer, got {max_model_len!r}")
    if accelerator_type is not None and accelerator_type not in known_accelerator_types():
        from difflib import get_close_matches

        close = get_close_matches(accelerator_type, sorted(known_accelerator_types()), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown accelerator_type {accelerator_type!r}{hint}")
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
    return config


def build_vllm_app(
    checkpoint_path: str | os.PathLike[str],
    *,
    name: str,
    accelerator_type: str | None = None,
    tensor_parallel_size: int = 1,
    max_model_len: int | None = None,
    engine_kwargs: Mapping[str, Any] | None = None,
    autoscaling: AutoscalingSpec | Mapping[str, Any] | None = None,
) -> Any:
    """A Serve application exposing the checkpoint on ``/v1/completions`` and
    ``/v1/chat/completions`` through ``ray.serve.llm`` (vLLM), model id ``name``."""
    config = vllm_llm_config_dict(
        checkpoint_path,
        name=name,
        accelerator_type=accelerator_type,
        tensor_parallel_size=tensor_parallel_size,
        max_model_len=max_model_len,
        engine_kwargs=engine_kwargs,
        autoscaling=autoscaling,
    )
    try:
        from ray.serve.llm import LLMConfig, build_openai_app
    except ImportError as exc:
        raise VLLMUnavailableError(
            f"GPU serving needs vLLM through Ray Serve LLM: pip install \"{RAY_LLM_REQUIREMENT}\" "
            f"(in the serving virtualenv; the GPU image has it at /opt/venv-serve) [{exc}]"
        ) from exc
    return build_openai_app({"llm_configs": [LLMConfig(**config)]})


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
