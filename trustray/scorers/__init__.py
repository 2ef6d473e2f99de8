"""Toxicity scorers: ``local-calibrated`` (offline default), ``local``, ``perspective`` (Google API),
``hf:<model>``; cached by text hash."""

from trustray.scorers import hf, local, local_calibrated, perspective  # noqa: F401  (register the scorers)
from trustray.scorers.base import SCORERS, Scorer, ScorerError, get_scorer
from trustray.scorers.cache import CachedScorer, text_hash

__all__ = ["SCORERS", "CachedScorer", "Scorer", "ScorerError", "get_scorer", "text_hash"]
