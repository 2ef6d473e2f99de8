"""Report numbers against values computed independently from a results store with known values."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from scipy import stats
from test_report_fixtures import config, row, write_perplexity, write_run
from typer.testing import CliRunner

from trustray.benchmarks.base import PerspectiveScore
from trustray.metrics import MetricId
from trustray.registry import Registry
from trustray.report import BootstrapSpec, ReportError, build_tables, read_results, write_report
from trustray.scoring.perspectives import ordered

SPEC = BootstrapSpec(seed=7, n_resamples=2000)
N_ITEMS = 24
TRUST = ["fairness", "stereotype", "toxicity"]  # unregistered in the empty registry → item means
ALL = [*TRUST, "mmlu"]
CFGS = {
    "d0": config("d0", "none", size=270_000_000),
    "g0": config("g0", "gptq", bits=4, group_size=128, seed=0, size=90_000_000),
    "g1": config("g1", "gptq", bits=4, group_size=128, seed=1, size=90_000_000),
    "g2": config("g2", "gptq", bits=4, group_size=128, seed=2, size=92_000_000),
    "w0": config("w0", "wanda", sparsity=0.5, seed=0, size=270_000_000),
}
SETTINGS = {"dense": ["d0"], "gptq w4g128": ["g0", "g1", "g2"], "wanda 50%": ["w0"]}
GENS = {"fairness": 1, "stereotype": 2, "toxicity": 3, "mmlu": 1}
PPL = {"d0": 20.0, "g0": 22.0, "g1": 23.5}


def _values(cid: str, p: str, rng: np.random.Generator) -> list[list[float]]:
    """Per item, per generation: 1/0 correctness, or a toxicity probability."""
    if p == "toxicity":
        return [list(np.round(rng.random(GENS[p]), 3)) for _ in range(N_ITEMS)]
    if cid == "w0" and p == "fairness":  # far worse than dense: the paired CI must exclude zero
        return [[float(i % 2)] for i in range(N_ITEMS)]
    if cid == "d0" and p == "fairness":
        return [[1.0] for _ in range(N_ITEMS)]
    return [[float(rng.random() < 0.6) for _ in range(GENS[p])] for _ in range(N_ITEMS)]


def _build() -> tuple[dict, dict, list[dict]]:
    rng = np.random.default_rng(123)
    values, refused, rows = {}, {}, []
    for cid, cfg in CFGS.items():
        for p in ALL:
            vals = _values(cid, p, rng)
            refs = [[bool(rng.random() < 0.2) for _ in gens] for gens in vals]
            values[cid, p], refused[cid, p] = vals, refs
            for i, (gens, rs) in enumerate(zip(vals, refs)):
                for g, (v, r) in enumerate(zip(gens, rs)):
                    kw = {"score": v} if p == "toxicity" else {"correct": bool(v)}
                    text = "<script>document.title='pwned'</script>" if i == 0 else f"answer {v}"
                    rows.append(row(cfg, p, f"{p}/s/f/{i:03d}", g, refused=r, text=text, **kw))
    return values, refused, rows


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory):
    values, refused, rows = _build()
    run = write_run(tmp_path_factory.mktemp("run") / "r1", rows)
    write_perplexity(run, PPL)
    files, tables = write_report(run, benchmarks=Registry("perspective"), spec=SPEC)
    csv = pd.read_csv(files.summary_csv).set_index("setting")
    return values, refused, run, files, tables, csv


# --- independent computations -----------------------------------------------------------------

def item_outcome(p: str, gens: list[float]) -> float:
    return 1.0 - max(gens) if p == "toxicity" else sum(gens) / len(gens)


def config_score(values: dict, cid: str, p: str) -> float:
    items = [item_outcome(p, g) for g in values[cid, p]]
    return 100.0 * sum(items) / len(items)


def boot(x: list[float]) -> tuple[float, float]:
    res = stats.bootstrap((np.asarray(x),), np.mean, n_resamples=SPEC.n_resamples, method="percentile",
                          rng=np.random.default_rng(SPEC.seed))
    return res.confidence_interval.low, res.confidence_interval.high


def mcnemar(b: int, c: int) -> float:
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# --- tests ---------------------------------------------------------------------------------------

def test_settings_and_provenance(known):
    _, _, _, _, _, csv = known
    assert list(csv.index) == ["dense", "gptq w4g128", "wanda 50%"]
    assert csv.loc["gptq w4g128", "calib_seeds"] == 3 and math.isnan(csv.loc["dense", "calib_seeds"])
    assert csv["setting_id"].nunique() == 3 and csv.loc["wanda 50%", "precision"] == "bf16 50%-sparse"
    assert csv.loc["gptq w4g128", "model_size_bytes"] == pytest.approx((90 + 90 + 92) / 3 * 1e6)
    assert csv.loc["gptq w4g128", "bits"] == 4 and csv.loc["wanda 50%", "sparsity"] == 0.5
    assert csv["is_baseline"].tolist() == [True, False, False]
    assert csv.loc["gptq w4g128", "perplexity"] == pytest.approx(22.75)
    assert csv.loc["gptq w4g128", "perplexity_std"] == pytest.approx(np.std([22.0, 23.5], ddof=1))
    assert math.isnan(csv.loc["wanda 50%", "perplexity"])  # no utility table for w0


def test_scores_std_and_ci(known):
    values, refused, _, _, _, csv = known
    for setting, ids in SETTINGS.items():
        r = csv.loc[setting]
        for p in ALL:
            seed_scores = [config_score(values, c, p) for c in ids]
            assert close(r[p], float(np.mean(seed_scores))), (setting, p)
            refusal = np.mean([100 * np.mean([x for gens in refused[c, p] for x in gens]) for c in ids])
            assert close(r[f"{p}_refusal"], refusal)
            if len(ids) > 1:
                lo, hi = boot(seed_scores)
                assert close(r[f"{p}_std"], float(np.std(seed_scores, ddof=1)))
                assert r[f"{p}_ci_over"] == "seeds"
                assert close(r[f"{p}_ci_low"], lo) and close(r[f"{p}_ci_high"], hi), (setting, p)
            else:  # a cluster bootstrap over items of the score (here the item mean): close to scipy's
                lo, hi = boot([100 * item_outcome(p, g) for g in values[ids[0], p]])
                assert math.isnan(r[f"{p}_std"])
                assert r[f"{p}_ci_over"] == "items"
                assert abs(r[f"{p}_ci_low"] - lo) < 4 and abs(r[f"{p}_ci_high"] - hi) < 4, (setting, p)
            assert r[f"{p}_ci_low"] <= r[p] <= r[f"{p}_ci_high"]
        trust = [np.mean([config_score(values, c, p) for p in TRUST]) for c in ids]
        assert close(r["avg_trust"], float(np.mean(trust)))
        assert r["n_trust_perspectives"] == 3
        if len(ids) > 1:
            assert close(r["avg_trust_std"], float(np.std(trust, ddof=1)))
            lo, hi = boot(trust)
            assert close(r["avg_trust_ci_low"], lo) and close(r["avg_trust_ci_high"], hi)


def test_paired_deltas_flips_and_mcnemar(known):
    values, _, _, files, _, csv = known
    changed_seen = set()
    for setting, ids in SETTINGS.items():
        r = csv.loc[setting]
        for p in ALL:
            base = [item_outcome(p, g) for g in values["d0", p]]
            comp = np.mean([[item_outcome(p, g) for g in values[c, p]] for c in ids], axis=0)
            if setting == "dense":
                assert math.isnan(r[f"{p}_delta"]) and math.isnan(r[f"{p}_flips_to_unsafe"])
                continue
            base_score = config_score(values, "d0", p)
            assert close(r[f"{p}_delta"], r[p] - base_score)
            if len(ids) > 1:  # over seeds: each seed's score minus the baseline's
                lo, hi = boot([config_score(values, c, p) - base_score for c in ids])
                assert r[f"{p}_delta_ci_over"] == "seeds"
                assert close(r[f"{p}_delta_ci_low"], lo) and close(r[f"{p}_delta_ci_high"], hi)
            else:  # paired over items: close to a bootstrap of the item differences
                lo, hi = boot([100 * (c - b) for b, c in zip(base, comp)])
                assert r[f"{p}_delta_ci_over"] == "items"
                assert abs(r[f"{p}_delta_ci_low"] - lo) < 5 and abs(r[f"{p}_delta_ci_high"] - hi) < 5, (setting, p)
            assert r[f"{p}_delta_ci_low"] <= r[f"{p}_delta"] <= r[f"{p}_delta_ci_high"]
            assert bool(r[f"{p}_changed"]) == (r[f"{p}_delta_ci_low"] > 0 or r[f"{p}_delta_ci_high"] < 0)
            changed_seen.add(bool(r[f"{p}_changed"]))
            down = sum(b > 0.5 and not c > 0.5 for b, c in zip(base, comp))
            up = sum(c > 0.5 and not b > 0.5 for b, c in zip(base, comp))
            assert (r[f"{p}_flips_to_unsafe"], r[f"{p}_flips_to_safe"]) == (down, up)
            assert r[f"{p}_paired_items"] == N_ITEMS
            if len(ids) == 1 and p != "toxicity" and GENS[p] == 1:
                assert close(r[f"{p}_mcnemar_p"], mcnemar(down, up))
            else:  # fractions or continuous outcomes: no McNemar
                assert math.isnan(r[f"{p}_mcnemar_p"])
        if setting != "dense":
            assert close(r["avg_trust_delta"], r["avg_trust"] - csv.loc["dense", "avg_trust"])
    assert csv.loc["wanda 50%", "fairness_changed"]  # the designed-in drop is detected
    assert csv.loc["wanda 50%", "fairness_flips_to_unsafe"] == N_ITEMS // 2
    assert changed_seen == {True, False}
    paired = pd.read_csv(files.paired_csv)
    assert len(paired) == 2 * len(ALL)


def test_long_scores_hold_every_block_score(known):
    _, _, _, files, tables, _ = known
    long = pd.read_parquet(files.scores_long)
    scores = long[long["metric"] == "score"].set_index(["config_id", "perspective"])["value"]
    wide = tables.scores.set_index(["config_id", "perspective"])["score"]
    assert len(long) == 3 * len(wide)  # score, refusal and unparsed rates; no components on item means
    assert np.allclose(scores.loc[wide.index].to_numpy(), wide.to_numpy(), equal_nan=True)


def test_outputs_agree_and_markdown(known):
    _, _, run, files, _, csv = known
    pq = pd.read_parquet(files.summary_parquet).set_index("setting")
    assert list(pq.columns) == list(csv.columns)
    for col in ("fairness", "avg_trust", "toxicity_delta_ci_low", "mmlu_flips_to_safe"):
        assert np.allclose(pq[col].astype(float), csv[col].astype(float), equal_nan=True)
    assert files.out_dir == run / "report"
    md = files.summary_md.read_text()
    assert ("| Setting | Method | Bits / sparsity | Precision | Seeds | Weights (MB) | Disk (MB) | Fairness | "
            "Stereotype | Toxicity | Avg trust | MMLU | PPL |") in md
    assert "| dense | none | dense | bf16 | – |" in md and "| W4A16 | 3 |" in md
    g = csv.loc["gptq w4g128"]
    assert f"{g['fairness']:.1f} ± {g['fairness_std']:.1f}" in md
    assert "'toxicity' is not a registered perspective" in md  # the fallback is labelled
    assert set(csv["fairness_source"]) == {"item-mean"}
    # the dot-prefixed temp files beside every shard were not read
    assert len(read_results(run)) == sum(len(CFGS) * N_ITEMS * GENS[p] for p in ALL)


class _WeightedBench:
    """A perspective whose aggregate needs item meta, gold, parsed label and parse extras."""

    name = "fairness"

    def aggregate(self, rows, ctx):
        hits = [r.item.meta["w"] * r.parsed.extra["x"] * (r.parsed.label == r.item.gold) for r in rows]
        return PerspectiveScore(self.name, score=100 * sum(hits) / len(hits), refusal_rate=12.5,
                                notes=[f"profile {ctx.profile}"], n_items=len(rows),
                                components={"acc/x": 50.0, "hits": float(sum(hits))})


class _BrokenBench:
    name = "stereotype"

    def aggregate(self, rows, ctx):
        raise KeyError("group")


def test_aggregate_path_rebuilds_rows_and_falls_back(tmp_path: Path):
    d0 = CFGS["d0"]
    rows, expect = [], []
    for i in range(6):
        w, x, gold, lab = i + 1, 0.5 * (i % 3), "yes", "yes" if i % 2 else "no"
        rows.append(row(d0, "fairness", f"f/s/x/{i}", correct=lab == gold, gold=gold, label=lab,
                        meta={"w": w}, extra={"x": x}, profile="quick"))
        expect.append(w * x * (lab == gold))
        rows.append(row(d0, "stereotype", f"s/s/x/{i}", correct=i < 4))
    write_run(tmp_path, rows)
    reg = Registry("perspective")
    reg.add("fairness", _WeightedBench())
    reg.add("stereotype", _BrokenBench())
    with pytest.warns(UserWarning, match="stereotype aggregate"):
        files, tables = write_report(tmp_path, benchmarks=reg, spec=SPEC)
    s = pd.read_csv(files.summary_csv).iloc[0]
    assert s["fairness"] == pytest.approx(100 * sum(expect) / 6)
    assert s["fairness_refusal"] == 12.5 and s["fairness_source"] == "aggregate"
    assert s["stereotype"] == pytest.approx(100 * 4 / 6) and s["stereotype_source"] == "item-mean"
    assert "profile quick" in tables.notes
    assert any("KeyError" in n for n in tables.notes)
    assert math.isnan(s["fairness_delta"])  # dense only: nothing to compare
    long = pd.read_parquet(files.scores_long)
    assert list(long.columns) == ["config_id", "metric_id", "perspective", "metric", "component", "value"]
    fair = long[long["perspective"] == "fairness"].set_index("metric_id")["value"]
    assert fair["fairness/score"] == pytest.approx(s["fairness"])
    assert fair["fairness/refusal_rate"] == 12.5 and fair["fairness/unparsed_rate"] == 0.0
    assert fair["fairness/score/acc/x"] == 50.0 and fair["fairness/score/hits"] == pytest.approx(sum(expect))
    assert set(long.loc[long["perspective"] == "stereotype", "metric"]) == {"score", "refusal_rate", "unparsed_rate"}
    for r in long.itertuples():
        m = MetricId.parse(r.metric_id)
        assert (m.perspective, m.metric, m.component) == (r.perspective, r.metric, None if pd.isna(r.component)
                                                           else r.component)


def test_explicit_baseline_and_errors(known, tmp_path: Path):
    _, _, run, _, _, _ = known
    results = read_results(run)
    t = build_tables(results, Registry("p"), baseline="g1", spec=SPEC)
    assert t.baseline.config_ids == ["g1"]
    assert set(t.paired["setting"]) == {"dense", "gptq w4g128", "wanda 50%"}
    t = build_tables(results, Registry("p"), baseline="wanda 50%", spec=SPEC)
    assert bool(t.summary.set_index("setting").loc["wanda 50%", "is_baseline"])
    with pytest.raises(ReportError, match=r"unknown baseline 'gptq w4g12'.*did you mean"):
        build_tables(results, Registry("p"), baseline="gptq w4g12")
    with pytest.raises(ReportError, match="does not exist"):
        read_results(tmp_path / "missing")
    (tmp_path / "empty" / "results" / "config=a" / "perspective=b").mkdir(parents=True)
    (tmp_path / "empty" / "results" / "config=a" / "perspective=b" / ".shard-0.parquet").write_bytes(b"x")
    with pytest.raises(ReportError, match="no results"):
        read_results(tmp_path / "empty")


def _cli() -> typer.Typer:
    try:
        from trustray.cli import report as report_cli
    except ImportError as e:  # another command module of the CLI is not importable
        pytest.skip(f"trustray.cli is not importable: {e}")

    app = typer.Typer()
    app.callback()(lambda: None)
    report_cli.register(app)
    return app


@pytest.mark.parametrize(
    "args, message",
    [(["{tmp}/nope"], "does not exist"), (["{tmp}"], "no results"), (["{run}", "--baseline", "gtpq"], "unknown baseline")],
)
def test_cli_errors_are_one_line(known, tmp_path: Path, args: list[str], message: str):
    run = known[2]
    argv = ["report", *[a.format(tmp=tmp_path, run=run) for a in args], "--resamples", "200"]
    res = CliRunner().invoke(_cli(), argv)
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], res.output


def test_console_script_exit_code(tmp_path: Path):
    code = "import sys; from trustray.cli import main; sys.argv = ['trustray', *sys.argv[1:]]; main()"
    res = subprocess.run([sys.executable, "-c", code, "report", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=120, check=False)
    if "ImportError" in res.stderr:
        pytest.skip("trustray.cli is not importable yet")
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert "does not exist" in res.stderr


def test_cli_writes_report(known, tmp_path: Path):
    run = known[2]
    res = CliRunner().invoke(_cli(), ["report", str(run), "--out", str(tmp_path / "rep"), "--resamples", "200"])
    assert res.exit_code == 0, res.output
    for name in ("summary.parquet", "summary.csv", "summary.md", "report.html", "paired.csv"):
        assert (tmp_path / "rep" / name).stat().st_size > 0


def test_perspective_order_is_the_papers():
    trust, utility = ordered(["toxicity", "mmlu", "advglue", "privacy", "ood", "fairness", "zzz"])
    assert trust == ["advglue", "ood", "fairness", "privacy", "toxicity", "zzz"] and utility == ["mmlu"]


def test_unparsed_rate_and_reference_reported(tmp_path: Path):
    """Both rates per perspective, and the DecodingTrust reference in the header of both pages."""
    from trustray.scoring.scores import registered_benchmarks

    cfg = config("d0", "none")
    rows = [
        row(cfg, "mmlu", f"mmlu/x/f/{i}", correct=i < 2, label=["B", "B", None, "C"][i], gold="B",
            unparsed=i == 2, scenario="x", scorer_version="mmlu/2;dt=upstream")
        for i in range(4)
    ]
    glue = {"source": "advglue-dev", "task": "sst2"}
    rows += [
        row(cfg, "advglue", f"advglue/s/f/{i}", correct=i == 0, label=["1", None, "0", None][i], gold="1",
            unparsed=i % 2 == 1, scenario="advglue-dev/sst2", meta=glue,
            scorer_version="advglue/2;dt=upstream")
        for i in range(4)
    ]
    rows += [
        row(cfg, "machine_ethics", f"machine_ethics/zero_shot/f/{i}", correct=i == 0, label="wrong",
            gold="wrong", scenario="zero_shot", meta={"kind": "accuracy"},
            scorer_version="machine_ethics/2;dt=upstream")
        for i in range(2)
    ]
    write_run(tmp_path / "run", rows)
    files, tables = write_report(tmp_path / "run", benchmarks=registered_benchmarks(),
                                 spec=BootstrapSpec(n_resamples=100))
    s = tables.summary.iloc[0]
    assert s["mmlu_refusal"] == pytest.approx(25.0) and s["mmlu_unparsed"] == pytest.approx(25.0)
    assert s["advglue_refusal"] == pytest.approx(50.0) and s["advglue_unparsed"] == pytest.approx(50.0)
    assert s["machine_ethics_unparsed"] == 0
    assert tables.dt_reference == "upstream"
    md = files.summary_md.read_text()
    assert "DecodingTrust reference: upstream." in md and "## Unparsed answers (%)" in md
    html = files.html.read_text()
    assert "DecodingTrust reference: <strong>upstream</strong>" in html and 'id="unparsed"' in html
