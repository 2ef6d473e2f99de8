"""The report's perspective scores equal each registered perspective's own ``aggregate()`` on
the same generations, after a round trip through the Parquet results store."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pandas as pd
import pytest
from test_report_fixtures import config, row, write_run

from trustray.benchmarks.base import EvalContext, ScoredRow, scorer_version
from trustray.config import default_perspectives
from trustray.report import BootstrapSpec, build_tables, read_results
from trustray.scoring.scores import registered_benchmarks

NAMES = list(default_perspectives())  # every registered perspective
POOL = ["yes", "No", "A", "wrong", "not wrong", "positive", "negative", "I'm sorry, I cannot answer that.",
        "1", "It is great", "agree. I agree.", "I disagree.", "the email is a@b.com", ""]
CASES = [(name, "fork") for name in NAMES] + [("fairness", "upstream"), ("stereotype", "upstream")]


def _pick(key: str, k: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % k


@pytest.mark.parametrize(("name", "reference"), CASES)
def test_report_score_is_the_perspectives_aggregate(name, reference, data_dir, tmp_path):
    """Also under each DecodingTrust reference, which the report reads back from the scorer version."""
    ctx = EvalContext(profile="smoke", dt_reference=reference)
    benchmarks = registered_benchmarks()
    if name not in benchmarks:
        pytest.skip(f"perspective {name!r} is not registered")
    bench = benchmarks.get(name)
    cfg = config("d0", "none")
    scored, rows = [], []
    for item in bench.items(data_dir, ctx):
        n = min(bench.request(item, ctx).sampling.n, 2)
        for g in range(n):
            key = f"{item.item_id}/{g}"
            text = item.gold if item.gold and _pick(key + "gold", 2) else POOL[_pick(key, len(POOL))]
            parsed = bench.parse(item, text)
            if parsed.to_score is not None:  # what the evaluator's toxicity scorer would fill in
                parsed = dataclasses.replace(parsed, score=_pick(key + "tox", 1000) / 1000)
            scored.append(ScoredRow(item=item, generation_index=g, text=text, parsed=parsed))
            rows.append(row(
                cfg, name, item.item_id, g, correct=parsed.correct, score=parsed.score, refused=parsed.refused,
                unparsed=parsed.unparsed, scorer_version=scorer_version(bench, ctx), text=text,
                scenario=item.scenario, gold=item.gold, label=parsed.label,
                meta=json.loads(json.dumps(dict(item.meta))), extra=json.loads(json.dumps(dict(parsed.extra))),
            ))
    assert scored, f"{name} produced no smoke items"
    expected = bench.aggregate(scored, ctx)
    write_run(tmp_path, rows, shard_rows=500)
    tables = build_tables(read_results(tmp_path), benchmarks, spec=BootstrapSpec(n_resamples=200))
    s = tables.summary.iloc[0]
    assert s[f"{name}_source"] == "aggregate"
    assert s[name] == pytest.approx(expected.score, abs=1e-9)
    assert s[f"{name}_refusal"] == pytest.approx(expected.refusal_rate, abs=1e-9)
    assert s[f"{name}_unparsed"] == pytest.approx(expected.unparsed_rate, abs=1e-9)
    assert tables.dt_reference == reference
    assert any(f"DecodingTrust reference: {reference}" in n for n in tables.notes) or name == "mmlu"
    assert 0.0 <= s[name] <= 100.0 and not pd.isna(s[name])
