"""A perspective added from outside the package with two files (``toy_perspective.py`` and this
test, whose fixture registers it) is planned, evaluated in a smoke run, scored and reported."""

from __future__ import annotations

import asyncio

import pytest
from test_report_fixtures import provenance
from toy_perspective import NAME, ToySums

from trustray.benchmarks.base import BENCHMARKS, register
from trustray.config import EngineSpec, EvalSpec, TrialSpec
from trustray.engines.simulated import SimulatedEngine
from trustray.evaluate.evaluator import Evaluator
from trustray.pipeline import eval_context, plan
from trustray.scoring import score_config
from trustray.report import BootstrapSpec, write_report


@pytest.fixture
def toy():
    bench = register(ToySums())
    try:
        yield bench
    finally:
        BENCHMARKS.remove(NAME)


def test_toy_perspective_runs_end_to_end(toy, data_dir, tmp_path):
    assert NAME in EvalSpec().perspectives  # the config's default reads the registry
    trial = TrialSpec(eval=EvalSpec(profile="smoke", perspectives=(NAME,), perplexity=False),
                      engine=EngineSpec(backend="simulated"))
    ctx = eval_context(trial)
    config_id = "toycfg"

    # planned: the smoke profile's items, cut into shards of about the trial's tokens of work
    one_item = plan(trial, config_id, data_dir, ctx)[NAME][1][0].work // ToySums.plans["smoke"]
    items, shards = plan(trial.model_copy(update={"resources": trial.resources.model_copy(
        update={"shard_tokens": 3 * one_item})}), config_id, data_dir, ctx)[NAME]
    assert len(items) == ToySums.plans["smoke"] and len(shards) >= 2
    assert [(s.start, s.stop) for s in shards][0][0] == 0 and shards[-1].stop == len(items)
    assert all(a.stop == b.start for a, b in zip(shards, shards[1:]))

    # evaluated: the evaluator runs every shard against the simulated engine and commits rows
    engine = SimulatedEngine()

    async def client(request):
        return engine.generate([request])[0]

    evaluator = Evaluator("local")
    prov = provenance(config_id, engine_name=engine.name, engine_version=engine.version)
    for s in shards:
        result = asyncio.run(evaluator.run_shard(tmp_path, s, items[s.start:s.stop], ctx, prov, client))
        assert result.generations == s.stop - s.start and not result.skipped

    # scored: the perspective's own aggregate over the stored rows
    texts = [engine.generate([toy.request(i, ctx)])[0].texts[0] for i in items]
    answers = [next((w for w in t.lower().replace(".", " ").split() if w in ("yes", "true", "no", "false")), None)
               for t in texts]
    right = [{"true": "yes", "false": "no"}.get(a, a) == i.gold for a, i in zip(answers, items)]
    expected = 100.0 * sum(right) / len(items)
    assert 0 < expected < 100  # the simulated answers are neither all right nor all wrong
    scores = score_config(tmp_path, config_id, (NAME,))
    assert scores[NAME]["source"] == "aggregate" and scores[NAME]["score"] == pytest.approx(expected)
    assert scores[NAME]["n_items"] == len(items)

    # reported: a trust column with the registered label, averaged into the trust score
    files, tables = write_report(tmp_path, spec=BootstrapSpec(n_resamples=50, item_resamples=20))
    assert tables.trust == [NAME] and tables.utility == []
    row = tables.summary.iloc[0]
    assert row[NAME] == pytest.approx(expected) and row["avg_trust"] == pytest.approx(expected)
    assert "Toy sums" in files.summary_md.read_text() and "Toy sums" in files.html.read_text()


def test_toy_perspective_is_gone_after_its_test():
    assert NAME not in BENCHMARKS and NAME not in EvalSpec().perspectives
