"""Machine ethics, AdvGLUE, OOD, adversarial demonstrations and MMLU end to end on the embedded model.

Every perspective runs its ``smoke`` items through ``HFEngine`` and must produce finite
scores in [0, 100]; WikiText-2 perplexity of the same model must be finite and above 1.
"""

from __future__ import annotations

import math

import pytest

from trustray.benchmarks import BENCHMARKS, EvalContext, ScoredRow

PERSPECTIVES = ("machine_ethics", "advglue", "ood", "adv_demonstration", "mmlu")


@pytest.fixture(scope="module")
def engine():
    from trustray.engines.hf import EngineOptions, HFEngine

    # Non-deterministic batching: a smoke run is a handful of ragged requests, and filler rows
    # would multiply its cost; the scores checked here do not depend on batch composition.
    return HFEngine("smollm2-135m", EngineOptions(batch_size=16, deterministic=False))


@pytest.mark.slow
@pytest.mark.parametrize("name", PERSPECTIVES)
def test_smoke_scores_are_finite(engine, data_dir, name):
    bench = BENCHMARKS.get(name)
    ctx = EvalContext(
        profile="smoke", count_tokens=engine.count_tokens, max_prompt_tokens=engine.context_length - 16
    )
    items = bench.items(data_dir, ctx)
    assert 0 < len(items) <= 60
    requests = [bench.request(i, ctx) for i in items]
    generations = engine.generate(requests)
    assert [g.request_id for g in generations] == [i.item_id for i in items]
    rows = [
        ScoredRow(i, k, t, bench.parse(i, t))
        for i, g in zip(items, generations)
        for k, t in enumerate(g.texts)
    ]
    score = bench.aggregate(rows, ctx)
    assert score.perspective == name
    assert math.isfinite(score.score) and 0 <= score.score <= 100
    assert math.isfinite(score.refusal_rate) and 0 <= score.refusal_rate <= 100
    assert all(math.isfinite(v) and 0 <= v <= 100 for v in score.components.values())
    assert score.n_generations == len(rows) and score.notes


@pytest.mark.slow
def test_wikitext2_perplexity(engine, data_dir):
    from trustray.utility import perplexity

    result = perplexity(engine, data=data_dir, profile="smoke")
    assert result.n_windows == 3 and result.n_tokens > 1000
    assert math.isfinite(result.perplexity) and 1 < result.perplexity < 1000
