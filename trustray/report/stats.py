"""Seed statistics, bootstrap confidence intervals of a mean, and the exact McNemar test.

Every bootstrap is scipy's percentile bootstrap of the mean with a fixed generator seed, so a
report is reproducible to the last digit. Percentile rather than BCa because seed samples are
tiny (2–5 values) and BCa is undefined on degenerate samples (all items correct).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


CONFIDENCE = 0.95
BOOTSTRAP_METHOD = "percentile"


@dataclass(frozen=True)
class BootstrapSpec:
    """How every CI of a report is drawn."""

    seed: int = 0
    n_resamples: int = 9999  # bootstraps of a mean (over seeds)
    # cluster bootstraps over items, each resample re-running a perspective's aggregate()
    item_resamples: int = 2000


DEFAULT_SPEC = BootstrapSpec()


def bootstrap_mean_ci(values: np.ndarray, spec: BootstrapSpec) -> tuple[float, float]:
    """95 % percentile-bootstrap CI of the mean; NaN bounds for fewer than two values."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < 2:
        return math.nan, math.nan
    if np.all(v == v[0]):  # every resample has the same mean
        return float(v[0]), float(v[0])
    res = stats.bootstrap(
        (v,), np.mean, n_resamples=spec.n_resamples, confidence_level=CONFIDENCE,
        method=BOOTSTRAP_METHOD, vectorized=True, axis=-1, batch=1000,
        rng=np.random.default_rng(spec.seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass(frozen=True)
class SeedStats:
    mean: float
    std: float  # sample std (ddof=1) over seeds; NaN with one seed
    ci_low: float
    ci_high: float
    ci_over: str  # "seeds" | "items" | "" (no CI)
    n_seeds: int


def seed_stats(seed_scores: np.ndarray, item_scores: np.ndarray | None, spec: BootstrapSpec) -> SeedStats:
    """Mean ± std over per-seed scores and a 95 % CI over seeds; with a single seed the CI is a
    bootstrap over ``item_scores`` (per-item outcomes × 100) instead, and says so."""
    s = np.asarray(seed_scores, dtype=float)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return SeedStats(math.nan, math.nan, math.nan, math.nan, "", 0)
    if s.size >= 2:
        lo, hi = bootstrap_mean_ci(s, spec)
        return SeedStats(float(s.mean()), float(s.std(ddof=1)), lo, hi, "seeds", int(s.size))
    lo, hi = (math.nan, math.nan) if item_scores is None else bootstrap_mean_ci(item_scores, spec)
    return SeedStats(float(s[0]), math.nan, lo, hi, "items" if not math.isnan(lo) else "", 1)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test on the discordant counts ``b`` and ``c``."""
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(b, b + c, 0.5).pvalue)
