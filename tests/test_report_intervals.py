"""Intervals belong to their score: a cluster bootstrap over items of the perspective's own
``aggregate()`` (one seed) or over seeds, for every perspective; each contains its score, and so
does every paired delta's; the seed-vs-item variance split adds up from its parts."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from test_report_fixtures import config, row, write_run

from trustray.benchmarks.base import EvalContext
from trustray.config import default_perspectives
from trustray.registry import Registry
from trustray.report import BootstrapSpec, build_tables, read_results, write_report
from trustray.report.intervals import BlockScorer, item_interval, resample_counts
from trustray.scoring.scores import registered_benchmarks

NAMES = list(default_perspectives())  # every registered perspective
POOL = ["yes", "No", "A", "B", "wrong", "not wrong", "positive", "negative", "I'm sorry, I cannot answer that.",
        "1", "It is great", "agree. I agree.", "I disagree.", "the email is a@b.com", ""]
CTX = EvalContext(profile="smoke")
SPEC = BootstrapSpec(seed=3, n_resamples=500, item_resamples=300)
CFGS = [config("d0", "none"), config("g0", "gptq", bits=4, seed=0), config("g1", "gptq", bits=4, seed=1)]


def _rows(name: str, data_dir, rng: np.random.Generator) -> list[dict]:
    """Random generations of every config on the perspective's smoke items (≤ 2 per item)."""
    bench = registered_benchmarks().get(name)
    out = []
    for cfg in CFGS:
        for item in bench.items(data_dir, CTX):
            for g in range(min(bench.request(item, CTX).sampling.n, 2)):
                text = item.gold if item.gold and rng.random() < 0.5 else POOL[rng.integers(len(POOL))]
                parsed = bench.parse(item, text)
                if parsed.to_score is not None:
                    parsed = dataclasses.replace(parsed, score=float(rng.random()))
                out.append(row(
                    cfg, name, item.item_id, g, correct=parsed.correct, score=parsed.score, refused=parsed.refused,
                    text=text, scenario=item.scenario, gold=item.gold, label=parsed.label,
                    meta=json.loads(json.dumps(dict(item.meta))), extra=json.loads(json.dumps(dict(parsed.extra))),
                ))
    return out


@pytest.fixture(scope="module")
def random_runs(data_dir, tmp_path_factory):
    """Per fixture seed: a run holding every registered perspective for dense + 2-seed GPTQ."""
    benchmarks = registered_benchmarks()
    names = [n for n in NAMES if n in benchmarks]
    out = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        rows = [r for n in names for r in _rows(n, data_dir, rng)]
        run = write_run(tmp_path_factory.mktemp(f"random{seed}"), rows, shard_rows=500)
        out.append((run, build_tables(read_results(run), benchmarks, spec=SPEC)))
    return names, out


def test_every_perspective_has_an_interval_that_contains_its_score(random_runs):
    names, runs = random_runs
    for run, t in runs:
        s = t.summary.set_index("setting")
        for setting in s.index:
            for p in names:
                r = s.loc[setting]
                assert r[f"{p}_source"] == "aggregate", (setting, p)
                assert not math.isnan(r[f"{p}_ci_low"]), (run, setting, p, r[f"{p}_ci_note"])
                assert r[f"{p}_ci_low"] <= r[p] <= r[f"{p}_ci_high"], (run, setting, p)
                assert r[f"{p}_ci_over"] == ("seeds" if setting != "dense" else "items")


def test_every_paired_delta_has_an_interval_that_contains_it(random_runs):
    names, runs = random_runs
    for _, t in runs:
        assert set(t.paired["perspective"]) == set(names)
        for _, r in t.paired.iterrows():
            assert r["delta_ci_low"] <= r["delta"] <= r["delta_ci_high"], (r["setting"], r["perspective"])
            assert r["paired_items"] > 0
        stereo = t.paired[t.paired["perspective"] == "stereotype"].iloc[0]
        assert pd.isna(stereo["flips_to_unsafe"]) and "no per-item outcome" in stereo["paired_note"]


def test_single_seed_interval_is_the_percentile_of_the_aggregate_over_resampled_items(random_runs):
    """Recomputed independently for fairness (DPD/EOD), where the item mean is a different number."""
    _, runs = random_runs
    run, t = runs[0]
    results = read_results(run)
    rows = results[(results["config_id"] == "d0") & (results["perspective"] == "fairness")]
    bench = registered_benchmarks().get("fairness")
    scorer = BlockScorer(rows, registered_benchmarks(), use_aggregate=True)
    estimate = float(t.scores.set_index(["config_id", "perspective"]).loc[("d0", "fairness"), "score"])
    assert scorer.score(np.ones(len(scorer.item_ids), dtype=int)) == pytest.approx(estimate)
    iv = item_interval(scorer, estimate, SPEC, "d0|fairness")
    # independent: the same item draws, rows rebuilt by hand, the perspective's aggregate on each
    from trustray.report.intervals import _rng
    from trustray.scoring.scores import scored_rows

    counts = resample_counts(len(scorer.item_ids), SPEC, _rng(SPEC, "items", "d0|fairness"))
    by_item = {i: [r for r in scored_rows(rows) if r.item.item_id == i] for i in scorer.item_ids}
    stats = []
    for c in counts:
        sample = []
        for j, item_id in enumerate(scorer.item_ids):
            for k in range(c[j]):
                sample += [dataclasses.replace(r, item=dataclasses.replace(r.item, item_id=f"{item_id}#{k}"))
                           for r in by_item[item_id]]
        stats.append(bench.aggregate(sample, CTX).score)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    assert (iv.low, iv.high) == (pytest.approx(min(lo, estimate)), pytest.approx(max(hi, estimate)))
    assert iv.widened == (not lo <= estimate <= hi)
    assert iv.variance == pytest.approx(np.var(stats, ddof=1))


def test_perfect_fairness_gets_an_interval_containing_100(data_dir, tmp_path):
    """The smoke report once printed Fairness 100.0 with CI [33.3, 66.7] (a bootstrap of another number)."""
    bench = registered_benchmarks().get("fairness")
    cfg = config("d0", "none")
    rows = []
    for item in bench.items(data_dir, CTX):
        parsed = bench.parse(item, "yes")  # one answer for everyone: DPD = EOD = 0
        rows.append(row(cfg, "fairness", item.item_id, 0, correct=parsed.correct, refused=parsed.refused,
                        text="yes", scenario=item.scenario, gold=item.gold, label=parsed.label,
                        meta=json.loads(json.dumps(dict(item.meta))), extra=json.loads(json.dumps(dict(parsed.extra)))))
    write_run(tmp_path, rows, shard_rows=500)
    s = build_tables(read_results(tmp_path), registered_benchmarks(), spec=SPEC).summary.iloc[0]
    assert s["fairness"] == pytest.approx(100.0)
    assert s["fairness_ci_low"] <= 100.0 <= s["fairness_ci_high"] == pytest.approx(100.0)


def test_seed_variance_split_adds_up_and_judges_the_effect(tmp_path):
    """Item means (unregistered perspective): seed variance = variance of the seed scores, item
    variance = mean bootstrap variance of each seed's score; a large effect exceeds the spread."""
    rng = np.random.default_rng(5)
    cfgs = [config("d0", "none"), config("g0", "gptq", bits=4, seed=0), config("g1", "gptq", bits=4, seed=1),
            config("g2", "gptq", bits=4, seed=2)]
    p_correct = {"d0": 0.9, "g0": 0.3, "g1": 0.35, "g2": 0.32}
    rows = [row(c, "mmlu", f"mmlu/s/f/{i}", correct=bool(rng.random() < p_correct[c["config_id"]]))
            for c in cfgs for i in range(40)]
    write_run(tmp_path, rows)
    files, t = write_report(tmp_path, benchmarks=Registry("p"), spec=SPEC)
    v = t.seed_variance.set_index(["setting", "perspective"]).loc[("gptq w4", "mmlu")]
    scores = t.scores.set_index("config_id")["score"]
    seed = [scores[c] for c in ("g0", "g1", "g2")]
    assert v["seeds"] == 3 and v["seed_std"] == pytest.approx(np.std(seed, ddof=1))
    # item variance of a mean of 40 Bernoulli outcomes ≈ p(1-p)/40 (in points²)
    expect = np.mean([100**2 * (s / 100) * (1 - s / 100) / 40 for s in seed])
    assert v["item_std"] ** 2 == pytest.approx(expect, rel=0.35)
    assert v["seed_share"] == pytest.approx(v["seed_std"] ** 2 / (v["seed_std"] ** 2 + v["item_std"] ** 2))
    assert v["delta"] == pytest.approx(np.mean(seed) - scores["d0"])
    assert abs(v["delta"]) > 2 * v["seed_std"] and bool(v["exceeds_seed_spread"])
    assert v["verdict"].startswith("effect exceeds the seed spread")
    assert "Calibration-seed noise vs item noise" in files.summary_md.read_text()
    assert pd.read_csv(files.seed_variance_csv).shape[0] == 1
