"""Profile budgets: every shipped profile's rendered work fits its documented per-config budget,
and the quick profile still fills every cell the paper profile scores."""

from __future__ import annotations

import pytest

import trustray.benchmarks  # noqa: F401  (registers every perspective)
from trustray.benchmarks import BENCHMARKS
from trustray.benchmarks.base import PROFILES, EvalContext
from trustray.budget import BUDGETS, PerspectiveWork, over_budget, profile_work, tokenizer_for
from trustray.config import ALL_PERSPECTIVES


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizer_for("smollm2-135m")


def test_every_profile_has_a_budget():
    assert set(BUDGETS) == set(PROFILES)
    assert BUDGETS["quick"].prompt_tokens <= 200_000


@pytest.mark.parametrize("profile", [p if p != "paper" else pytest.param(p, marks=[pytest.mark.slow, pytest.mark.heavy]) for p in PROFILES])
def test_profile_sums_fit_the_budget(profile, data_dir, tokenizer):
    work = profile_work(profile, data_dir, tokenizer)
    assert [w.perspective for w in work] == list(ALL_PERSPECTIVES)
    assert all(w.items > 0 and w.generations >= w.items and w.prompt_tokens > 0 for w in work)
    assert all(w.prefill_tokens <= w.prompt_tokens for w in work)
    assert over_budget(profile, work) == []


def test_over_budget_names_what_overflows():
    big = PerspectiveWork("fairness", 1, 1, BUDGETS["quick"].prompt_tokens + 1, 0, 10)
    assert over_budget("quick", [big]) == [f"quick: {big.prompt_tokens} prompt tokens > budget 200000"]


@pytest.mark.parametrize("name", ALL_PERSPECTIVES)
def test_quick_keeps_every_scored_cell_of_paper(name, data_dir):
    bench = BENCHMARKS.get(name)
    quick = {i.scenario for i in bench.items(data_dir, EvalContext(profile="quick"))}
    paper = {i.scenario for i in bench.items(data_dir, EvalContext(profile="paper"))}
    assert quick == paper


def test_quick_fairness_keeps_every_label_and_group_of_each_setting(data_dir):
    def strata(profile: str) -> set[tuple[str, int, int]]:
        items = BENCHMARKS.get("fairness").items(data_dir, EvalContext(profile=profile))  # type: ignore[arg-type]
        return {(i.scenario, i.meta["label"], i.meta["sensitive"]) for i in items}

    assert strata("quick") == strata("paper")


def test_data_stats_prints_tokens_per_perspective_and_the_budget(data_dir):
    from typer.testing import CliRunner

    from trustray.cli import app

    res = CliRunner().invoke(app, ["data", "stats", "--profile", "smoke", "--no-estimate",
                                   "--data-dir", str(data_dir.root)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "budget of profile smoke: 130,000 prompt / 5,000 output tokens" in res.output
    for col in ("items", "generations", "prompt tokens", "max output tokens"):
        assert col in res.output
    assert all(p in res.output for p in ALL_PERSPECTIVES)
    bad = CliRunner().invoke(app, ["data", "stats", "--profile", "huge", "--no-estimate"])
    assert bad.exit_code != 0 and "--profile must be one of" in bad.output
