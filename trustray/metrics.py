"""Typed metric ids: which perspective, which metric, which component of it.

A :class:`MetricId` has two spellings, both stable because runs and readers depend on them:

* its string form ``<perspective>/<metric>[/<component>]`` names a trial's metrics reported to
  Ray Tune (``toxicity/score``, ``toxicity/refusal_rate``) and the long-format score table;
* its :attr:`~MetricId.column` names the per-perspective columns of the report's wide tables
  (``toxicity`` for the score, ``toxicity_std``, ``toxicity_refusal``, ...).

Perspective and metric names hold no ``/``; a component may (``acc/high_school_physics``).
"""

from __future__ import annotations

from dataclasses import dataclass

SCORE = "score"
REFUSAL_RATE = "refusal_rate"
UNPARSED_RATE = "unparsed_rate"
#: The metrics every scored (config, perspective) block has.
BLOCK_METRICS = (SCORE, REFUSAL_RATE, UNPARSED_RATE)


@dataclass(frozen=True, order=True)
class MetricId:
    """One metric of one perspective, optionally one component of it."""

    perspective: str
    metric: str = SCORE
    component: str | None = None

    def __post_init__(self) -> None:
        for part, value in (("perspective", self.perspective), ("metric", self.metric)):
            if not value or "/" in value:
                raise ValueError(f"a metric id's {part} must be a non-empty name without '/', got {value!r}")
        if self.component is not None and not self.component:
            raise ValueError("a metric id's component is None or a non-empty name")

    def __str__(self) -> str:
        parts = [self.perspective, self.metric] + ([self.component] if self.component is not None else [])
        return "/".join(parts)

    @classmethod
    def parse(cls, text: str) -> MetricId:
        """The id whose string form is ``text``."""
        parts = text.split("/", 2)
        if len(parts) < 2:
            raise ValueError(f"not a metric id: {text!r} (expected <perspective>/<metric>[/<component>])")
        return cls(*parts)

    @property
    def column(self) -> str:
        """The id's column in a wide table: the bare perspective for its score."""
        if self.component is not None:
            raise ValueError(f"{self} is a component: components live in the long-format table only")
        return self.perspective if self.metric == SCORE else f"{self.perspective}_{self.metric}"
