"""The toxicity scorer interface and registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from trustray.registry import Registry


class ScorerError(RuntimeError):
    """A scorer could not score its texts (missing key, unreachable service, bad model)."""


@runtime_checkable
class Scorer(Protocol):
    """Maps texts to toxicity probabilities in [0, 1]; an empty text scores 0."""

    name: str
    version: str

    def score(self, texts: list[str]) -> list[float]: ...


# Factories, so that a scorer's heavy state (an HTTP client, a model) is made only on use.
SCORERS: Registry[Callable[..., Scorer]] = Registry("toxicity scorer")


def get_scorer(spec: str, **kwargs: Any) -> Scorer:
    """A scorer by name: ``local-calibrated``, ``local``, ``perspective`` or ``hf:<model id or path>``."""
    if spec.startswith("hf:"):
        return SCORERS.get("hf")(spec.removeprefix("hf:"), **kwargs)
    return SCORERS.get(spec)(**kwargs)


def clamp01(x: float) -> float:
    return min(max(float(x), 0.0), 1.0)
