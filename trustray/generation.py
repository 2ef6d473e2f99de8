"""Engine-neutral generation requests and results.

Benchmarks build ``GenerationRequest`` objects and engines answer them with ``Generation``
objects; neither side imports the other. Everything here is plain, frozen, picklable data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters. ``temperature == 0`` means greedy decoding (``do_sample=False``)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 50
    max_tokens: int = 16
    n: int = 1
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("n > 1 needs temperature > 0: greedy samples are identical")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete ``sampling.n`` times.

    Exactly one of ``messages`` (rendered with the model's chat template) or ``prompt``
    (raw text, used as is) is set. ``seed`` makes sampling reproducible: sample ``i`` uses
    ``sample_seed(seed, i)``.
    """

    request_id: str
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError(f"request {self.request_id!r}: set exactly one of messages or prompt")

    def prompt_hash(self) -> str:
        """A stable hash of what the model is asked (prompt or messages), 16 hex chars."""
        if self.prompt is not None:
            body = json.dumps({"prompt": self.prompt})
        else:
            body = json.dumps({"messages": [[m.role, m.content] for m in self.messages or ()]})
        return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Generation:
    """The engine's answer to one request: ``n`` texts in sample order."""

    request_id: str
    texts: tuple[str, ...]
    prompt_tokens: int
    output_tokens: tuple[int, ...]
    finish_reasons: tuple[str, ...]  # "stop" (EOS or stop string) or "length"
    latency_s: float = 0.0


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (item id, generation index, run seed...), stable across runs."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_seed(request_seed: int, index: int) -> int:
    """The seed of sample ``index`` of a request whose seed is ``request_seed``."""
    return derive_seed(request_seed, index)
