"""`trustray serve`: host one model on an OpenAI-compatible HTTP endpoint (local Ray)."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import time
from pathlib import Path

import typer

from trustray.cli.common import console, fail

#: Environment variable holding the bearer token that clients must send (never a flag: flags
#: show up in process listings and shell history).
TOKEN_ENV = "TRUSTRAY_API_TOKEN"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def serving_token(host: str) -> str | None:
    """The bearer token from ``$TRUSTRAY_API_TOKEN``; required (exit 2) on a non-loopback host."""
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    if token is None and not is_loopback(host):
        fail(f"--host {host} exposes the model beyond this machine: set {TOKEN_ENV} to a secret token "
             f"(clients send 'Authorization: Bearer <token>'), or serve on 127.0.0.1")
    return token


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            fail(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port or --host")


def serve_command(
    model: str = typer.Option(..., "--model", "-m", help="Embedded model name, checkpoint directory or HF id."),
    host: str = typer.Option(
        "127.0.0.1", help=f"Address to listen on; any non-loopback address needs ${TOKEN_ENV}."),
    port: int = typer.Option(8000, min=1, max=65535, help="HTTP port."),
    batch_size: int = typer.Option(32, min=1, help="Rows per engine forward pass."),
    compression_checkpoint: Path | None = typer.Option(
        None, "--compression-checkpoint", help="Serve this compressed checkpoint of MODEL instead of MODEL itself."
    ),
    name: str | None = typer.Option(None, help="Model id clients send (default: the model's name)."),
    backend: str = typer.Option("auto", help="auto, hf or vllm."),
    num_cpus: float | None = typer.Option(None, min=0, help="CPUs for the model replica (default: all)."),
    dtype: str = typer.Option("auto", help="auto, bfloat16, float16 or float32."),
    num_gpus: float = typer.Option(0, min=0, help="GPUs for the model replica (vLLM: a whole number)."),
    kv_cache_gib: int = typer.Option(1, min=1, help="vLLM on CPU: GiB of KV cache (VLLM_CPU_KVCACHE_SPACE)."),
    max_model_len: int = typer.Option(2048, min=1, help="vLLM: longest prompt + completion in tokens."),
) -> None:
    """Serve MODEL on /v1/completions and /v1/chat/completions until Ctrl-C."""
    from trustray.engines.hf import EngineOptions
    from trustray.models import resolve_model
    from trustray.serve.builder import ServeApp, ServingOptions, deploy_model_app, resolve_backend
    from trustray.serve.openai_api import token_digest
    from trustray.serve.vllm_serving import VLLMCheckpointError, VLLMOptions

    token = serving_token(host)
    if dtype not in ("auto", "bfloat16", "float16", "float32"):
        fail(f"unknown --dtype {dtype!r}; choose auto, bfloat16, float16 or float32")
    try:
        concrete = resolve_backend(backend)  # an unknown backend fails before anything starts
    except ValueError as e:
        fail(str(e))
    if concrete == "vllm" and token is not None:
        fail(f"{TOKEN_ENV} is enforced by the hf backend only; serve vLLM on 127.0.0.1 behind an "
             "authenticating proxy, or use --backend hf")
    _check_port_free(host, port)
    if compression_checkpoint is not None:
        if not compression_checkpoint.is_dir():
            fail(f"--compression-checkpoint {compression_checkpoint} is not a directory")
        resolved = resolve_model(compression_checkpoint)
        model_id = name or f"{model}/{compression_checkpoint.name}"
    else:
        resolved = resolve_model(model)
        model_id = name or resolved.name
    cpus = num_cpus if num_cpus is not None else float(os.cpu_count() or 1)
    if concrete == "vllm":
        from trustray.serve.vllm_serving import check_vllm_can_load

        try:  # before Ray starts: a checkpoint vLLM cannot load on this device fails in a second
            check_vllm_can_load(resolved.path, "gpu" if num_gpus else "cpu", dtype)
        except VLLMCheckpointError as e:
            fail(str(e))

    import ray
    from ray import serve

    with console.status("starting Ray and loading the model..."):
        ray.init(address="local", num_cpus=max(1, int(cpus + 0.999)), num_gpus=int(num_gpus + 0.999) or None,
                 include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        try:
            serve.start(http_options={"host": host, "port": port})
            if concrete == "vllm":
                deploy_model_app(
                    resolved, app=ServeApp("trustray", "/", model_id), backend="vllm",
                    num_cpus=cpus, dtype=dtype, serving=ServingOptions(num_gpus=num_gpus),
                    vllm=VLLMOptions(kv_cache_gib=kv_cache_gib, max_model_len=max_model_len),
                )
            else:
                deploy_model_app(
                    resolved, app=ServeApp("trustray", "/", model_id, token_digest(token) if token else None),
                    backend="hf", engine_options=EngineOptions(dtype=dtype, batch_size=batch_size),  # type: ignore[arg-type]
                    num_cpus=cpus, serving=ServingOptions(num_gpus=num_gpus),
                )
        except VLLMCheckpointError as e:
            ray.shutdown()
            fail(str(e))
        except BaseException:
            ray.shutdown()
            raise
    url = f"http://{host}:{port}"
    console.print(f"serving [bold]{model_id}[/] ({resolved.path}) at {url}/v1 (Ctrl-C to stop)")
    auth = f"-H \"Authorization: Bearer ${TOKEN_ENV}\" " if token else ""
    if token:
        console.print(f"  every request needs the bearer token from ${TOKEN_ENV}")
    console.print(f"  curl {url}/v1/chat/completions {auth}-H 'content-type: application/json' "
                  f"-d '{{\"model\": \"{model_id}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'",
                  highlight=False, soft_wrap=True)
    # Ctrl-C and SIGTERM both stop cleanly, also when started in the background (where the
    # shell leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        serve.shutdown()
        ray.shutdown()


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("serve")(serve_command)
