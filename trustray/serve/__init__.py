"""Model serving: one Ray Serve application per model, OpenAI-compatible over HTTP.

``build_model_app`` builds the app (HF engine with dynamic batching; ``ray.serve.llm`` / vLLM
on CPU or GPU), ``deploy_model_app`` deploys either, ``model_handle`` gives in-cluster callers a uniform
``generate.remote(request)``. ``ModelServer`` is the Ray-free core. Ray, FastAPI and torch are
imported only when one of these is used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BACKENDS",
    "DEPLOYMENT_NAME",
    "DynamicBatcher",
    "EngineInfo",
    "ModelServer",
    "OpenAIError",
    "OpenAIHTTPHandle",
    "ServeApp",
    "ServingOptions",
    "build_model_app",
    "deploy_model_app",
    "model_handle",
    "resolve_backend",
]

_HOMES = {
    "BACKENDS": "builder",
    "ServeApp": "builder",
    "ServingOptions": "builder",
    "build_model_app": "builder",
    "deploy_model_app": "builder",
    "EngineInfo": "builder",
    "model_handle": "builder",
    "resolve_backend": "builder",
    "DEPLOYMENT_NAME": "deployment",
    "DynamicBatcher": "server",
    "ModelServer": "server",
    "OpenAIError": "openai_api",
    "OpenAIHTTPHandle": "handle",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'trustray.serve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"trustray.serve.{home}"), name)
