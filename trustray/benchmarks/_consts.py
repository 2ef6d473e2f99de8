"""The prompts.json constants a perspective's ``request`` and ``parse`` need, carried by its items.

``items(data, ctx)`` reads them from the data directory it was given and puts them in every
item's payload, so a process that only requests or parses (an evaluator that received items
from elsewhere) needs no data directory and no module state. Items of one call share one dict,
which pickles once per shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from trustray.benchmarks.base import Item
from trustray.data import DataDir

KEY = "consts"


def load(data: DataDir, perspective: str, names: Iterable[str]) -> dict[str, Any]:
    """The named constants of ``perspective`` (or ``"shared"``) from ``data``'s prompts.json."""
    return {n: data.constant(perspective, n) for n in names}


def attach(items: Iterable[Item], consts: Mapping[str, Any]) -> list[Item]:
    """``items`` with ``consts`` added to each payload."""
    return [replace(it, payload={**it.payload, KEY: consts}) for it in items]


def of(item: Item) -> Mapping[str, Any]:
    """The constants an item carries; an item not built by its perspective's ``items()`` has none."""
    try:
        return item.payload[KEY]
    except KeyError:
        raise ValueError(
            f"item {item.item_id!r} carries no prompt constants: build items with the perspective's "
            "items(data, ctx)"
        ) from None
