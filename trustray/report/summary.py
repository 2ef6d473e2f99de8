"""From result rows to the report's tables: one summary row per compression setting.

A *setting* is a config without its calibration seed (``setting_id`` in the rows, a hash of
every spec field but the seed; ``trustray.identity``); its configs are its calibration seeds.
Settings that print the same label are told apart by the spec fields in which they differ.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from trustray.compress.spec import family_of
from trustray.columns import column_of, spec_columns
from trustray.identity import SEED_FIELD, SPEC_NAMES, flat_identity, identity_from_row, setting_identity
from trustray.report.intervals import (
    BlockScorer, Interval, item_interval, paired_item_interval, seed_interval,
)
from trustray.scoring.outcomes import is_binary, item_outcomes, safe
from trustray.scoring.perspectives import ordered
from trustray.metrics import MetricId
from trustray.scoring.scores import AGGREGATE, BenchmarkLookup, block_scores, long_scores, scores_frame
from trustray.report.stats import DEFAULT_SPEC, BootstrapSpec, mcnemar_exact, seed_stats
from trustray.report.store import ReportError

SEED_COL = column_of(*SEED_FIELD)
# Shown per setting; identical across a setting's configs by construction (derived from its specs):
# every compression and calibration spec field but the seed.
SETTING_COLS = [
    "model_name", *[c.name for c in spec_columns() if c.name != SEED_COL], "precision", "served_dtype",
]
SPEC_COLS = [f"{name}_spec" for name in SPEC_NAMES]
CONFIG_COLS = ["config_id", "setting_id", *SETTING_COLS, SEED_COL, "model_size_bytes", "weight_bytes", *SPEC_COLS]
DENSE = "none"  # the dense baseline's family (and method)
EXCEEDS_FACTOR = 2.0  # a compression effect "exceeds the seed spread" when |Δ| > 2 × seed std


@dataclass
class Baseline:
    """The configs the others are compared with."""

    label: str
    config_ids: list[str]
    setting: str


@dataclass
class Tables:
    """Everything a report is rendered from."""

    summary: pd.DataFrame  # one row per setting (the paper's table, plus statistics)
    scores: pd.DataFrame  # one row per (config_id, perspective)
    paired: pd.DataFrame  # one row per (setting, perspective) compared with the baseline
    configs: pd.DataFrame  # one row per config_id, with its setting
    trust: list[str]
    utility: list[str]
    baseline: Baseline | None
    notes: list[str] = field(default_factory=list)
    dt_reference: str = ""  # the DecodingTrust reference(s) the rows were scored against, comma-joined
    # one row per (setting with >= 2 seeds, perspective): calibration-seed vs item-sampling variance
    seed_variance: pd.DataFrame = field(default_factory=pd.DataFrame)
    # one row per (config_id, metric id): every block metric and score component, long format
    scores_long: pd.DataFrame = field(default_factory=pd.DataFrame)


def _setting_label(row: pd.Series) -> str:
    method = row["method"]
    if family_of(method) == DENSE:
        return "dense"
    parts = [str(method)]
    if not pd.isna(row["bits"]):
        parts.append(f"w{int(row['bits'])}" + (f"g{int(row['group_size'])}" if not pd.isna(row["group_size"]) else ""))
    if row.get("act_order") is True:
        parts.append("act-order")
    if isinstance(row["structure"], str) and row["structure"]:
        parts.append(row["structure"])
    elif not pd.isna(row["sparsity"]):
        parts.append(f"{100 * float(row['sparsity']):g}%")
    return " ".join(parts)


def _qualifier(diff: dict[str, object]) -> str:
    def short(k: str) -> str:
        return k.split(".", 1)[1] if "." in k else f"{k} spec"

    return ", ".join(f"{short(k)}={'none' if v is None else v}" for k, v in sorted(diff.items()))


def config_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per config id with its setting id and a setting label unique per setting id."""
    cfg = results.groupby("config_id", sort=True)[CONFIG_COLS[1:]].first().reset_index()
    cfg["setting"] = cfg.apply(_setting_label, axis=1)
    # settings that print the same label but differ (act order, calibration length, profile, model ...)
    # are qualified by the spec fields in which they differ
    flats = {
        sid: flat_identity(setting_identity(identity_from_row(r)))
        for sid, r in cfg.drop_duplicates("setting_id").set_index("setting_id").iterrows()
    }
    labels = cfg.drop_duplicates("setting_id").set_index("setting_id")["setting"]
    for label, sids in labels.groupby(labels).groups.items():
        if len(sids) < 2:
            continue
        keys = sorted(set().union(*(flats[s] for s in sids)))
        differ = [k for k in keys if len({repr(flats[s].get(k)) for s in sids}) > 1 and k != "model.fingerprint"]
        differ = differ or [k for k in keys if len({repr(flats[s].get(k)) for s in sids}) > 1]
        for sid in sids:
            q = _qualifier({k: flats[sid].get(k) for k in differ}) or sid
            cfg.loc[cfg["setting_id"] == sid, "setting"] = f"{label} ({q})"
    return cfg


def resolve_baseline(configs: pd.DataFrame, name: str | None) -> Baseline | None:
    """The explicit ``--baseline`` (a config id or a setting label) or the dense setting."""
    if name is not None:
        if name in set(configs["config_id"]):
            setting = configs.loc[configs["config_id"] == name, "setting"].iloc[0]
            return Baseline(label=f"{setting} ({name})", config_ids=[name], setting=setting)
        if name in set(configs["setting"]):
            ids = sorted(configs.loc[configs["setting"] == name, "config_id"])
            return Baseline(label=name, config_ids=ids, setting=name)
        known = sorted(set(configs["config_id"]) | set(configs["setting"]))
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ReportError(f"unknown baseline {name!r}{hint} (config ids and settings: {', '.join(known)})")
    dense = configs[configs["method"].map(family_of) == DENSE]
    if dense.empty:
        return None
    settings = sorted(set(dense["setting"]))
    if len(settings) > 1:
        raise ReportError(
            f"several dense configs ({', '.join(settings)}); choose one with --baseline"
        )
    return Baseline(label=settings[0], config_ids=sorted(dense["config_id"]), setting=settings[0])


class _Blocks:
    """Per (config, perspective): rows, score and lazily built scorers and item intervals."""

    def __init__(self, results: pd.DataFrame, scores: pd.DataFrame, benchmarks: BenchmarkLookup,
                 spec: BootstrapSpec) -> None:
        self.rows = dict(iter(results.groupby(["config_id", "perspective"], sort=False)))
        self.scores = scores.set_index(["config_id", "perspective"])
        self.benchmarks, self.spec = benchmarks, spec
        self._scorers: dict[tuple[str, str], BlockScorer] = {}
        self._intervals: dict[tuple[str, str], Interval] = {}

    def score(self, cid: str, p: str) -> float:
        key = (cid, p)
        return float(self.scores.loc[key, "score"]) if key in self.scores.index else math.nan

    def scorer(self, cid: str, p: str) -> BlockScorer | None:
        key = (cid, p)
        if key not in self.rows:
            return None
        if key not in self._scorers:
            use = self.scores.loc[key, "source"] == AGGREGATE
            self._scorers[key] = BlockScorer(self.rows[key], self.benchmarks, use_aggregate=bool(use))
        return self._scorers[key]

    def item_interval(self, cid: str, p: str) -> Interval:
        key = (cid, p)
        if key not in self._intervals:
            sc = self.scorer(cid, p)
            self._intervals[key] = (
                item_interval(sc, self.score(cid, p), self.spec, f"{cid}|{p}") if sc is not None
                else Interval(math.nan, math.nan, math.nan, "", note="not evaluated")
            )
        return self._intervals[key]


def _setting_items(items: pd.DataFrame, config_ids: list[str]) -> tuple[pd.Series, bool]:
    """Per-item outcome of a group of configs (mean over its seeds) and whether it is binary."""
    sub = items[items["config_id"].isin(config_ids)]
    outcome = sub.groupby("item_id")["outcome"].mean()
    return outcome, len(config_ids) == 1 and is_binary(sub)


# The summary's per-perspective statistics (column ``<perspective>_<stat>``), in column order.
CI_STATS = ("ci_low", "ci_high", "ci_over", "ci_widened", "ci_note")
SETTING_STATS = ("std", *CI_STATS, "refusal", "unparsed", "source")
PAIRED_STATS = ("delta", "delta_ci_low", "delta_ci_high", "delta_ci_over", "changed", "flips_to_unsafe",
                "flips_to_safe", "mcnemar_p", "paired_items", "paired_note")


def _ci_columns(p: str, iv: Interval) -> dict[str, object]:
    values = (iv.low, iv.high, iv.over, iv.widened, iv.note)
    return {MetricId(p, stat).column: v for stat, v in zip(CI_STATS, values, strict=True)}


def build_tables(
    results: pd.DataFrame,
    benchmarks: BenchmarkLookup,
    perplexity: pd.DataFrame | None = None,
    baseline: str | None = None,
    spec: BootstrapSpec = DEFAULT_SPEC,
) -> Tables:
    """Compute every table of the report from result rows."""
    configs = config_table(results)
    base = resolve_baseline(configs, baseline)
    items = item_outcomes(results)
    scored = block_scores(results, benchmarks, items)
    scores = scores_frame(scored)
    trust, utility = ordered(results["perspective"].unique())
    notes = sorted({n for n in scores["note"] if n})
    if base is None:
        notes.append("no dense config (method 'none') in this run and no --baseline: no paired comparison")
    if (configs["method"].map(family_of) == "pruning").any():
        notes.append(
            "pruned checkpoints are stored and served dense (compressed-tensors has no sparse storage format "
            "any more), so their weights and size on disk show no saving over the dense model"
        )
    ppl = perplexity if perplexity is not None else pd.DataFrame(columns=["config_id", "perplexity", "tokens"])
    blocks = _Blocks(results, scores, benchmarks, spec)

    rows, paired_rows = [], []
    for _, cfg in configs.groupby("setting_id", sort=False):
        ids = sorted(cfg["config_id"])
        first = cfg.iloc[0]
        setting = str(first["setting"])
        row: dict[str, object] = {"setting": setting, "setting_id": first["setting_id"],
                                  **{c: first[c] for c in SETTING_COLS}}
        calibrated = cfg["calibration_spec"].notna().any()
        row["calib_seeds"] = int(cfg[SEED_COL].dropna().nunique()) if calibrated else pd.NA
        row["n_configs"] = len(ids)
        row["config_ids"] = ",".join(ids)
        row["engines"], row["reproducible"] = _engines(results[results["config_id"].isin(ids)])
        for col in ("model_size_bytes", "weight_bytes"):
            size = cfg[col].dropna()
            row[col] = float(size.mean()) if len(size) else math.nan
        row["is_baseline"] = base is not None and sorted(base.config_ids) == ids
        sc = scores[scores["config_id"].isin(ids)]
        for p in [*trust, *utility]:
            ps = sc[sc["perspective"] == p].set_index("config_id")
            seed_scores = ps["score"].to_numpy(dtype=float)
            if len(ps) >= 2:
                iv = seed_interval(seed_scores, spec)
            elif len(ps) == 1:
                iv = blocks.item_interval(ps.index[0], p)
            else:
                iv = Interval(math.nan, math.nan, math.nan, "", note="not evaluated")
            st = seed_stats(seed_scores, None, spec)
            row[p] = st.mean
            row[MetricId(p, "std").column] = st.std
            row.update(_ci_columns(p, iv))
            row[MetricId(p, "refusal").column] = float(ps["refusal_rate"].mean()) if len(ps) else math.nan
            row[MetricId(p, "unparsed").column] = float(ps["unparsed_rate"].mean()) if len(ps) else math.nan
            row[MetricId(p, "source").column] = ",".join(sorted(set(ps["source"])))
        # average trust score per config (seed), then statistics over seeds
        per_cfg = sc[sc["perspective"].isin(trust)].groupby("config_id")["score"].mean()
        st = seed_stats(per_cfg.to_numpy(), None, spec)
        row["avg_trust"], row["avg_trust_std"] = st.mean, st.std
        row["avg_trust_ci_low"], row["avg_trust_ci_high"] = st.ci_low, st.ci_high
        row["n_trust_perspectives"] = int(sc.loc[sc["perspective"].isin(trust), "perspective"].nunique())
        pp = ppl[ppl["config_id"].isin(ids)]["perplexity"].astype(float)
        row["perplexity"] = float(pp.mean()) if len(pp) else math.nan
        row["perplexity_std"] = float(pp.std(ddof=1)) if len(pp) >= 2 else math.nan
        rows.append(row)

    unrepro = [f"{r['setting']} ({r['engines']})" for r in rows if r["reproducible"] is False]
    if unrepro:
        notes.append("not reproducible: " + "; ".join(unrepro) + " were served by an engine whose outputs "
                     "change from run to run (vLLM batching), so their scores can too; the HF backend is "
                     "the reference")
    summary = pd.DataFrame.from_records(rows)
    summary = _add_paired(summary, items, blocks, base, trust, [*trust, *utility], spec, paired_rows)
    order = {"dense": 0}
    summary = summary.assign(
        _o=summary["method"].map(lambda m: order.get("dense" if family_of(m) == DENSE else m, 1)),
        _b=summary["bits"].fillna(99), _s=summary["sparsity"].fillna(0),
    ).sort_values(["_o", "method", "_b", "_s", "setting"], ascending=[True, True, False, True, True])
    summary = summary.drop(columns=["_o", "_b", "_s"]).reset_index(drop=True)
    for c in spec_columns():  # nullable integer and boolean columns stay integer and boolean
        if c.name in summary and c.arrow_type in (pa.int32(), pa.bool_()):
            summary[c.name] = summary[c.name].astype("boolean" if c.arrow_type == pa.bool_() else "Int64")
    summary["calib_seeds"] = summary["calib_seeds"].astype("Int64")
    summary = summary[_column_order(summary, trust, utility)]
    variance = seed_variance_table(summary, configs, blocks, [*trust, *utility])
    return Tables(
        summary=summary, scores=scores, paired=pd.DataFrame.from_records(paired_rows), configs=configs,
        trust=trust, utility=utility, baseline=base, notes=notes, seed_variance=variance, scores_long=long_scores(scored),
        dt_reference=",".join(sorted({r for refs in scores["dt_reference"] for r in refs.split(",") if r})),
    )


def seed_variance_table(
    summary: pd.DataFrame, configs: pd.DataFrame, blocks: _Blocks, perspectives: list[str]
) -> pd.DataFrame:
    """For every setting with two or more calibration seeds and every perspective: the variance
    of the score split into a calibration-seed part (the variance of the per-seed scores; the
    items are the same for every seed) and an item-sampling part (the mean over seeds of the
    item-bootstrap variance of that seed's score), and whether the effect against the baseline
    exceeds the seed spread (|Δ| > 2 × seed std)."""
    cols = ["setting", "perspective", "seeds", "score", "seed_std", "item_std", "seed_share", "delta",
            "delta_over_seed_std", "exceeds_seed_spread", "verdict"]
    out = []
    for _, r in summary.iterrows():
        ids = str(r["config_ids"]).split(",")
        if len(ids) < 2:
            continue
        for p in perspectives:
            per_seed = [blocks.score(c, p) for c in ids]
            valid = [c for c, v in zip(ids, per_seed) if not math.isnan(v)]
            if len(valid) < 2:
                continue
            seed_var = float(np.var([blocks.score(c, p) for c in valid], ddof=1))
            item_vars = [blocks.item_interval(c, p).variance for c in valid]
            item_var = float(np.nanmean(item_vars)) if not all(math.isnan(v) for v in item_vars) else math.nan
            total = seed_var + item_var
            delta = r.get(MetricId(p, "delta").column, math.nan)
            delta = float(delta) if delta is not None and not pd.isna(delta) else math.nan
            seed_std = math.sqrt(seed_var)
            ratio = abs(delta) / seed_std if seed_std > 0 and not math.isnan(delta) else (
                math.inf if not math.isnan(delta) and delta != 0 else math.nan)
            exceeds = bool(not math.isnan(delta) and abs(delta) > EXCEEDS_FACTOR * seed_std)
            if bool(r["is_baseline"]):
                verdict = "the baseline"
            elif math.isnan(delta):
                verdict = "no baseline to compare with"
            elif exceeds:
                verdict = f"effect exceeds the seed spread (|Δ| > {EXCEEDS_FACTOR:g} × seed std)"
            else:
                verdict = "within calibration-seed noise"
            out.append({
                "setting": r["setting"], "perspective": p, "seeds": len(valid), "score": float(r[p]),
                "seed_std": seed_std, "item_std": math.sqrt(item_var) if not math.isnan(item_var) else math.nan,
                "seed_share": seed_var / total if total > 0 else math.nan, "delta": delta,
                "delta_over_seed_std": ratio, "exceeds_seed_spread": exceeds, "verdict": verdict,
            })
    return pd.DataFrame.from_records(out, columns=cols)


def _engines(rows: pd.DataFrame) -> tuple[str, bool | None]:
    """The engines that served a setting's rows, and whether all of them are reproducible
    (``None`` when the rows predate the ``engine_reproducible`` column)."""
    names = sorted({f"{n} {v}" for n, v in zip(rows["engine_name"], rows["engine_version"], strict=True)})
    flags = rows["engine_reproducible"] if "engine_reproducible" in rows else pd.Series(dtype=object)
    flags = flags.dropna()
    reproducible = None if flags.empty else bool(flags.astype(bool).all())
    return ", ".join(names), reproducible


def _column_order(summary: pd.DataFrame, trust: list[str], utility: list[str]) -> list[str]:
    """The paper's layout first (identity, trust scores, average, utility, refusal and unparsed rates),
    then statistics and paired columns per perspective."""
    head = [
        "setting", "setting_id", *SETTING_COLS, "calib_seeds", "n_configs", "model_size_bytes", "weight_bytes",
        "is_baseline", *trust, "avg_trust", *utility, "perplexity",
        *[MetricId(p, stat).column for stat in ("refusal", "unparsed") for p in [*trust, *utility]],
        "avg_trust_std", "avg_trust_ci_low", "avg_trust_ci_high", "avg_trust_delta", "n_trust_perspectives",
        "perplexity_std",
    ]
    stats = [MetricId(p, stat).column for p in [*trust, *utility] for stat in (*SETTING_STATS, *PAIRED_STATS)]
    rest = [c for c in stats if c in summary.columns and c not in head]
    tail = [c for c in summary.columns if c not in head and c not in rest]
    return [*head, *rest, *tail]


def _flips(items: pd.DataFrame, p: str, base_ids: list[str], ids: list[str]) -> tuple[object, object, float, str]:
    """Flip counts both ways and McNemar p from per-item outcomes, or why there are none."""
    p_items = items[items["perspective"] == p]
    b_out, b_bin = _setting_items(p_items, base_ids)
    c_out, c_bin = _setting_items(p_items, ids)
    joined = pd.concat({"b": b_out, "c": c_out}, axis=1, join="inner").dropna()
    if joined.empty:
        return pd.NA, pd.NA, math.nan, (
            f"{p} has no per-item outcome (its score is computed over groups of items): no flip counts"
        )
    sb, sc = safe(joined["b"]), safe(joined["c"])
    down, up = int(np.sum(sb & ~sc)), int(np.sum(~sb & sc))
    return down, up, mcnemar_exact(down, up) if b_bin and c_bin else math.nan, ""


def _paired_interval(blocks: _Blocks, p: str, base_ids: list[str], ids: list[str],
                     spec: BootstrapSpec) -> tuple[Interval, int]:
    """The delta's interval by the rule of the scores: over items (paired: the same resampled
    items score both) when both sides have one config, else over calibration seeds."""
    base_scores = [blocks.score(c, p) for c in base_ids]
    comp_scores = [blocks.score(c, p) for c in ids]
    shared = set.intersection(*[
        set(blocks.scorer(c, p).item_ids) if blocks.scorer(c, p) else set() for c in [*base_ids, *ids]
    ])
    if len(base_ids) == 1 and len(ids) == 1:
        b, c = blocks.scorer(base_ids[0], p), blocks.scorer(ids[0], p)
        if b is None or c is None:
            side = "the baseline" if b is None else "this setting"
            return Interval(math.nan, math.nan, math.nan, "", note=f"{p} was not evaluated for {side}"), 0
        return paired_item_interval(b, c, spec, f"{base_ids[0]}|{ids[0]}|{p}")
    b_mean = float(np.nanmean(base_scores)) if not all(math.isnan(x) for x in base_scores) else math.nan
    if len(ids) >= 2:
        values = [x - b_mean for x in comp_scores]
    else:
        values = [comp_scores[0] - x for x in base_scores]
    iv = seed_interval(values, spec)
    return iv, len(shared)


def _add_paired(
    summary: pd.DataFrame, items: pd.DataFrame, blocks: _Blocks, base: Baseline | None,
    trust: list[str], perspectives: list[str], spec: BootstrapSpec, paired_rows: list[dict],
) -> pd.DataFrame:
    """Add per-perspective paired columns (vs the baseline) to the summary."""
    empty = dict(zip(PAIRED_STATS, (math.nan, math.nan, math.nan, "", False, pd.NA, pd.NA, math.nan, 0, ""),
                     strict=True))
    cols: dict[str, list] = {MetricId(p, k).column: [] for p in perspectives for k in empty}
    cols["avg_trust_delta"] = []
    base_trust = math.nan
    if base is not None:
        per_cfg = [np.nanmean([blocks.score(c, p) for p in trust]) for c in base.config_ids] if trust else []
        base_trust = float(np.mean(per_cfg)) if per_cfg else math.nan
    for _, srow in summary.iterrows():
        ids = srow["config_ids"].split(",")
        compare = base is not None and not srow["is_baseline"]
        for p in perspectives:
            vals = dict(empty)
            if compare:
                iv, n_shared = _paired_interval(blocks, p, base.config_ids, ids, spec)
                down, up, mp, flip_note = _flips(items, p, base.config_ids, ids)
                b_score = float(np.nanmean([blocks.score(c, p) for c in base.config_ids]))
                vals = {
                    "delta": float(srow[p] - b_score), "delta_ci_low": iv.low, "delta_ci_high": iv.high,
                    "delta_ci_over": iv.over, "changed": bool(iv.defined and (iv.low > 0 or iv.high < 0)),
                    "flips_to_unsafe": down, "flips_to_safe": up, "mcnemar_p": mp, "paired_items": n_shared,
                    "paired_note": "; ".join(n for n in (iv.note, flip_note) if n),
                }
                paired_rows.append({"setting": srow["setting"], "perspective": p, **vals})
            for k, v in vals.items():
                cols[MetricId(p, k).column].append(v)
        cols["avg_trust_delta"].append(float(srow["avg_trust"] - base_trust) if compare else math.nan)
    return pd.concat([summary, pd.DataFrame(cols, index=summary.index)], axis=1)
