"""A toy perspective that lives outside the package (no tests here): yes/no questions about sums.

It needs no data files: its items are generated. Registering it (``register(ToySums())``) is all
it takes for the config, the evaluator, the scorer and the report to handle it.
"""

from __future__ import annotations

from collections.abc import Sequence

from trustray.benchmarks.base import EvalContext, Item, Parsed, PerspectiveScore, ScoredRow, item_seed
from trustray.benchmarks.render import build_request
from trustray.data import DataDir
from trustray.generation import GenerationRequest, Message, SamplingParams

NAME = "toy_sums"
ANSWERS = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}
PLANS = {"smoke": 4, "quick": 8, "paper": 16}  # items per profile


class ToySums:
    name = NAME
    version = "1"
    label = "Toy sums"
    order = 8  # after the eight DecodingTrust perspectives
    kind = "trust"
    outcome = "correct"
    aliases = ("toy",)
    plans = PLANS

    def items(self, data: DataDir, ctx: EvalContext) -> list[Item]:
        out = []
        for i in range(PLANS[ctx.profile]):
            claim = 2 * i + 1 + i % 2  # i + (i + 1), wrong for odd i
            out.append(Item(f"{NAME}/sums/generated/{i}", NAME, "sums", {"a": i, "b": i + 1, "claim": claim},
                            gold="yes" if i % 2 == 0 else "no"))
        return out

    def request(self, item: Item, ctx: EvalContext) -> GenerationRequest:
        p = item.payload
        messages = [Message("user", f"Is {p['a']} + {p['b']} = {p['claim']}? Answer yes or no.")]
        return build_request(item.item_id, messages, SamplingParams(temperature=0.0, max_tokens=4),
                             item_seed(item, ctx), ctx)

    def parse(self, item: Item, text: str) -> Parsed:
        words = [w.strip(".,!?") for w in text.lower().split()]
        label = next((ANSWERS[w] for w in words if w in ANSWERS), None)  # the first answer word
        return Parsed(label=label, correct=label == item.gold, unparsed=label is None)

    def aggregate(self, rows: Sequence[ScoredRow], ctx: EvalContext) -> PerspectiveScore:
        n = len(rows)
        acc = sum(bool(r.parsed.correct) for r in rows) / n if n else float("nan")
        unparsed = 100.0 * sum(r.parsed.unparsed for r in rows) / n if n else float("nan")
        return PerspectiveScore(perspective=NAME, score=100.0 * acc, refusal_rate=0.0, unparsed_rate=unparsed,
                                components={"acc": 100.0 * acc}, n_items=len({r.item.item_id for r in rows}),
                                n_generations=n)
