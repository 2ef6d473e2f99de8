"""The engine protocol: a model that answers generation requests. Knows nothing of benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol, get_args

from trustray.generation import Generation, GenerationRequest

ProgressCallback = Callable[[int, int], None]  # (output tokens so far, requests done)

# The one declaration of each: specs, engines, the serving layer and the CLI read these.
# "simulated": a model-free engine timed by a GPU throughput model, for scale tests only.
Backend = Literal["auto", "hf", "vllm", "simulated"]
DType = Literal["auto", "bfloat16", "float16", "float32"]
BACKENDS: tuple[str, ...] = get_args(Backend)
DTYPES: tuple[str, ...] = get_args(DType)


class Engine(Protocol):
    """Generates completions for many requests at once, returning them in request order."""

    name: str
    version: str

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressCallback | None = None
    ) -> list[Generation]: ...

    def count_tokens(self, text: str) -> int: ...
