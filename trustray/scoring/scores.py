"""Perspective scores per config: the perspective's own ``aggregate()`` over rows rebuilt from
the table, or, when the perspective is not registered, 100 × the mean item outcome (labelled)."""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pandas as pd

from trustray.benchmarks.base import (
    DT_REFERENCES,
    PROFILES,
    RENDER_MODES,
    Benchmark,
    EvalContext,
    Item,
    Parsed,
    ScoredRow,
    dt_reference_of,
)
from trustray.metrics import BLOCK_METRICS, SCORE, MetricId
from trustray.rundir import RunDir
from trustray.scoring.outcomes import item_outcomes

AGGREGATE = "aggregate"
ITEM_MEAN = "item-mean"


class BenchmarkLookup(Protocol):
    def __contains__(self, name: object) -> bool: ...

    def get(self, name: str) -> Benchmark: ...


@dataclass
class Score:
    """One perspective's score for one config, with where it came from."""

    config_id: str
    perspective: str
    score: float
    refusal_rate: float
    source: str  # AGGREGATE or ITEM_MEAN
    note: str = ""
    unparsed_rate: float = 0.0
    components: dict[str, float] = field(default_factory=dict)
    n_items: int = 0
    n_generations: int = 0
    dt_reference: str = ""  # the DecodingTrust reference(s) of the rows, comma-joined

    def metrics(self) -> dict[MetricId, float]:
        """Every metric of this block by id: score, refusal and unparsed rates, the score's components."""
        out = {MetricId(self.perspective, m): float(getattr(self, m)) for m in BLOCK_METRICS}
        out.update({MetricId(self.perspective, SCORE, c): float(v) for c, v in self.components.items()})
        return out


def registered_benchmarks() -> BenchmarkLookup:
    """The project's perspective registry, with every perspective module imported."""
    try:
        import trustray.benchmarks  # noqa: F401  (the package registers its perspectives)
    except ImportError as e:  # a half-installed tree still reports, on item means
        warnings.warn(f"trustray.benchmarks could not be imported ({e}); using item means", stacklevel=2)
    from trustray.benchmarks.base import BENCHMARKS

    return BENCHMARKS


def _json(text: Any) -> dict[str, Any]:
    if text is None or (isinstance(text, float) and math.isnan(text)) or text == "":
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def _opt(value: Any) -> Any:
    """pandas null (None / NaN / NA) → None."""
    return None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


def scored_rows(rows: pd.DataFrame) -> list[ScoredRow]:
    """Rebuild ``ScoredRow``s from result rows of one (config, perspective).

    The item payload is not stored in results, so items carry an empty payload; everything
    ``aggregate`` needs (scenario, gold, meta, parse fields, score) is restored.
    """
    out: list[ScoredRow] = []
    for r in rows.itertuples(index=False):
        item = Item(
            item_id=r.item_id, perspective=r.perspective, scenario=r.scenario, payload={},
            gold=_opt(r.gold), meta=_json(_opt(r.item_meta)),
        )
        correct = _opt(r.correct)
        score = _opt(r.score)
        parsed = Parsed(
            label=_opt(r.parsed_label),
            correct=None if correct is None else bool(correct),
            refused=bool(r.refused),
            unparsed=bool(_opt(getattr(r, "unparsed", None))),
            score=None if score is None else float(score),
            extra=_json(_opt(r.parsed_extra)),
        )
        out.append(ScoredRow(item=item, generation_index=int(r.generation_index), text=r.output_text, parsed=parsed))
    return out


def dt_references(rows: pd.DataFrame) -> list[str]:
    """The DecodingTrust references recorded in the rows' scorer versions."""
    versions = rows["scorer_version"].dropna().unique() if "scorer_version" in rows else []
    return sorted({ref for v in versions if (ref := dt_reference_of(v)) is not None})


def eval_context(rows: pd.DataFrame) -> EvalContext:
    """The context the rows were produced under (profile, render mode, DecodingTrust reference),
    as far as recorded; rows that mix references are an error (their scores would mean nothing)."""
    profile = rows["profile"].iloc[0]
    render = rows["render_mode"].iloc[0]
    refs = dt_references(rows)
    if len(refs) > 1:
        raise ValueError(f"rows mix DecodingTrust references {refs}; score each reference's rows apart")
    return EvalContext(
        profile=profile if profile in PROFILES else "smoke",
        render=render if render in RENDER_MODES else "chat_template",
        dt_reference=refs[0] if refs and refs[0] in DT_REFERENCES else "fork",
    )


def fallback_score(rows: pd.DataFrame, note: str, items: pd.DataFrame | None = None) -> Score:
    """100 × mean item outcome and 100 × mean ``refused`` over rows (``items``: their outcomes)."""
    items = item_outcomes(rows) if items is None else items
    valid = items["outcome"].dropna()
    return Score(
        config_id=str(rows["config_id"].iloc[0]), perspective=str(rows["perspective"].iloc[0]),
        score=100.0 * float(valid.mean()) if len(valid) else math.nan,
        refusal_rate=100.0 * float(rows["refused"].astype(float).mean()),
        unparsed_rate=100.0 * float(rows["unparsed"].fillna(False).astype(float).mean())
        if "unparsed" in rows else 0.0,
        source=ITEM_MEAN, note=note, n_items=int(items.shape[0]), n_generations=int(rows.shape[0]),
    )


def perspective_score(rows: pd.DataFrame, benchmarks: BenchmarkLookup, items: pd.DataFrame | None = None) -> Score:
    """Score of one (config, perspective) block of rows (``items``: their outcomes, if known)."""
    perspective = str(rows["perspective"].iloc[0])
    if perspective not in benchmarks:
        note = f"{perspective!r} is not a registered perspective: score = 100 × mean item outcome"
        return fallback_score(rows, note, items)
    bench = benchmarks.get(perspective)
    try:
        ps = bench.aggregate(scored_rows(rows), eval_context(rows))
    except Exception as e:  # noqa: BLE001 - the report still shows the item mean, and says why
        msg = f"{perspective} aggregate() failed ({type(e).__name__}: {e}): score = 100 × mean item outcome"
        warnings.warn(msg, stacklevel=2)
        return fallback_score(rows, msg, items)
    return Score(
        config_id=str(rows["config_id"].iloc[0]), perspective=perspective,
        score=float(ps.score), refusal_rate=float(ps.refusal_rate), unparsed_rate=float(ps.unparsed_rate),
        source=AGGREGATE,
        note="; ".join([*ps.notes, *(f"missing: {m}" for m in ps.missing)]),
        components=dict(ps.components), n_items=int(ps.n_items), n_generations=int(ps.n_generations),
    )


def block_scores(results: pd.DataFrame, benchmarks: BenchmarkLookup, items: pd.DataFrame) -> list[Score]:
    """The score of every (config_id, perspective) block, in sorted order.
    ``items`` are the item outcomes of ``results``."""
    by_block = dict(iter(items.groupby(["config_id", "perspective"], sort=False)))
    return [
        replace(perspective_score(rows, benchmarks, by_block.get(key)), dt_reference=",".join(dt_references(rows)))
        for key, rows in results.groupby(["config_id", "perspective"], sort=True)
    ]


def scores_frame(scores: list[Score]) -> pd.DataFrame:
    """One row per (config_id, perspective): score, refusal_rate, unparsed_rate, dt_reference,
    source, note, n_items, n_generations."""
    return pd.DataFrame.from_records([
        {
            "config_id": s.config_id, "perspective": s.perspective, "score": s.score,
            "refusal_rate": s.refusal_rate, "unparsed_rate": s.unparsed_rate,
            "dt_reference": s.dt_reference, "source": s.source, "note": s.note,
            "n_items": s.n_items, "n_generations": s.n_generations,
        }
        for s in scores
    ])


LONG_COLUMNS = ["config_id", "metric_id", "perspective", "metric", "component", "value"]


def long_scores(scores: list[Score]) -> pd.DataFrame:
    """The scores in long format: one row per (config_id, metric id) with the id's parts,
    every block metric and every component of the score."""
    records = [
        {"config_id": s.config_id, "metric_id": str(m), "perspective": m.perspective, "metric": m.metric,
         "component": m.component, "value": v}
        for s in scores for m, v in s.metrics().items()
    ]
    df = pd.DataFrame.from_records(records, columns=LONG_COLUMNS)
    return df.astype({"component": "string", "value": "float64"})


def score_config(run_dir: str | os.PathLike[str], config_id: str,
                 perspectives: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """Per-perspective score and refusal rate from the committed rows of one config in ``run_dir``
    (a path or a :class:`~trustray.rundir.RunDir`)."""
    from trustray.evaluate.store import read_config_rows

    table = read_config_rows(RunDir(run_dir).root, config_id, list(perspectives))
    df = table.to_pandas()
    out: dict[str, dict[str, Any]] = {}
    benchmarks = registered_benchmarks()
    for p in perspectives:
        rows = df[df["perspective"] == p]
        if rows.empty:
            continue
        s = perspective_score(rows, benchmarks)
        out[p] = {"score": s.score, "refusal_rate": s.refusal_rate, "unparsed_rate": s.unparsed_rate,
                  "source": s.source,
                  "n_items": s.n_items, "n_generations": s.n_generations}
        if not math.isfinite(s.score):
            out[p]["note"] = s.note
    return out
