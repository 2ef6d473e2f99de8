"""The perspective registry is the one source of names: order, labels, kinds, outcome meaning and
profile plans; items carry the constants their parse needs (no module state, no data fallback)."""

from __future__ import annotations

import dataclasses

import pytest

from trustray.benchmarks import BENCHMARKS, EvalContext
from trustray.benchmarks.base import PROFILES, find_perspective, perspectives, register
from trustray.config import ALL_PERSPECTIVES, EvalSpec, default_perspectives
from trustray.registry import Registry, UnknownNameError
from trustray.scoring.perspectives import is_utility, label, ordered, outcome_source


def test_every_registered_perspective_describes_itself():
    for name in BENCHMARKS:
        b = BENCHMARKS.get(name)
        assert b.name == name and b.label and b.kind in ("trust", "utility") and b.outcome in ("correct", "score")
        assert set(PROFILES) <= set(b.plans), name
    orders = [b.order for b in perspectives("trust")]
    assert len(set(orders)) == len(orders)  # one column per trust perspective


def test_config_defaults_and_report_order_come_from_the_registry():
    names = [b.name for b in perspectives()]
    assert ALL_PERSPECTIVES == default_perspectives() == EvalSpec().perspectives == tuple(names)
    assert names[:8] == ["advglue", "ood", "adv_demonstration", "machine_ethics", "fairness", "privacy",
                         "stereotype", "toxicity"] and names[8:] == ["mmlu"]
    assert ordered(reversed(names)) == (names[:8], ["mmlu"])
    assert is_utility("mmlu") and not is_utility("toxicity") and not is_utility("unknown")
    assert outcome_source("toxicity") == "score" and outcome_source("mmlu") == "correct"
    assert outcome_source("unknown") is None


def test_aliases_resolve_to_their_perspective():
    assert find_perspective("adv_robustness") is BENCHMARKS.get("advglue")
    assert label("adv_robustness") == label("advglue") == "AdvGLUE" and label("ethics") == "Ethics"
    assert label("never-registered") == "never-registered" and find_perspective("never-registered") is None


@dataclasses.dataclass
class _Fake:
    name: str = "fake"
    version: str = "1"
    label: str = "Fake"
    order: int = 50
    kind: str = "trust"
    outcome: str = "correct"
    aliases: tuple[str, ...] = ()
    plans: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(PROFILES, 1))


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "both"}, "kind 'both'"),
    ({"outcome": "vibes"}, "outcome 'vibes'"),
    ({"plans": {"smoke": 1}}, "no plan for profile(s) quick, paper"),
])
def test_register_rejects_an_incomplete_description(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        register(_Fake(**change))
    assert "fake" not in BENCHMARKS


def test_registry_remove():
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    assert reg.remove("a") == 1 and "a" not in reg
    with pytest.raises(UnknownNameError):
        reg.remove("a")


@pytest.mark.parametrize("name", ["fairness", "privacy", "stereotype", "toxicity"])
def test_items_carry_their_constants(name, data_dir, monkeypatch):
    """Parse needs no data directory: the constants come with the items, and items() changes no state."""
    bench = BENCHMARKS.get(name)
    before = dict(vars(bench))
    items = bench.items(data_dir, EvalContext(profile="smoke"))
    assert vars(bench) == before
    monkeypatch.setenv("TRUSTRAY_DATA", "/nonexistent")
    assert all(i.payload["consts"] is items[0].payload["consts"] for i in items)  # one dict, pickled once
    assert bench.parse(items[0], "I'm sorry, I cannot answer that.") is not None
    bare = dataclasses.replace(items[0], payload={k: v for k, v in items[0].payload.items() if k != "consts"})
    with pytest.raises(ValueError, match="carries no prompt constants"):
        bench.parse(bare, "yes")
