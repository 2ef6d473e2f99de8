"""Shard planning: a perspective's items cut into shards of about N generations each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trustray.benchmarks.base import Benchmark, EvalContext, Item


@dataclass(frozen=True)
class Shard:
    """Items ``[start, stop)`` of one perspective's item list for one config."""

    config_id: str
    perspective: str
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"


def plan_shards(
    config_id: str, perspective: str, items: Sequence[Item], generations_per_item: Sequence[int], target: int
) -> list[Shard]:
    """Consecutive shards whose generation counts reach ``target`` (the last may be smaller).

    The plan depends only on the item list and ``target``, so a resumed run finds the same
    shard boundaries and can skip the committed ones.
    """
    if target < 1:
        raise ValueError(f"shard target must be >= 1 generation, got {target}")
    shards: list[Shard] = []
    start, acc = 0, 0
    for i, n in enumerate(generations_per_item):
        acc += n
        if acc >= target:
            shards.append(Shard(config_id, perspective, len(shards), start, i + 1))
            start, acc = i + 1, 0
    if start < len(items):
        shards.append(Shard(config_id, perspective, len(shards), start, len(items)))
    return shards


def generations_per_item(bench: Benchmark, items: Sequence[Item], ctx: EvalContext) -> list[int]:
    return [bench.request(item, ctx).sampling.n for item in items]
