"""Live progress of a sweep: items, tokens of work, tokens/s and time left, per config and overall.

Trials run in Ray workers; each reports its plan and every committed shard to one named
``ProgressBoard`` actor owned by the sweep driver, which polls ``snapshot()`` for its display.
Work is counted in the shard planner's tokens (prompt tokens + ``n × max_tokens`` per item),
so a 4k-token few-shot prompt weighs what it costs. A config's rate counts only the work done
since this sweep started it (resumed shards are not work done now); the overall rate spans the
whole sweep so far, compression and deployment included, and configs not yet planned are
assumed to cost what the planned ones cost on average.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

BOARD_NAME = "trustray-progress"


@dataclass
class ConfigProgress:
    label: str
    items_total: int = 0
    items_done: int = 0
    work_total: int = 0
    work_done: int = 0
    work_now: int = 0  # done by this sweep (not resumed)
    started: float | None = None  # when this sweep planned the config
    last: float | None = None  # when its last shard committed

    def rate(self, now: float) -> float:
        """Tokens of work per second since this sweep planned the config."""
        if self.started is None or not self.work_now:
            return 0.0
        end = now if self.work_done < self.work_total else (self.last or now)
        return self.work_now / max(1e-9, end - self.started)

    def seconds_left(self, now: float) -> float | None:
        if self.started is not None and self.work_done >= self.work_total:
            return 0.0
        rate = self.rate(now)
        return (self.work_total - self.work_done) / rate if rate > 0 else None


class ProgressBoard:
    """Per-config counters; plain Python (``ray.remote`` makes it the sweep's actor)."""

    def __init__(self, labels: dict[str, str], clock: Any = time.monotonic) -> None:
        """``labels``: trial key (``TrialSpec.spec_id()``) → the label to show."""
        self.clock = clock
        self.started = clock()
        self.configs = {key: ConfigProgress(label) for key, label in labels.items()}

    def plan(self, key: str, items_total: int, items_done: int, work_total: int, work_done: int) -> None:
        """A trial planned its config: totals, and what earlier runs already committed."""
        c = self.configs.setdefault(key, ConfigProgress(key))
        c.items_total, c.items_done, c.work_total, c.work_done = items_total, items_done, work_total, work_done
        c.work_now, c.started = 0, self.clock()

    def shard(self, key: str, items: int, work: int) -> None:
        """A shard of ``items`` items and ``work`` tokens committed."""
        c = self.configs[key]
        c.items_done += items
        c.work_done += work
        c.work_now += work
        c.last = self.clock()

    def snapshot(self) -> dict[str, Any]:
        """Rows per config and an ``overall`` row: items, work, tokens/s, seconds left (None: unknown)."""
        now = self.clock()
        rows = []
        for c in self.configs.values():
            rows.append({"label": c.label, "planned": c.started is not None, "items_done": c.items_done,
                         "items_total": c.items_total, "work_done": c.work_done, "work_total": c.work_total,
                         "tok_s": c.rate(now), "eta_s": c.seconds_left(now)})
        planned = [c for c in self.configs.values() if c.started is not None]
        mean_work = sum(c.work_total for c in planned) / len(planned) if planned else 0
        unplanned = len(self.configs) - len(planned)
        work_total = sum(c.work_total for c in planned) + unplanned * mean_work
        work_done = sum(c.work_done for c in planned)
        work_now = sum(c.work_now for c in planned)
        rate = work_now / max(1e-9, now - self.started) if work_now else 0.0
        eta = (work_total - work_done) / rate if rate > 0 and planned else None
        overall = {"label": "overall", "planned": bool(planned), "items_done": sum(c.items_done for c in planned),
                   "items_total": sum(c.items_total for c in planned), "work_done": work_done,
                   "work_total": int(work_total), "tok_s": rate, "eta_s": eta, "configs": len(self.configs),
                   "configs_planned": len(planned)}
        return {"configs": rows, "overall": overall}


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
