"""Perspective names as the report orders and labels them (the paper's column order)."""

from __future__ import annotations

from collections.abc import Iterable

# The paper's table order. Alternative spellings map onto the same column label.
TRUST_ORDER: tuple[str, ...] = (
    "adv_robustness",
    "ood",
    "adv_demonstration",
    "machine_ethics",
    "fairness",
    "privacy",
    "stereotype",
    "toxicity",
)
UTILITY: frozenset[str] = frozenset({"mmlu"})

_LABELS: dict[str, str] = {
    "adv_robustness": "AdvGLUE",
    "advglue": "AdvGLUE",
    "adv_glue": "AdvGLUE",
    "adversarial_robustness": "AdvGLUE",
    "ood": "OOD",
    "ood_robustness": "OOD",
    "adv_demonstration": "Adv Demo",
    "adv_demo": "Adv Demo",
    "machine_ethics": "Ethics",
    "ethics": "Ethics",
    "fairness": "Fairness",
    "privacy": "Privacy",
    "stereotype": "Stereotype",
    "toxicity": "Toxicity",
    "mmlu": "MMLU",
}
_RANK: dict[str, int] = {
    "adv_robustness": 0, "advglue": 0, "adv_glue": 0, "adversarial_robustness": 0,
    "ood": 1, "ood_robustness": 1, "adv_demonstration": 2, "adv_demo": 2,
    "machine_ethics": 3, "ethics": 3, "fairness": 4, "privacy": 5, "stereotype": 6, "toxicity": 7,
}


def label(perspective: str) -> str:
    """Display label of a perspective (its own name when unknown)."""
    return _LABELS.get(perspective, perspective)


def is_utility(perspective: str) -> bool:
    return perspective in UTILITY


def ordered(perspectives: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split perspective names into (trust, utility), each in the paper's order."""
    names = sorted(set(perspectives))
    trust = sorted((p for p in names if not is_utility(p)), key=lambda p: (_RANK.get(p, 99), p))
    utility = [p for p in names if is_utility(p)]
    return trust, utility
