"""OpenAI-compatible request/response translation, as pure functions on plain data.

``/v1/completions`` and ``/v1/chat/completions`` bodies are validated with pydantic (unknown
fields are errors) and turned into :class:`~trustray.generation.GenerationRequest` objects;
the engine's :class:`~trustray.generation.Generation` objects are turned back into OpenAI
response dicts with token usage. Nothing here imports Ray, torch or an engine.

Extensions and defaults (documented, since OpenAI leaves them open):
- ``top_k`` (vLLM's extension): ``0`` or ``-1`` disables it, the default.
- ``seed``: sample ``i`` of a prompt uses ``sample_seed(seed, i)``, so a seeded request is
  reproducible; without a seed a random one is drawn.
- ``n > 1`` needs ``temperature > 0`` (greedy samples would be identical).
- ``max_tokens`` defaults to 16 for completions (OpenAI's default) and to the server's chat
  default for chat completions.
- ``stream=true`` answers server-sent events in OpenAI's chunk format, closed by ``data: [DONE]``.
  The engine generates a reply whole (fixed-shape batches), so the chunks are sent once it is
  done, one word-sized delta each; ``stream_options.include_usage`` adds the usage chunk.
- Authentication: a server started with a token answers 401 (``invalid_api_key``) to any request
  without ``Authorization: Bearer <token>``; only the token's SHA-256 is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trustray.generation import Generation, GenerationRequest, Message, SamplingParams

#: OpenAI's default ``max_tokens`` for ``/v1/completions``.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
MAX_N = 64
MAX_STOP = 4
MAX_PROMPTS = 256


class OpenAIError(Exception):
    """A request the server refuses; rendered as an OpenAI error body with ``status``."""

    def __init__(
        self, message: str, *, status: int = 400, type: str = "invalid_request_error",
        param: str | None = None, code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=-1)
    n: int = Field(1, ge=1, le=MAX_N)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # accepted and ignored, as OpenAI clients send it

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences, got {len(stops)}")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return v

    @model_validator(mode="after")
    def _options_need_stream(self) -> _Body:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream=true")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class CompletionBody(_Body):
    """The body of ``POST /v1/completions`` (text prompts only, no token-id prompts)."""

    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _check_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not 1 <= len(v) <= MAX_PROMPTS:
            raise ValueError(f"prompt list must hold 1 to {MAX_PROMPTS} strings, got {len(v)}")
        return v

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None  # accepted and ignored

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatBody(_Body):
    """The body of ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_limit(self) -> ChatBody:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            if self.max_tokens != self.max_completion_tokens:
                raise ValueError("max_tokens and max_completion_tokens disagree; set one")
        return self


def format_validation_error(error: ValidationError) -> str:
    """One line naming every bad field: ``field: problem; field: problem``."""
    parts = []
    for e in error.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("function-", "union[")))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(dict.fromkeys(parts))


def parse_body(model: type[_Body], raw: Mapping[str, Any] | bytes | str) -> Any:
    """Validate a request body (JSON bytes/str or a decoded mapping); bad input → 400."""
    try:
        if isinstance(raw, (bytes, str)):
            return model.model_validate_json(raw)
        if not isinstance(raw, Mapping):
            raise OpenAIError(f"request body must be a JSON object, got {type(raw).__name__}")
        return model.model_validate(dict(raw))
    except ValidationError as e:
        if any(err["type"] == "json_invalid" for err in e.errors()):
            raise OpenAIError("request body is not valid JSON") from None
        if any(err["type"] == "model_type" and not err["loc"] for err in e.errors()):
            raise OpenAIError("request body must be a JSON object") from None
        raise OpenAIError(f"invalid request: {format_validation_error(e)}") from None


def _sampling(body: _Body, max_tokens: int) -> SamplingParams:
    try:
        return SamplingParams(
            temperature=body.temperature, top_p=body.top_p, top_k=max(body.top_k, 0),
            max_tokens=max_tokens, n=body.n, stop=body.stops(),
        )
    except ValueError as e:
        raise OpenAIError(f"invalid request: {e}") from None


def _seed(body: _Body) -> int:
    return body.seed if body.seed is not None else secrets.randbits(63)


def completion_requests(body: CompletionBody, *, request_id: str) -> list[GenerationRequest]:
    """One request per prompt, ids ``<request_id>-<i>``, all with the body's sampling and seed."""
    sampling = _sampling(body, body.max_tokens or COMPLETIONS_DEFAULT_MAX_TOKENS)
    seed = _seed(body)
    return [
        GenerationRequest(request_id=f"{request_id}-{i}", sampling=sampling, seed=seed, prompt=p)
        for i, p in enumerate(body.prompts())
    ]


def chat_request(body: ChatBody, *, request_id: str, default_max_tokens: int) -> GenerationRequest:
    """The one request a chat body asks for (its messages go through the chat template)."""
    limit = body.max_completion_tokens or body.max_tokens or default_max_tokens
    return GenerationRequest(
        request_id=request_id,
        sampling=_sampling(body, limit),
        seed=_seed(body),
        messages=tuple(Message(role=m.role, content=m.text()) for m in body.messages),
    )


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(generations: Sequence[Generation]) -> dict[str, int]:
    """OpenAI ``usage``: prompt tokens of every prompt, output tokens of every sample."""
    prompt = sum(g.prompt_tokens for g in generations)
    completion = sum(sum(g.output_tokens) for g in generations)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_response(
    generations: Sequence[Generation], *, response_id: str, model_id: str,
    system_fingerprint: str | None = None, created: int | None = None,
) -> dict[str, Any]:
    """A ``text_completion`` object; choice ``index`` runs over prompts, then samples."""
    choices = [
        {"index": len(gen.texts) * p + j, "text": text, "logprobs": None, "finish_reason": reason}
        for p, gen in enumerate(generations)
        for j, (text, reason) in enumerate(zip(gen.texts, gen.finish_reasons, strict=True))
    ]
    return {
        "id": response_id, "object": "text_completion", "created": created or int(time.time()),
        "model": model_id, "system_fingerprint": system_fingerprint, "choices": choices,
        "usage": usage(generations),
    }


def chat_response(
    generation: Generation, *, response_id: str, model_id: str,
    system_fingerprint: str | None = None, created: int | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice per sample."""
    choices = [
        {
            "index": j, "message": {"role": "assistant", "content": text},
            "logprobs": None, "finish_reason": reason,
        }
        for j, (text, reason) in enumerate(zip(generation.texts, generation.finish_reasons, strict=True))
    ]
    return {
        "id": response_id, "object": "chat.completion", "created": created or int(time.time()),
        "model": model_id, "system_fingerprint": system_fingerprint, "choices": choices,
        "usage": usage([generation]),
    }


_DELTA = re.compile(r"\s*\S+|\s+")


def stream_deltas(text: str) -> list[str]:
    """``text`` cut into word-sized pieces (leading whitespace kept) that concatenate to it."""
    return _DELTA.findall(text)


def completion_chunks(
    generations: Sequence[Generation], *, response_id: str, model_id: str, include_usage: bool = False,
    system_fingerprint: str | None = None, created: int | None = None,
) -> list[dict[str, Any]]:
    """The streamed form of :func:`completion_response`: ``text_completion`` chunks, choice by
    choice, each choice's last chunk carrying its ``finish_reason``; then usage if asked."""
    head = {"id": response_id, "object": "text_completion", "created": created or int(time.time()),
            "model": model_id, "system_fingerprint": system_fingerprint}
    chunks = []
    for choice in completion_response(generations, response_id=response_id, model_id=model_id)["choices"]:
        for piece in stream_deltas(choice["text"]):
            chunks.append({**head, "choices": [{"index": choice["index"], "text": piece, "logprobs": None,
                                                "finish_reason": None}]})
        chunks.append({**head, "choices": [{"index": choice["index"], "text": "", "logprobs": None,
                                            "finish_reason": choice["finish_reason"]}]})
    if include_usage:
        chunks.append({**head, "choices": [], "usage": usage(generations)})
    return chunks


def chat_chunks(
    generation: Generation, *, response_id: str, model_id: str, include_usage: bool = False,
    system_fingerprint: str | None = None, created: int | None = None,
) -> list[dict[str, Any]]:
    """The streamed form of :func:`chat_response`: ``chat.completion.chunk`` objects; each
    choice opens with the assistant role, sends its content in deltas and closes with its
    ``finish_reason``; then usage if asked."""
    head = {"id": response_id, "object": "chat.completion.chunk", "created": created or int(time.time()),
            "model": model_id, "system_fingerprint": system_fingerprint}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    chunks = []
    for j, (text, reason) in enumerate(zip(generation.texts, generation.finish_reasons, strict=True)):
        chunks.append(chunk(j, {"role": "assistant", "content": ""}))
        chunks.extend(chunk(j, {"content": piece}) for piece in stream_deltas(text))
        chunks.append(chunk(j, {}, reason))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": usage([generation])})
    return chunks


SSE_DONE = "data: [DONE]\n\n"


def sse_events(chunks: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    """Server-sent events for ``chunks``, closed by ``data: [DONE]`` as OpenAI clients expect."""
    for c in chunks:
        yield f"data: {json.dumps(c, ensure_ascii=False)}\n\n"
    yield SSE_DONE


def token_digest(token: str) -> str:
    """The SHA-256 (hex) a server keeps instead of its bearer token."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_bearer(authorization: str | None, digest: str | None) -> None:
    """Raise a 401 :class:`OpenAIError` unless ``authorization`` is ``Bearer <token>`` with
    ``token_digest(token) == digest``; ``digest=None`` means no token is required."""
    if digest is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise OpenAIError("missing bearer token: send 'Authorization: Bearer <token>'",
                          status=401, code="invalid_api_key")
    if not hmac.compare_digest(token_digest(token.strip()), digest):
        raise OpenAIError("incorrect bearer token", status=401, code="invalid_api_key")


def models_response(model_id: str, *, created: int, owned_by: str = "trustray") -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created, "owned_by": owned_by}]}


def request_body(req: GenerationRequest, model_id: str) -> tuple[str, dict[str, Any]]:
    """The OpenAI route and body that ask an OpenAI server for ``req`` (inverse of the above)."""
    sp = req.sampling
    body: dict[str, Any] = {
        "model": model_id, "max_tokens": sp.max_tokens, "temperature": sp.temperature,
        "top_p": sp.top_p, "top_k": sp.top_k if sp.top_k > 0 else -1, "n": sp.n, "seed": req.seed,
    }
    if sp.stop:
        body["stop"] = list(sp.stop)
    if req.prompt is not None:
        return "/v1/completions", {**body, "prompt": req.prompt}
    messages = [{"role": m.role, "content": m.content} for m in req.messages or ()]
    return "/v1/chat/completions", {**body, "messages": messages}


def generation_from_response(req: GenerationRequest, response: Mapping[str, Any], latency_s: float = 0.0) -> Generation:
    """Turn an OpenAI completion or chat response for ``req`` back into a ``Generation``.

    OpenAI reports only total completion tokens; they are spread evenly over the samples
    (exact for ``n == 1``).
    """
    choices = sorted(response["choices"], key=lambda c: c["index"])
    texts = tuple(c["text"] if "text" in c else (c["message"]["content"] or "") for c in choices)
    used = response.get("usage") or {}
    total_out = int(used.get("completion_tokens", 0))
    n = max(len(texts), 1)
    per = [total_out // n + (1 if i < total_out % n else 0) for i in range(n)]
    return Generation(
        request_id=req.request_id,
        texts=texts,
        prompt_tokens=int(used.get("prompt_tokens", 0)),
        output_tokens=tuple(per[: len(texts)]),
        finish_reasons=tuple(c.get("finish_reason") or "stop" for c in choices),
        latency_s=latency_s,
    )
