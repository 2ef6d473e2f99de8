"""Confidence intervals that belong to their score.

A perspective's score is its own ``aggregate()`` over all rows of a config (DPD/EOD for
fairness, agreement cells for stereotype, expected maximum toxicity, ...), not the mean of
per-item outcomes. So an interval over items resamples *items* (all generations of an item
together: a cluster bootstrap) and recomputes that same ``aggregate()`` on each resample. An
item drawn twice enters the resample as two distinct items (its id suffixed), so aggregates
that count or group by item id see two items.

Percentile intervals of non-smooth statistics (a maximum difference between groups, a
rounded fraction) can sit entirely beside the point estimate when resampling biases the
statistic; such an interval is extended to reach the estimate and marked ``widened``, so no
interval printed beside a score excludes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trustray.benchmarks.base import Benchmark, EvalContext, ScoredRow
from trustray.scoring.outcomes import item_outcomes
from trustray.scoring.scores import BenchmarkLookup, eval_context, scored_rows
from trustray.report.stats import CONFIDENCE, BootstrapSpec, bootstrap_mean_ci

ITEMS = "items"
SEEDS = "seeds"


@dataclass(frozen=True)
class Interval:
    """A 95 % interval around ``estimate``; NaN bounds (and ``note``) where there is none."""

    estimate: float
    low: float
    high: float
    over: str  # ITEMS | SEEDS | ""
    widened: bool = False  # the percentile interval missed the estimate and was extended to it
    variance: float = math.nan  # variance of the bootstrap distribution (items) or of the seeds
    note: str = ""

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))


def _widen(estimate: float, low: float, high: float) -> tuple[float, float, bool]:
    if math.isnan(estimate) or math.isnan(low):
        return low, high, False
    if low <= estimate <= high:
        return low, high, False
    return min(low, estimate), max(high, estimate), True


def _rng(spec: BootstrapSpec, *key: str) -> np.random.Generator:
    """A generator per block, so an interval does not depend on which blocks came before."""
    digest = hashlib.sha256("|".join(key).encode()).digest()
    return np.random.default_rng([spec.seed, int.from_bytes(digest[:8], "little")])


class BlockScorer:
    """Scores one (config, perspective) block on any multiset of its items, the same way the
    report scores the whole block: the registered perspective's ``aggregate()``, or 100 × the
    mean item outcome for an unregistered one (or one whose ``aggregate()`` fails)."""

    def __init__(self, rows: pd.DataFrame, benchmarks: BenchmarkLookup, use_aggregate: bool) -> None:
        self.perspective = str(rows["perspective"].iloc[0])
        order = rows.sort_values(["item_id", "generation_index"], kind="stable")
        self.item_ids: list[str] = sorted(order["item_id"].unique())
        self._bench: Benchmark | None = benchmarks.get(self.perspective) if use_aggregate else None
        if self._bench is not None:
            self._ctx: EvalContext = eval_context(rows)
            by_item: dict[str, list[ScoredRow]] = {i: [] for i in self.item_ids}
            for r in scored_rows(order):
                by_item[r.item.item_id].append(r)
            self._rows = [by_item[i] for i in self.item_ids]
            self._copies: dict[tuple[int, int], list[ScoredRow]] = {}
        else:
            outcomes = item_outcomes(order).set_index("item_id")["outcome"]
            self._outcomes = outcomes.reindex(self.item_ids).to_numpy(dtype=float)

    def _copy(self, j: int, k: int) -> list[ScoredRow]:
        if (j, k) not in self._copies:
            self._copies[j, k] = [
                dataclasses.replace(r, item=dataclasses.replace(r.item, item_id=f"{r.item.item_id}#{k}"))
                for r in self._rows[j]
            ]
        return self._copies[j, k]

    def score(self, counts: np.ndarray) -> float:
        """The score of the multiset holding item ``j`` ``counts[j]`` times."""
        if self._bench is None:
            valid = ~np.isnan(self._outcomes)
            w = counts[valid]
            return 100.0 * float(w @ self._outcomes[valid] / w.sum()) if w.sum() > 0 else math.nan
        rows: list[ScoredRow] = []
        for j in np.flatnonzero(counts):
            rows += self._rows[j]
            for k in range(1, int(counts[j])):
                rows += self._copy(int(j), k)
        return float(self._bench.aggregate(rows, self._ctx).score)


def _percentile(stats: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def resample_counts(n_items: int, spec: BootstrapSpec, rng: np.random.Generator) -> np.ndarray:
    """``(item_resamples, n_items)`` multiplicities of a cluster bootstrap over items."""
    draws = rng.integers(0, n_items, size=(spec.item_resamples, n_items))
    return np.stack([np.bincount(d, minlength=n_items) for d in draws])


def item_interval(scorer: BlockScorer, estimate: float, spec: BootstrapSpec, key: str) -> Interval:
    """Cluster bootstrap over the block's items of the block's own score."""
    n = len(scorer.item_ids)
    if n < 2:
        return Interval(estimate, math.nan, math.nan, "", note=f"{n} item: no interval over items")
    counts = resample_counts(n, spec, _rng(spec, "items", key))
    try:
        stats = np.array([scorer.score(c) for c in counts])
    except Exception as e:  # noqa: BLE001 - the score stands; the interval says why it is missing
        return Interval(estimate, math.nan, math.nan, "", note=f"aggregate() failed on a resample ({e})")
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return Interval(estimate, math.nan, math.nan, "", note="no resample could be scored")
    lo, hi = _percentile(stats)
    lo, hi, widened = _widen(estimate, lo, hi)
    return Interval(estimate, lo, hi, ITEMS, widened, float(stats.var(ddof=1)) if stats.size > 1 else 0.0)


def paired_item_interval(
    base: BlockScorer, comp: BlockScorer, spec: BootstrapSpec, key: str
) -> tuple[Interval, int]:
    """Paired cluster bootstrap of ``comp − base`` over the items both blocks hold (the same
    resampled items score both); returns the interval and the number of shared items."""
    shared = sorted(set(base.item_ids) & set(comp.item_ids))
    if not shared:
        return Interval(math.nan, math.nan, math.nan, "", note="no items in common with the baseline"), 0
    bi = np.array([base.item_ids.index(i) for i in shared])
    ci = np.array([comp.item_ids.index(i) for i in shared])

    def delta(counts: np.ndarray) -> float:
        cb = np.zeros(len(base.item_ids), dtype=int)
        cc = np.zeros(len(comp.item_ids), dtype=int)
        cb[bi], cc[ci] = counts, counts
        return comp.score(cc) - base.score(cb)

    estimate = delta(np.ones(len(shared), dtype=int))
    if len(shared) < 2:
        return Interval(estimate, math.nan, math.nan, "", note="one shared item: no interval"), 1
    counts = resample_counts(len(shared), spec, _rng(spec, "paired", key))
    try:
        stats = np.array([delta(c) for c in counts])
    except Exception as e:  # noqa: BLE001
        return Interval(estimate, math.nan, math.nan, "", note=f"aggregate() failed on a resample ({e})"), len(shared)
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return Interval(estimate, math.nan, math.nan, "", note="no resample could be scored"), len(shared)
    lo, hi = _percentile(stats)
    lo, hi, widened = _widen(estimate, lo, hi)
    return Interval(estimate, lo, hi, ITEMS, widened, float(stats.var(ddof=1))), len(shared)


def seed_interval(values: Sequence[float], spec: BootstrapSpec) -> Interval:
    """Over calibration seeds: the mean of per-seed values and a percentile bootstrap of it."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < 2:
        return Interval(float(v[0]) if v.size else math.nan, math.nan, math.nan, "", note="fewer than two seeds")
    estimate = float(v.mean())
    lo, hi = bootstrap_mean_ci(v, spec)
    lo, hi, widened = _widen(estimate, lo, hi)
    return Interval(estimate, lo, hi, SEEDS, widened, float(v.var(ddof=1)))

