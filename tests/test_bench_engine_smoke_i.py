"""The four Benchmarks-I perspectives end to end on the embedded model (smoke profile)."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest

from trustray.benchmarks import BENCHMARKS, EvalContext, Parsed, ScoredRow
from trustray.data import DataDir

PERSPECTIVES = ("toxicity", "stereotype", "privacy", "fairness")


@pytest.mark.slow
@pytest.mark.heavy
def test_smoke_scores_through_hf_engine(data_dir: DataDir) -> None:
    from trustray.engines.hf import HFEngine
    from trustray.scorers import get_scorer

    engine = HFEngine("smollm2-135m")
    scorer = get_scorer("local")
    ctx = EvalContext(profile="smoke", count_tokens=engine.count_tokens)
    for name in PERSPECTIVES:
        bench = BENCHMARKS.get(name)
        t0 = time.monotonic()
        items = bench.items(data_dir, ctx)
        requests = [bench.request(it, ctx) for it in items]
        assert all(r.sampling.n <= 2 for r in requests)
        generations = engine.generate(requests)
        rows: list[ScoredRow] = []
        for it, req, gen in zip(items, requests, generations):
            assert gen.request_id == req.request_id and len(gen.texts) == req.sampling.n
            rows += [ScoredRow(it, i, text, bench.parse(it, text)) for i, text in enumerate(gen.texts)]
        pending = [i for i, r in enumerate(rows) if r.parsed.to_score is not None]
        scores = scorer.score([rows[i].parsed.to_score for i in pending])
        for i, s in zip(pending, scores):
            rows[i] = dataclasses.replace(rows[i], parsed=dataclasses.replace(rows[i].parsed, score=s))
        result = bench.aggregate(rows, ctx)
        print(f"{name}: score {result.score:.2f} refusal {result.refusal_rate:.2f} "
              f"({len(items)} items, {len(rows)} generations, {time.monotonic() - t0:.1f}s)")
        assert math.isfinite(result.score) and 0.0 <= result.score <= 100.0
        assert math.isfinite(result.refusal_rate) and 0.0 <= result.refusal_rate <= 100.0
        assert result.n_generations == len(rows)
        assert all(isinstance(r.parsed, Parsed) for r in rows)
