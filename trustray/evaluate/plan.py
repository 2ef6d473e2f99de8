"""Shard planning: a perspective's items cut into shards of about equal work.

Plan versions (recorded per config and perspective in ``_plan.json`` next to the shards):

1. shards of about ``shard_generations`` generations (runs made before plan files existed);
2. shards of about ``shard_tokens`` tokens of work: each item's prompt tokens (counted with
   the model's tokenizer) plus ``n × max_tokens``. A few-shot fairness prompt of 4k tokens and
   a 100-token toxicity prompt no longer weigh the same.

A committed shard is only ever matched against the plan it was cut by: a perspective with a
plan file resumes with the recorded boundaries, one with shards but no plan file was cut by
version 1 and is replanned that way, and a new one gets the current version.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from trustray.benchmarks.base import Benchmark, EvalContext, Item
from trustray.rundir import RunDir

PLAN_VERSION = 2


@dataclass(frozen=True)
class Shard:
    """Items ``[start, stop)`` of one perspective's item list for one config."""

    config_id: str
    perspective: str
    index: int
    start: int
    stop: int
    work: int = field(default=0, compare=False)  # tokens of work (prompt + n × max_tokens), for progress

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"


def plan_shards(
    config_id: str, perspective: str, items: Sequence[Item], generations_per_item: Sequence[int], target: int
) -> list[Shard]:
    """Consecutive shards whose summed per-item weights (generations, or tokens of work) reach
    ``target`` (the last may be smaller).

    The plan depends only on the item list, the weights and ``target``, so a resumed run finds
    the same shard boundaries and can skip the committed ones.
    """
    if target < 1:
        raise ValueError(f"shard target must be >= 1, got {target}")
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


def work_per_item(
    bench: Benchmark, items: Sequence[Item], ctx: EvalContext, prompt_tokens: Callable[[object], int]
) -> list[int]:
    """Each item's tokens of work: its prompt's tokens plus ``n × max_tokens``."""
    out = []
    for item in items:
        req = bench.request(item, ctx)
        out.append(prompt_tokens(req) + req.sampling.n * req.sampling.max_tokens)
    return out


def items_digest(items: Sequence[Item]) -> str:
    return hashlib.sha256("\n".join(i.item_id for i in items).encode()).hexdigest()[:16]


class PlanMismatch(ValueError):
    """A recorded plan was cut over another item list than the one planned now."""


def plan_path(run_dir: Path | RunDir, config_id: str, perspective: str) -> Path:
    return RunDir(run_dir).plan(config_id, perspective)


def resolve_plan(
    run_dir: Path | RunDir | None,
    config_id: str,
    perspective: str,
    items: Sequence[Item],
    work: Callable[[], Sequence[int]],
    generations: Callable[[], Sequence[int]],
    shard_tokens: int,
    shard_generations: int,
) -> tuple[list[Shard], int]:
    """The shards of one perspective and the plan version that cut them: the recorded plan when
    there is one, version 1 for shards committed before plan files, else a new current plan
    (recorded when ``run_dir`` is given)."""
    path = plan_path(run_dir, config_id, perspective) if run_dir is not None else None
    digest = items_digest(items)
    if path is not None and path.exists():
        body = json.loads(path.read_text())
        if body["items"] != len(items) or body["items_digest"] != digest:
            raise PlanMismatch(
                f"config {config_id} perspective {perspective}: its shards were planned over {body['items']} "
                f"items (digest {body['items_digest']}), now {len(items)} ({digest}); the item selection "
                "changed since. Start a new run (--name) to evaluate the new items"
            )
        shards = [Shard(config_id, perspective, i, a, b, w) for i, (a, b, w) in enumerate(body["shards"])]
        return shards, int(body["version"])
    legacy = path is not None and any(path.parent.glob("shard-*.parquet"))
    per_item = list(work())
    if legacy:
        version, shards = 1, plan_shards(config_id, perspective, items, generations(), shard_generations)
    else:
        version, shards = PLAN_VERSION, plan_shards(config_id, perspective, items, per_item, shard_tokens)
    shards = [replace(s, work=sum(per_item[s.start : s.stop])) for s in shards]
    if path is not None:
        body = {"version": version, "items": len(items), "items_digest": digest,
                "target": shard_generations if version == 1 else shard_tokens,
                "shards": [[s.start, s.stop, s.work] for s in shards]}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(path)
    return shards, version
