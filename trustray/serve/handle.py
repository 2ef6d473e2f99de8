"""A ``generate`` handle over any OpenAI-compatible HTTP server (the vLLM app on GPU images).

It mirrors the Serve handle of the HF app: ``await handle.generate.remote(request)`` (or
``.result()`` outside an event loop) returns a :class:`~trustray.generation.Generation`, so
evaluators call either app the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any

import httpx

from trustray.generation import Generation, GenerationRequest
from trustray.serve import openai_api as oa

DEFAULT_TIMEOUT_S = 600.0
#: How long a request keeps retrying while the server is unreachable or answers 5xx: Serve
#: replaces a dead replica (a vLLM replica takes about a minute to start on a quiet CPU, several
#: on a loaded one).
DEFAULT_RETRY_S = 600.0
_RETRY_STATUS = frozenset({500, 502, 503, 504})


class HTTPGenerateError(RuntimeError):
    """The OpenAI server answered a request with an error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _retryable(e: Exception) -> bool:
    if isinstance(e, HTTPGenerateError):
        return e.status in _RETRY_STATUS
    return isinstance(e, (httpx.TransportError, httpx.RemoteProtocolError))


class _PendingCall:
    """What ``generate.remote(request)`` returns: awaitable, or ``.result()`` when synchronous."""

    def __init__(self, owner: OpenAIHTTPHandle, request: GenerationRequest) -> None:
        self._owner = owner
        self._request = request

    def __await__(self) -> Generator[Any, None, Generation]:
        return self._owner._agenerate(self._request).__await__()

    def result(self, timeout_s: float | None = None) -> Generation:
        return self._owner._generate_sync(self._request, timeout_s)


class _GenerateMethod:
    def __init__(self, owner: OpenAIHTTPHandle) -> None:
        self._owner = owner

    def remote(self, request: GenerationRequest) -> _PendingCall:
        return _PendingCall(self._owner, request)


class OpenAIHTTPHandle:
    """Sends ``GenerationRequest`` objects to ``base_url``'s ``/v1/completions`` (prompts) or
    ``/v1/chat/completions`` (messages) and turns the answers back into ``Generation`` objects."""

    def __init__(self, base_url: str, model_id: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_connections: int = 256, retry_s: float = DEFAULT_RETRY_S, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        # Sent as ``Authorization: Bearer <token>`` to a server started with a token.
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.model_id = model_id
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.max_connections = max_connections
        self.generate = _GenerateMethod(self)
        self._clients: dict[int, httpx.AsyncClient] = {}

    def __getstate__(self) -> dict[str, Any]:  # passed to actors: connections stay behind
        return {k: v for k, v in self.__dict__.items() if k not in ("_clients", "generate")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._clients = {}
        self.generate = _GenerateMethod(self)

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)

    def _client(self) -> httpx.AsyncClient:
        # One client per event loop: an AsyncClient's connection pool is bound to its loop.
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout_s, limits=self._limits(),
                                       headers=self._headers)
            self._clients[loop_id] = client
        return client

    @staticmethod
    def _check(response: httpx.Response) -> dict[str, Any]:
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise HTTPGenerateError(f"{response.request.url} answered {response.status_code}: {message}",
                                    response.status_code)
        return response.json()

    async def _model(self) -> str:
        if self.model_id is None:
            listing = self._check(await self._client().get("/v1/models"))
            self.model_id = listing["data"][0]["id"]
        return self.model_id

    async def _agenerate(self, request: GenerationRequest) -> Generation:
        deadline, delay = time.monotonic() + self.retry_s, 1.0
        while True:
            try:
                route, body = oa.request_body(request, await self._model())
                start = time.perf_counter()
                data = self._check(await self._client().post(route, json=body))
                return oa.generation_from_response(request, data, time.perf_counter() - start)
            except (HTTPGenerateError, httpx.HTTPError) as e:
                if not _retryable(e) or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)

    def _generate_sync(self, request: GenerationRequest, timeout_s: float | None) -> Generation:
        deadline, delay = time.monotonic() + self.retry_s, 1.0
        with httpx.Client(base_url=self.base_url, timeout=timeout_s or self.timeout_s, headers=self._headers) as client:
            while True:
                try:
                    if self.model_id is None:
                        self.model_id = self._check(client.get("/v1/models"))["data"][0]["id"]
                    route, body = oa.request_body(request, self.model_id)
                    start = time.perf_counter()
                    data = self._check(client.post(route, json=body))
                    return oa.generation_from_response(request, data, time.perf_counter() - start)
                except (HTTPGenerateError, httpx.HTTPError) as e:
                    if not _retryable(e) or time.monotonic() + delay > deadline:
                        raise
                time.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
