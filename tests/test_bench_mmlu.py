"""MMLU: prompt format and trimming, first-letter parse, micro-averaged accuracy, subsets."""

from __future__ import annotations

import pytest

from trustray.benchmarks import EvalContext, Item, ScoredRow
from trustray.benchmarks.mmlu import MMLU, build_prompt, format_question, subjects

B = MMLU()
Q = ["What is 1+1?", "1", "2", "3", "4", "B"]
DEMO = ["Pick A.", "a", "b", "c", "d", "A"]


def test_format_question():
    assert format_question(Q, answer=False) == "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    assert format_question(DEMO, answer=True) == "Pick A.\nA. a\nB. b\nC. c\nD. d\nAnswer: A\n\n"


def test_prompt_trims_demos_to_budget():
    words = EvalContext(count_tokens=lambda t: len(t.split()), max_prompt_tokens=10_000)
    full = build_prompt("high_school_us_history", [DEMO] * 5, Q, words)
    assert full.startswith(
        "The following are multiple choice questions (with answers) about high school us history.\n\n"
    )
    assert full.count("Answer: A\n\n") == 5 and full.endswith("\nAnswer:")
    # every demo is 13 words; a budget that fits the header, the question and two demos keeps two
    budget = len(build_prompt("x", [DEMO] * 2, Q, words).split())
    two = build_prompt(
        "x", [DEMO] * 5, Q, EvalContext(count_tokens=lambda t: len(t.split()), max_prompt_tokens=budget)
    )
    assert two.count("Answer: A\n\n") == 2
    none = build_prompt(
        "x", [DEMO] * 5, Q, EvalContext(count_tokens=lambda t: len(t.split()), max_prompt_tokens=1)
    )
    assert "Answer: A" not in none and none.endswith(format_question(Q, answer=False))


@pytest.mark.parametrize(
    ("text", "label", "unparsed"),
    [
        (" B", "B", False),
        ("b) because", "B", False),
        ("\n  C.", "C", False),
        ("E", None, True),
        ("", None, True),
        ("The answer is A", None, True),
        ("D", "D", False),
    ],
)
def test_parse(text, label, unparsed):
    it = Item(item_id="mmlu/x/f/1", perspective="mmlu", scenario="x", payload={}, gold="B")
    p = B.parse(it, text)
    assert (p.label, p.unparsed, p.refused, p.correct) == (label, unparsed, False, label == "B")


def test_profiles(data_dir):
    names = subjects(data_dir)
    assert len(names) == 57
    smoke = B.items(data_dir, EvalContext(profile="smoke"))
    assert len(smoke) == 8 and len({i.scenario for i in smoke}) == 8
    quick = B.items(data_dir, EvalContext(profile="quick"))
    per_subject = {s: sum(i.scenario == s for i in quick) for s in names}
    assert set(per_subject.values()) == {1}  # stratified across all 57 subjects (token budget)
    assert quick[0].item_id.startswith(f"mmlu/{quick[0].scenario}/mmlu/test/{quick[0].scenario}_test.csv/")
    req = B.request(quick[0], EvalContext(profile="quick"))
    assert req.messages is None and req.prompt.endswith("\nAnswer:")  # raw prompt, no chat template
    assert req.sampling.greedy and req.sampling.max_tokens == 16
    assert req.prompt.count("\nAnswer: ") == 5


def test_aggregate_is_micro_averaged(data_dir):
    items = B.items(data_dir, EvalContext(profile="paper"))
    s1 = [i for i in items if i.scenario == "anatomy"][:3]
    s2 = [i for i in items if i.scenario == "virology"][:1]
    wrong = {"A": "B", "B": "C", "C": "D", "D": "A"}
    texts = [s1[0].gold, s1[1].gold, "I am not sure", wrong[s2[0].gold]]
    rows = [ScoredRow(i, 0, t, B.parse(i, t)) for i, t in zip(s1 + s2, texts)]
    s = B.aggregate(rows, EvalContext(profile="quick"))
    assert s.score == pytest.approx(50)  # 2 of 4; the subject macro-mean would be 33.3
    assert s.refusal_rate == pytest.approx(25) and s.unparsed_rate == pytest.approx(25)
    assert s.components == {"acc/anatomy": pytest.approx(200 / 3), "acc/virology": 0.0}
