"""The engine protocol: a model that answers generation requests. Knows nothing of benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from trustray.generation import Generation, GenerationRequest

ProgressCallback = Callable[[int, int], None]  # (output tokens so far, requests done)


class Engine(Protocol):
    """Generates completions for many requests at once, returning them in request order."""

    name: str
    version: str

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[Generation]: ...

    def count_tokens(self, text: str) -> int: ...
