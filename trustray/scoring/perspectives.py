"""Perspective names as the report orders and labels them, read from the perspective registry.

Each registered perspective carries its label, its column order (the paper's table order), its
kind (trust or utility) and the other names older results use for it. A name no perspective
claims keeps its own name as label and sorts after the known trust perspectives.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

UNKNOWN_ORDER = 99


def _find(perspective: str) -> Any:
    try:
        from trustray.benchmarks.base import find_perspective

        import trustray.benchmarks  # noqa: F401  (the package registers its perspectives)
    except ImportError as e:  # a half-installed tree still reports, on bare names
        warnings.warn(f"trustray.benchmarks could not be imported ({e}); using bare names", stacklevel=3)
        return None
    return find_perspective(perspective)


def label(perspective: str) -> str:
    """Display label of a perspective (its own name when unknown)."""
    bench = _find(perspective)
    return bench.label if bench is not None else perspective


def is_utility(perspective: str) -> bool:
    bench = _find(perspective)
    return bench is not None and bench.kind == "utility"


def _rank(perspective: str) -> tuple[int, str]:
    bench = _find(perspective)
    return (bench.order if bench is not None else UNKNOWN_ORDER, perspective)


def ordered(perspectives: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split perspective names into (trust, utility), each in the paper's order."""
    names = sorted(set(perspectives))
    trust = sorted((p for p in names if not is_utility(p)), key=_rank)
    utility = sorted((p for p in names if is_utility(p)), key=_rank)
    return trust, utility


def outcome_source(perspective: str) -> str | None:
    """What a row's outcome is for this perspective ("correct" or "score"); None when unknown
    (the report then infers it from which of the two columns the rows fill)."""
    bench = _find(perspective)
    return bench.outcome if bench is not None else None
