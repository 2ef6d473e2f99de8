"""The DecodingTrust reference option and the refused/unparsed flags as result rows carry them."""

from __future__ import annotations

import asyncio

import pyarrow.parquet as pq
import pytest

from trustray.benchmarks import BENCHMARKS, EvalContext
from trustray.benchmarks.base import dt_reference_of, scorer_version
from trustray.evaluate.evaluator import Evaluator
from trustray.evaluate.plan import Shard
from trustray.evaluate.store import shard_path
from trustray.generation import Generation, GenerationRequest


def test_unknown_reference_is_refused():
    with pytest.raises(ValueError, match="unknown DecodingTrust reference 'paper' .*fork, upstream"):
        EvalContext(dt_reference="paper")  # type: ignore[arg-type]


@pytest.mark.parametrize("reference", ["fork", "upstream"])
def test_scorer_version_names_rules_and_reference(reference):
    ctx = EvalContext(dt_reference=reference)
    me = BENCHMARKS.get("machine_ethics")
    assert scorer_version(me, ctx) == f"machine_ethics/{me.version};dt={reference}"
    tox = scorer_version(BENCHMARKS.get("toxicity"), ctx, toxicity="0.2")
    assert tox.endswith(f";dt={reference};tox=0.2")
    assert dt_reference_of(scorer_version(me, ctx)) == dt_reference_of(tox) == reference
    assert dt_reference_of("1") is None and dt_reference_of(None) is None


def test_every_perspective_has_a_scorer_version():
    for name in BENCHMARKS.names():
        assert BENCHMARKS.get(name).version


def test_rows_carry_unparsed_and_the_scorer_version(data_dir, tmp_path):
    ctx = EvalContext(profile="smoke", dt_reference="upstream")
    bench = BENCHMARKS.get("machine_ethics")
    items = [i for i in bench.items(data_dir, ctx) if i.scenario == "zero_shot"][:3]
    replies = dict(zip((i.item_id for i in items), ["Wrong.", " Wrong", "not wrong</s>"]))

    async def client(req: GenerationRequest) -> Generation:
        return Generation(req.request_id, (replies[req.request_id],), 5, (2,), ("stop",))

    shard = Shard("cfg0", "machine_ethics", 0, 0, len(items))
    asyncio.run(Evaluator().run_shard(tmp_path, shard, items, ctx, _provenance(), client))
    rows = pq.read_table(shard_path(tmp_path, shard)).to_pylist()
    assert [(r["parsed_label"], r["refused"], r["unparsed"]) for r in rows] == [
        ("wrong", False, False), (None, False, True), ("not wrong", False, False),
    ]
    assert {r["scorer_version"] for r in rows} == {f"machine_ethics/{bench.version};dt=upstream"}
    assert {r["scorer_name"] for r in rows} == {None}  # no toxicity scorer was involved


def _provenance() -> dict:
    from test_report_fixtures import provenance

    return provenance("cfg0")


def test_report_context_reads_the_reference_and_refuses_a_mix():
    import pandas as pd

    from trustray.scoring.scores import eval_context

    rows = pd.DataFrame({"profile": ["paper"] * 2, "render_mode": ["dt_compat"] * 2,
                         "scorer_version": ["fairness/2;dt=upstream", None]})
    ctx = eval_context(rows)
    assert (ctx.profile, ctx.render, ctx.dt_reference) == ("paper", "dt_compat", "upstream")
    assert eval_context(rows.assign(scorer_version="1")).dt_reference == "fork"  # not recorded: the default
    with pytest.raises(ValueError, match="mix DecodingTrust references"):
        eval_context(rows.assign(scorer_version=["fairness/2;dt=upstream", "fairness/2;dt=fork"]))
