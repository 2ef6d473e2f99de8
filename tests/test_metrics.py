"""Typed metric ids: their string form (Tune metrics, the long score table) and wide columns."""

from __future__ import annotations

import pytest

from trustray.metrics import MetricId


def test_string_form_is_the_tune_metric_name():
    assert str(MetricId("toxicity")) == "toxicity/score"
    assert str(MetricId("toxicity", "refusal_rate")) == "toxicity/refusal_rate"
    assert str(MetricId("mmlu", "score", "acc/high_school_physics")) == "mmlu/score/acc/high_school_physics"


@pytest.mark.parametrize("text", ["ood/score", "ood/refusal_rate", "privacy/score/leak/email", "mmlu/score/acc"])
def test_parse_round_trips(text):
    assert str(MetricId.parse(text)) == text


def test_parse_splits_the_component_once():
    assert MetricId.parse("fairness/score/dpd/zero-shot") == MetricId("fairness", "score", "dpd/zero-shot")


@pytest.mark.parametrize("text", ["toxicity", "", "/score", "toxicity//x"])
def test_parse_rejects_non_ids(text):
    with pytest.raises(ValueError):
        MetricId.parse(text)


def test_columns_of_the_wide_tables():
    assert MetricId("toxicity").column == "toxicity"
    assert MetricId("toxicity", "std").column == "toxicity_std"
    with pytest.raises(ValueError, match="long-format"):
        _ = MetricId("mmlu", "score", "acc/x").column


def test_ids_are_hashable_and_ordered():
    ids = {MetricId("b"), MetricId("a", "refusal_rate"), MetricId("a")}
    assert sorted(ids)[0] == MetricId("a", "refusal_rate")
