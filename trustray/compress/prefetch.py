"""Compress a sweep's checkpoints ahead of its trials, on CPU time the evaluation leaves idle.

One Ray task walks the trials in order and calls ``compress`` for each (a cache hit costs a
record read). It reserves no CPU and runs at the lowest OS priority, so the evaluation it
overlaps keeps the cores it asks for; a trial that reaches a checkpoint still being made waits
on the cache's per-key lock instead of compressing it a second time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from trustray.config import TrialSpec


def compress_in_order(trials: Sequence[dict[str, Any]], data_dir: str | None,
                      cache: str | None = None) -> list[dict[str, Any]]:
    """Compress each trial's checkpoint (JSON-dumped ``TrialSpec``s) in order; returns, per
    trial, its label, whether the cache already held it, and the seconds spent."""
    from trustray.compress import compress

    out = []
    for body in trials:
        trial = TrialSpec.model_validate(body)
        start = time.perf_counter()
        made = compress(trial.model.name, trial.compression, trial.calibration, data_dir=data_dir, cache=cache)
        out.append({"label": trial.label(), "cache_hit": made.cache_hit, "seconds": time.perf_counter() - start})
    return out


def _compress_in_background(trials: Sequence[dict[str, Any]], data_dir: str | None) -> list[dict[str, Any]]:
    os.nice(19)  # below the evaluation: it gets the CPU time the evaluation leaves idle
    return compress_in_order(trials, data_dir)


def start_precompression(trials: Sequence[TrialSpec], data_dir: str | None) -> Any:
    """Launch ``compress_in_order`` as a background Ray task (an ``ObjectRef`` to its summary).
    ``max_calls=1``: the worker exits afterwards, taking its lowered priority with it."""
    import ray

    task = ray.remote(num_cpus=0, max_calls=1, max_retries=0)(_compress_in_background)
    return task.remote([t.model_dump(mode="json") for t in trials if not t.compression.is_dense], data_dir)
