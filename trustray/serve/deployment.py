"""The Ray Serve deployment around :class:`~trustray.serve.server.ModelServer`.

Thin on purpose: the replica loads the engine, in-cluster callers use the ``generate`` handle
method (``await handle.generate.remote(request)``), and the HTTP routes hand raw JSON bodies
to the server, which validates them and answers OpenAI-style errors.
"""

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve

from trustray.generation import Generation, GenerationRequest
from trustray.serve.openai_api import OpenAIError, sse_events
from trustray.serve.server import ModelServer

#: The deployment's name inside every HF model application.
DEPLOYMENT_NAME = "ModelServer"
#: Evaluator actors keep hundreds of requests in flight against one replica; requests beyond
#: this wait in the caller's router instead of being rejected.
DEFAULT_MAX_ONGOING_REQUESTS = 1024

api = FastAPI(title="trustray model server", docs_url=None, redoc_url=None)


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OpenAIError("request body is not valid JSON") from None


def _error(e: OpenAIError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


def _reply(result: dict[str, Any] | list[dict[str, Any]]) -> Response:
    """A JSON response, or server-sent events for a streamed reply (a list of chunks)."""
    if isinstance(result, list):
        return StreamingResponse(sse_events(result), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    return JSONResponse(result)


@serve.deployment(
    name=DEPLOYMENT_NAME,
    max_ongoing_requests=DEFAULT_MAX_ONGOING_REQUESTS,
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=10,
)
@serve.ingress(api)
class ModelDeployment:
    """One replica: an ``HFEngine`` (or a ``SimulatedEngine``) behind the dynamic batcher."""

    def __init__(self, model: Any, engine_options: Any = None, server_options: dict[str, Any] | None = None,
                 torch_threads: int | None = None) -> None:
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self.server = ModelServer.load(model, engine_options, **(server_options or {}))

    async def generate(self, request: GenerationRequest) -> Generation:
        """In-cluster entry point: one request, batched with every other caller's."""
        return await self.server.generate(request)

    def stats(self) -> dict[str, Any]:
        """This replica's batching counters, thread count and replica id."""
        import sys

        torch = sys.modules.get("torch")  # a simulated engine never imports it
        replica = serve.get_replica_context().replica_id.unique_id
        threads = torch.get_num_threads() if torch is not None else 0
        return {**self.server.stats(), "torch_threads": threads, "replica": replica}

    def check_health(self) -> None:
        if not self.server.healthy():
            raise RuntimeError("the batching loop of this replica has stopped")

    # Every route checks the bearer token first (a no-op when the app was built without one).

    def _denied(self, request: Request) -> JSONResponse | None:
        try:
            self.server.authorize(request.headers.get("authorization"))
        except OpenAIError as e:
            return _error(e)
        return None

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        try:
            return self._denied(request) or _reply(await self.server.completions(await _body(request)))
        except OpenAIError as e:
            return _error(e)

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        try:
            return self._denied(request) or _reply(await self.server.chat_completions(await _body(request)))
        except OpenAIError as e:
            return _error(e)

    @api.get("/v1/models")
    def models(self, request: Request) -> JSONResponse:
        return self._denied(request) or JSONResponse(self.server.models())

    @api.get("/health")
    def health(self, request: Request) -> JSONResponse:
        if denied := self._denied(request):
            return denied
        body = self.server.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
