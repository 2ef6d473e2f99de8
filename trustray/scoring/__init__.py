"""Scoring: per-item outcomes and per-perspective scores of result rows, for a trial (its
metrics) and for the report alike."""

from trustray.scoring.outcomes import item_outcomes
from trustray.scoring.scores import Score, perspective_score, score_config, scored_rows

__all__ = ["Score", "item_outcomes", "perspective_score", "score_config", "scored_rows"]
