"""MMLU (utility): 5-shot raw-text prompts, greedy, first-letter parse, micro-averaged accuracy.

The prompt is the original MMLU harness format (no chat template); dev demos are dropped from
the end while the prompt exceeds ``ctx.max_prompt_tokens``. ``quick`` scores a stratified
subset with the same number of questions from each of the 57 subjects.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from trustray.benchmarks import _dt
from trustray.benchmarks.base import (
    Described,
    EvalContext,
    Item,
    Parsed,
    PerspectiveScore,
    ScoredRow,
    item_seed,
    register,
    stratified_subset,
)
from trustray.data import DataDir
from trustray.generation import GenerationRequest, SamplingParams

NAME = "mmlu"
DEV_DIR = "mmlu/dev"
TEST_DIR = "mmlu/test"
CHOICES = ("A", "B", "C", "D")
SHOTS = 5
MAX_TOKENS = 16
SEED = "mmlu"
HEADER = "The following are multiple choice questions (with answers) about {subject}.\n\n"
SMOKE_SUBJECTS = 8
QUICK_PER_SUBJECT = 1
# Per profile: (subjects drawn at random, or all; questions per subject, or all).
PLANS: dict[str, tuple[int | None, int | None]] = {
    "smoke": (SMOKE_SUBJECTS, 1),
    "quick": (None, QUICK_PER_SUBJECT),
    "paper": (None, None),
}


def subjects(data: DataDir) -> list[str]:
    """The subjects with a test file, sorted."""
    return sorted(p.name[: -len("_test.csv")] for p in data.path(TEST_DIR).glob("*_test.csv"))


def format_question(row: Sequence[str], answer: bool) -> str:
    """``question\\nA. …\\nB. …\\nC. …\\nD. …\\nAnswer:`` (+ `` X\\n\\n`` for a demo)."""
    text = row[0] + "".join(f"\n{c}. {row[i + 1]}" for i, c in enumerate(CHOICES)) + "\nAnswer:"
    return text + f" {row[5]}\n\n" if answer else text


def build_prompt(
    subject: str, demos: Sequence[Sequence[str]], question: Sequence[str], ctx: EvalContext
) -> str:
    """The k-shot prompt with the most demos (≤ 5) that fits ``ctx.max_prompt_tokens``."""
    header = HEADER.format(subject=subject.replace("_", " "))
    tail = format_question(question, answer=False)
    k = len(demos)
    while True:
        prompt = header + "".join(format_question(d, answer=True) for d in demos[:k]) + tail
        if k == 0 or ctx.tokens(prompt) <= ctx.max_prompt_tokens:
            return prompt
        k -= 1


class MMLU(Described):
    """Massive Multitask Language Understanding, 57 subjects."""

    name = NAME
    # 2: answers that do not start with a choice letter are flagged unparsed, not refused
    version = "2"
    label = "MMLU"
    order = 0
    kind = "utility"
    plans = PLANS

    def items(self, data: DataDir, ctx: EvalContext) -> list[Item]:
        rows: list[tuple[str, int, list[str]]] = []
        demos: dict[str, list[list[str]]] = {}
        names = subjects(data)
        for subject in names:
            demos[subject] = data.read_csv(f"{DEV_DIR}/{subject}_dev.csv", header=False)[:SHOTS]
            for n, row in enumerate(data.read_csv(f"{TEST_DIR}/{subject}_test.csv", header=False), 1):
                rows.append((subject, n, row))
        n_subjects, per_subject = PLANS[ctx.profile]
        if n_subjects is not None:
            chosen = set(random.Random(f"{SEED}|{ctx.profile}").sample(names, min(n_subjects, len(names))))
            rows = [r for r in rows if r[0] in chosen]
        rows = stratified_subset(rows, lambda r: r[0], per_subject, SEED)
        return [
            Item(
                item_id=_dt.item_id(NAME, subject, f"{TEST_DIR}/{subject}_test.csv", n),
                perspective=NAME,
                scenario=subject,
                payload={"subject": subject, "question": row, "demos": demos[subject]},
                gold=row[5].strip(),
            )
            for subject, n, row in rows
        ]

    def request(self, item: Item, ctx: EvalContext) -> GenerationRequest:
        p = item.payload
        prompt = build_prompt(p["subject"], p["demos"], p["question"], ctx)
        sampling = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
        return GenerationRequest(
            request_id=item.item_id, sampling=sampling, seed=item_seed(item, ctx), prompt=prompt
        )

    def parse(self, item: Item, text: str) -> Parsed:
        pred = text.lstrip()[:1].upper()
        if pred not in CHOICES:
            return Parsed(label=None, correct=False, unparsed=True)
        return Parsed(label=pred, correct=pred == item.gold)

    def aggregate(self, rows: Sequence[ScoredRow], ctx: EvalContext) -> PerspectiveScore:
        if not rows:
            raise ValueError("mmlu: no rows to aggregate")
        by_subject: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            by_subject[r.item.scenario].append(bool(r.parsed.correct))
        return PerspectiveScore(
            perspective=NAME,
            score=100 * _dt.mean([bool(r.parsed.correct) for r in rows]),
            # the spec's refusal rate: answers that do not start with a choice letter
            refusal_rate=100 * _dt.mean([_dt.no_label(r.parsed) for r in rows]),
            unparsed_rate=100 * _dt.mean([r.parsed.unparsed for r in rows]),
            components={f"acc/{s}": 100 * _dt.mean(v) for s, v in sorted(by_subject.items())},
            notes=[f"micro-averaged over {len(rows)} questions from {len(by_subject)} subjects"],
            n_items=len({r.item.item_id for r in rows}),
            n_generations=len(rows),
        )


register(MMLU())
