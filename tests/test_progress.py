"""The sweep's progress board: items, tokens/s and time left per config and overall."""

from __future__ import annotations

from trustray.evaluate.progress import ProgressBoard, format_eta


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rates_and_time_left_per_config_and_overall():
    clock = Clock()
    board = ProgressBoard({"a": "dense", "b": "gptq-w4"}, clock=clock)
    snap = board.snapshot()
    assert snap["overall"]["eta_s"] is None and not snap["configs"][0]["planned"]

    clock.t += 10  # compression of the first config
    board.plan("a", items_total=100, items_done=20, work_total=10_000, work_done=2_000)  # resumed: 2k done before
    clock.t += 20
    board.shard("a", items=30, work=4_000)
    snap = board.snapshot()
    a = snap["configs"][0]
    assert (a["items_done"], a["items_total"], a["work_done"]) == (50, 100, 6_000)
    assert a["tok_s"] == 4_000 / 20  # resumed work is not counted as done now
    assert a["eta_s"] == 4_000 / 200
    overall = snap["overall"]
    # b is not planned yet: assumed to cost what a costs; the overall rate spans the sweep so far
    assert overall["work_total"] == 20_000 and overall["tok_s"] == 4_000 / 30
    assert overall["eta_s"] == (20_000 - 6_000) / (4_000 / 30)
    assert (overall["configs"], overall["configs_planned"]) == (2, 1)

    board.shard("a", items=50, work=4_000)
    clock.t += 100  # a finished; its rate stays that of its own run
    a = board.snapshot()["configs"][0]
    assert a["eta_s"] == 0.0 and a["tok_s"] == 8_000 / 20


def test_format_eta():
    assert format_eta(None) == "--:--"
    assert format_eta(75) == "01:15"
    assert format_eta(3725) == "1:02:05"
