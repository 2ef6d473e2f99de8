"""``ModelServer``: one engine behind a dynamic batcher and OpenAI-compatible endpoints.

A plain class (no Ray): the Serve deployment in :mod:`trustray.serve.deployment` wraps it,
and tests drive it directly. Concurrent ``generate`` callers are collected into batches the
way ``ray.serve.batch`` does it (the first waiting request opens a window of
``batch_wait_timeout_s``; the batch closes early once it holds ``max_batch_rows`` samples;
one batch runs at a time) and each batch runs ``engine.generate`` in a worker thread, so the
event loop keeps accepting requests while the engine works.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trustray.engines.base import Engine
from trustray.generation import Generation, GenerationRequest
from trustray.serve import openai_api as oa

DEFAULT_CHAT_MAX_TOKENS = 256
DEFAULT_BATCH_WAIT_S = 0.01
DEFAULT_FILL_WAIT_S = 0.1


@dataclass
class _Pending:
    request: GenerationRequest
    future: asyncio.Future[Generation]

    @property
    def rows(self) -> int:
        return self.request.sampling.n


@dataclass(frozen=True)
class BatchRecord:
    """One engine call: how many requests and samples it held and how long it ran."""

    requests: int
    rows: int
    busy_s: float


class DynamicBatcher:
    """Collects concurrent requests into engine batches; one batch runs at a time.

    ``run_batch`` is called in a worker thread with the batch's requests and returns, in
    order, a ``Generation`` or the exception that request failed with.

    ``fill_rows`` is the engine's forward-pass width: an engine with fixed-shape batches pays
    for a partial pass as for a full one, so when the window closes on a partial pass the
    batcher waits up to ``fill_wait_s`` longer for callers that would fill it (a burst of
    handle calls reaches the replica spread over tens of milliseconds).
    """

    def __init__(
        self,
        run_batch: Callable[[list[GenerationRequest]], list[Generation | BaseException]],
        *,
        max_batch_rows: int,
        batch_wait_timeout_s: float = DEFAULT_BATCH_WAIT_S,
        fill_rows: int | None = None,
        fill_wait_s: float = DEFAULT_FILL_WAIT_S,
        history: int = 10_000,
    ) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
        if batch_wait_timeout_s < 0:
            raise ValueError(f"batch_wait_timeout_s must be >= 0, got {batch_wait_timeout_s}")
        self.run_batch = run_batch
        self.max_batch_rows = max_batch_rows
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self.fill_rows = fill_rows
        self.fill_wait_s = fill_wait_s
        self.records: collections.deque[BatchRecord] = collections.deque(maxlen=history)
        self._pending: collections.deque[_Pending] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, request: GenerationRequest) -> Generation:
        """Queue one request and wait for its generation."""
        loop = asyncio.get_running_loop()
        self._ensure_running(loop)
        assert self._arrived is not None
        future: asyncio.Future[Generation] = loop.create_future()
        self._pending.append(_Pending(request, future))
        self._arrived.set()
        return await future

    @property
    def alive(self) -> bool:
        return self._task is None or not self._task.done()

    def _ensure_running(self, loop: asyncio.AbstractEventLoop) -> None:
        # Created lazily on the loop that serves requests (a Serve replica may run user code
        # on a loop of its own, not the one __init__ ran on).
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._arrived = asyncio.Event()
            self._task = loop.create_task(self._run(), name="trustray-batcher")

    def _rows_waiting(self) -> int:
        return sum(p.rows for p in self._pending)

    async def _run(self) -> None:
        assert self._arrived is not None
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            opened = time.monotonic()
            await self._wait_while(lambda: self._rows_waiting() < self.max_batch_rows,
                                   opened + self.batch_wait_timeout_s)
            if self.fill_rows:
                fill = self.fill_rows
                await self._wait_while(
                    lambda: self._rows_waiting() < self.max_batch_rows and self._rows_waiting() % fill != 0,
                    opened + self.batch_wait_timeout_s + self.fill_wait_s,
                )
            batch = self._take_batch()
            if batch:
                await self._execute(batch)

    async def _wait_while(self, condition: Callable[[], bool], deadline: float) -> None:
        """Wait for arrivals while ``condition()`` holds, until ``deadline``."""
        assert self._arrived is not None
        while condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Pending]:
        """Pop waiting requests up to ``max_batch_rows`` samples (always at least one)."""
        batch: list[_Pending] = []
        rows = 0
        while self._pending:
            head = self._pending[0]
            if head.future.done():  # the caller gave up (cancelled) before its turn
                self._pending.popleft()
                continue
            if batch and rows + head.rows > self.max_batch_rows:
                break
            batch.append(self._pending.popleft())
            rows += head.rows
        return batch

    async def _execute(self, batch: list[_Pending]) -> None:
        start = time.perf_counter()
        try:
            results = await asyncio.to_thread(self.run_batch, [p.request for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"engine returned {len(results)} results for {len(batch)} requests")
        except Exception as e:  # noqa: BLE001 - every waiting caller gets the error
            results = [e] * len(batch)
        self.records.append(BatchRecord(len(batch), sum(p.rows for p in batch), time.perf_counter() - start))
        for pending, result in zip(batch, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)


def run_engine_batch(engine: Engine, requests: list[GenerationRequest]) -> list[Generation | BaseException]:
    """``engine.generate`` on a batch; a request the engine rejects (``ValueError``, e.g. a
    prompt longer than the context) fails alone instead of failing its batch."""
    try:
        return list(engine.generate(requests))
    except ValueError as whole:
        encode = getattr(engine, "encode", None)
        if encode is None or len(requests) == 1:
            return [whole] * len(requests)
        errors: dict[int, BaseException] = {}
        for i, r in enumerate(requests):
            try:
                encode(r)
            except ValueError as e:
                errors[i] = e
        if not errors:
            raise
        good = [r for i, r in enumerate(requests) if i not in errors]
        generated = iter(engine.generate(good) if good else [])
        return [errors[i] if i in errors else next(generated) for i in range(len(requests))]


_SUMMED = ("batches", "requests", "rows", "engine_busy_s")


def merge_stats(per_replica: list[dict[str, Any]]) -> dict[str, Any]:
    """One app's counters from each replica's :meth:`ModelServer.stats`: counts and busy time
    summed, ``engine_busy_max_s`` the busiest replica's time (what bounds the wall time of
    work spread over replicas), ``replicas`` how many reported; per-call sizes are left out."""
    if not per_replica:
        return {}
    out = {k: v for k, v in per_replica[0].items() if k not in (*_SUMMED, "batch_sizes", "replica")}
    for k in _SUMMED:
        out[k] = sum(r.get(k, 0) for r in per_replica)
    out["max_batch_requests"] = max(r.get("max_batch_requests", 0) for r in per_replica)
    out["mean_batch_requests"] = out["requests"] / out["batches"] if out["batches"] else 0.0
    out["engine_busy_max_s"] = max(r.get("engine_busy_s", 0.0) for r in per_replica)
    out["replicas"] = len(per_replica)
    return out


class ModelServer:
    """Serves one model: batched ``generate`` for in-cluster callers, OpenAI routes for HTTP."""

    def __init__(
        self,
        engine: Engine,
        *,
        model_id: str | None = None,
        fingerprint: str | None = None,
        max_batch_rows: int | None = None,
        batch_wait_timeout_s: float = DEFAULT_BATCH_WAIT_S,
        fill_wait_s: float = DEFAULT_FILL_WAIT_S,
        default_chat_max_tokens: int = DEFAULT_CHAT_MAX_TOKENS,
        token_sha256: str | None = None,
    ) -> None:
        resolved = getattr(engine, "resolved", None)
        # Only the digest of the bearer token is kept (see openai_api.token_digest).
        self.token_sha256 = token_sha256
        self.engine = engine
        self.model_id = model_id or (resolved.name if resolved is not None else engine.name)
        self.fingerprint = fingerprint or (resolved.fingerprint if resolved is not None else None)
        self.created = int(time.time())
        self.default_chat_max_tokens = default_chat_max_tokens
        options = getattr(engine, "options", None)
        width = getattr(options, "batch_size", None)
        if max_batch_rows is None:
            # Eight forward batches per engine call. The engine fills each decode batch from one
            # length bucket, so small calls leave many batches part-empty: measured on the quick
            # stereotype+MMLU set, 64-row calls did 1.4x the decode work of one call, 256-row
            # calls 1.1x (prompts spread over 22 buckets).
            max_batch_rows = 8 * (width or 32)
        self.batcher = DynamicBatcher(
            lambda reqs: run_engine_batch(self.engine, reqs),
            max_batch_rows=max_batch_rows,
            batch_wait_timeout_s=batch_wait_timeout_s,
            # Only an engine that pads partial passes to full width gains from filling them.
            fill_rows=width if getattr(options, "deterministic", False) else None,
            fill_wait_s=fill_wait_s,
        )

    @classmethod
    def load(cls, model: Any, engine_options: Any = None, **kwargs: Any) -> ModelServer:
        """Load ``model`` (name, path or ``ResolvedModel``) into an ``HFEngine`` and serve it, or
        into a ``SimulatedEngine`` when ``engine_options`` are ``SimulatedOptions``."""
        from trustray.engines.simulated import SimulatedEngine, SimulatedOptions

        if isinstance(engine_options, SimulatedOptions):
            return cls(SimulatedEngine(model, engine_options), **kwargs)
        from trustray.engines.hf import HFEngine

        return cls(HFEngine(model, engine_options), **kwargs)

    # -- in-cluster ------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> Generation:
        """One request's generation, batched with whatever else is in flight."""
        if not isinstance(request, GenerationRequest):
            raise TypeError(f"generate takes a GenerationRequest, got {type(request).__name__}")
        return await self.batcher.submit(request)

    def stats(self) -> dict[str, Any]:
        """Batching counters: engine calls, their sizes, and the engine's busy time."""
        records = list(self.batcher.records)
        sizes = [r.requests for r in records]
        return {
            "model": self.model_id,
            "engine_name": getattr(self.engine, "name", type(self.engine).__name__),
            "engine_version": getattr(self.engine, "version", "unknown"),
            "engine_dtype": str(getattr(self.engine, "dtype", "") or "").removeprefix("torch.") or None,
            "batches": len(records),
            "requests": sum(sizes),
            "rows": sum(r.rows for r in records),
            "max_batch_requests": max(sizes, default=0),
            "mean_batch_requests": (sum(sizes) / len(sizes)) if sizes else 0.0,
            "engine_busy_s": sum(r.busy_s for r in records),
            "batch_sizes": sizes[-1000:],
        }

    def healthy(self) -> bool:
        return self.batcher.alive

    # -- OpenAI routes -----------------------------------------------------------------------

    def authorize(self, authorization: str | None) -> None:
        """Raise a 401 :class:`OpenAIError` unless the ``Authorization`` header carries this
        server's token (no-op for a server started without one)."""
        oa.check_bearer(authorization, self.token_sha256)

    def _check_model(self, requested: str | None) -> None:
        if requested is not None and requested != self.model_id:
            raise oa.OpenAIError(
                f"model {requested!r} is not served here; this server serves {self.model_id!r}",
                status=404, param="model", code="model_not_found",
            )

    async def _generate_all(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        try:
            return list(await asyncio.gather(*(self.generate(r) for r in requests)))
        except ValueError as e:  # the engine rejected the request (e.g. too long for the context)
            raise oa.OpenAIError(str(e)) from None

    async def completions(self, raw: Mapping[str, Any] | bytes | str) -> dict[str, Any] | list[dict[str, Any]]:
        """``POST /v1/completions``: the response, or its chunks in order when the body asks
        for ``stream``; raises :class:`OpenAIError` on a bad body."""
        body = oa.parse_body(oa.CompletionBody, raw)
        self._check_model(body.model)
        response_id = oa.new_id("cmpl")
        generations = await self._generate_all(oa.completion_requests(body, request_id=response_id))
        if body.stream:
            return oa.completion_chunks(generations, response_id=response_id, model_id=self.model_id,
                                        include_usage=body.include_usage, system_fingerprint=self.fingerprint)
        return oa.completion_response(
            generations, response_id=response_id, model_id=self.model_id, system_fingerprint=self.fingerprint
        )

    async def chat_completions(self, raw: Mapping[str, Any] | bytes | str) -> dict[str, Any] | list[dict[str, Any]]:
        """``POST /v1/chat/completions``: the response, or its chunks in order when the body
        asks for ``stream``; raises :class:`OpenAIError` on a bad body."""
        body = oa.parse_body(oa.ChatBody, raw)
        self._check_model(body.model)
        response_id = oa.new_id("chatcmpl")
        request = oa.chat_request(body, request_id=response_id, default_max_tokens=self.default_chat_max_tokens)
        (generation,) = await self._generate_all([request])
        if body.stream:
            return oa.chat_chunks(generation, response_id=response_id, model_id=self.model_id,
                                  include_usage=body.include_usage, system_fingerprint=self.fingerprint)
        return oa.chat_response(
            generation, response_id=response_id, model_id=self.model_id, system_fingerprint=self.fingerprint
        )

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``."""
        return oa.models_response(self.model_id, created=self.created)

    def health(self) -> dict[str, Any]:
        """``GET /health``: the model id and engine, and whether the batcher is running."""
        return {
            "status": "ok" if self.healthy() else "unhealthy",
            "model": self.model_id,
            "fingerprint": self.fingerprint,
            "engine": f"{self.engine.name}/{self.engine.version}",
        }
