"""From result rows to the report's tables: one summary row per compression setting.

A *setting* is a compression config without its calibration seed (method, bits, group size,
sparsity, structure, calibration data and size); its config ids are its calibration seeds.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from dataclasses import dataclass, field

import pandas as pd

from trustray.report.outcomes import is_binary, item_outcomes
from trustray.report.perspectives import ordered
from trustray.report.scores import BenchmarkLookup, config_scores
from trustray.report.stats import DEFAULT_SPEC, BootstrapSpec, paired_comparison, seed_stats
from trustray.report.store import ReportError

SETTING_COLS = [
    "model_name", "method", "bits", "group_size", "sparsity", "structure", "calib_dataset", "calib_samples",
]
CONFIG_COLS = ["config_id", *SETTING_COLS, "calib_seed", "model_size_bytes"]
DENSE = "none"


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


def _setting_label(row: pd.Series) -> str:
    method = row["method"]
    if method == DENSE:
        return "dense"
    parts = [str(method)]
    if not pd.isna(row["bits"]):
        parts.append(f"w{int(row['bits'])}" + (f"g{int(row['group_size'])}" if not pd.isna(row["group_size"]) else ""))
    if isinstance(row["structure"], str) and row["structure"]:
        parts.append(row["structure"])
    elif not pd.isna(row["sparsity"]):
        parts.append(f"{100 * float(row['sparsity']):g}%")
    return " ".join(parts)


def config_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per config id with its setting label (unique per distinct setting)."""
    cfg = results.groupby("config_id", sort=True)[CONFIG_COLS[1:]].first().reset_index()
    key = cfg[SETTING_COLS].apply(lambda r: "|".join("" if pd.isna(v) else str(v) for v in r), axis=1)
    cfg["setting"] = cfg.apply(_setting_label, axis=1)
    # distinct settings that print the same (other model, other calibration data) get qualified
    for qualify in ("model", "hash"):
        clash = cfg.assign(_k=key).groupby("setting")["_k"].transform("nunique") > 1
        if not clash.any():
            break
        if qualify == "model":
            cfg.loc[clash, "setting"] = cfg.loc[clash, "model_name"] + " " + cfg.loc[clash, "setting"]
        else:
            digest = key[clash].map(lambda k: hashlib.sha256(k.encode()).hexdigest()[:6])
            cfg.loc[clash, "setting"] = cfg.loc[clash, "setting"] + " #" + digest
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
    dense = configs[configs["method"] == DENSE]
    if dense.empty:
        return None
    settings = sorted(set(dense["setting"]))
    if len(settings) > 1:
        raise ReportError(
            f"several dense configs ({', '.join(settings)}); choose one with --baseline"
        )
    return Baseline(label=settings[0], config_ids=sorted(dense["config_id"]), setting=settings[0])


def _setting_items(items: pd.DataFrame, config_ids: list[str]) -> tuple[pd.Series, bool]:
    """Per-item outcome of a group of configs (mean over its seeds) and whether it is binary."""
    sub = items[items["config_id"].isin(config_ids)]
    outcome = sub.groupby("item_id")["outcome"].mean()
    return outcome, len(config_ids) == 1 and is_binary(sub)


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
    scores = config_scores(results, benchmarks, items)
    trust, utility = ordered(results["perspective"].unique())
    notes = sorted({n for n in scores["note"] if n})
    if base is None:
        notes.append("no dense config (method 'none') in this run and no --baseline: no paired comparison")
    ppl = perplexity if perplexity is not None else pd.DataFrame(columns=["config_id", "perplexity", "tokens"])

    rows, paired_rows = [], []
    for setting, cfg in configs.groupby("setting", sort=False):
        ids = sorted(cfg["config_id"])
        first = cfg.iloc[0]
        row: dict[str, object] = {"setting": setting, **{c: first[c] for c in SETTING_COLS}}
        row["calib_seeds"] = int(cfg["calib_seed"].dropna().nunique())
        row["n_configs"] = len(ids)
        row["config_ids"] = ",".join(ids)
        row["engines"], row["reproducible"] = _engines(results[results["config_id"].isin(ids)])
        size = cfg["model_size_bytes"].dropna()
        row["model_size_bytes"] = float(size.mean()) if len(size) else math.nan
        row["is_baseline"] = base is not None and sorted(base.config_ids) == ids
        sc = scores[scores["config_id"].isin(ids)]
        for p in [*trust, *utility]:
            ps = sc[sc["perspective"] == p].set_index("config_id")
            p_items = items[(items["perspective"] == p) & items["config_id"].isin(ids)]
            st = seed_stats(ps["score"].to_numpy(), 100.0 * p_items["outcome"].to_numpy(), spec)
            row[p] = st.mean
            row[f"{p}_std"] = st.std
            row[f"{p}_ci_low"] = st.ci_low
            row[f"{p}_ci_high"] = st.ci_high
            row[f"{p}_ci_over"] = st.ci_over
            row[f"{p}_refusal"] = float(ps["refusal_rate"].mean()) if len(ps) else math.nan
            row[f"{p}_source"] = ",".join(sorted(set(ps["source"])))
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
    summary = _add_paired(summary, items, scores, base, trust, [*trust, *utility], spec, paired_rows)
    order = {"dense": 0}
    summary = summary.assign(
        _o=summary["method"].map(lambda m: order.get("dense" if m == DENSE else m, 1)),
        _b=summary["bits"].fillna(99), _s=summary["sparsity"].fillna(0),
    ).sort_values(["_o", "method", "_b", "_s", "setting"], ascending=[True, True, False, True, True])
    summary = summary.drop(columns=["_o", "_b", "_s"]).reset_index(drop=True)
    for c in ("bits", "group_size", "calib_samples"):
        summary[c] = summary[c].astype("Int64")
    summary = summary[_column_order(summary, trust, utility)]
    return Tables(
        summary=summary, scores=scores, paired=pd.DataFrame.from_records(paired_rows), configs=configs,
        trust=trust, utility=utility, baseline=base, notes=notes,
    )


def _engines(rows: pd.DataFrame) -> tuple[str, bool | None]:
    """The engines that served a setting's rows, and whether all of them are reproducible
    (``None`` when the rows predate the ``engine_reproducible`` column)."""
    names = sorted({f"{n} {v}" for n, v in zip(rows["engine_name"], rows["engine_version"], strict=True)})
    flags = rows["engine_reproducible"] if "engine_reproducible" in rows else pd.Series(dtype=object)
    flags = flags.dropna()
    reproducible = None if flags.empty else bool(flags.astype(bool).all())
    return ", ".join(names), reproducible


def _column_order(summary: pd.DataFrame, trust: list[str], utility: list[str]) -> list[str]:
    """The paper's layout first (identity, trust scores, average, utility, refusal rates),
    then statistics and paired columns per perspective."""
    head = [
        "setting", *SETTING_COLS, "calib_seeds", "n_configs", "model_size_bytes", "is_baseline",
        *trust, "avg_trust", *utility, "perplexity", *[f"{p}_refusal" for p in [*trust, *utility]],
        "avg_trust_std", "avg_trust_ci_low", "avg_trust_ci_high", "avg_trust_delta", "n_trust_perspectives",
        "perplexity_std",
    ]
    rest = [c for p in [*trust, *utility] for c in summary.columns if c.startswith(f"{p}_") and c not in head]
    tail = [c for c in summary.columns if c not in head and c not in rest]
    return [*head, *rest, *tail]


def _add_paired(
    summary: pd.DataFrame, items: pd.DataFrame, scores: pd.DataFrame, base: Baseline | None,
    trust: list[str], perspectives: list[str], spec: BootstrapSpec, paired_rows: list[dict],
) -> pd.DataFrame:
    """Add per-perspective paired columns (vs the baseline) to the summary."""
    empty = {
        "delta": math.nan, "item_delta": math.nan, "item_delta_ci_low": math.nan,
        "item_delta_ci_high": math.nan, "changed": False, "flips_to_unsafe": 0,
        "flips_to_safe": 0, "mcnemar_p": math.nan, "paired_items": 0,
    }
    cols: dict[str, list] = {f"{p}_{k}": [] for p in perspectives for k in empty}
    cols["avg_trust_delta"] = []
    base_scores = scores[scores["config_id"].isin(base.config_ids)] if base else scores.iloc[:0]
    base_trust = base_scores[base_scores["perspective"].isin(trust)].groupby("config_id")["score"].mean().mean()
    for _, srow in summary.iterrows():
        ids = srow["config_ids"].split(",")
        compare = base is not None and not srow["is_baseline"]
        for p in perspectives:
            vals = dict(empty)
            if compare:
                p_items = items[items["perspective"] == p]
                b_out, b_bin = _setting_items(p_items, base.config_ids)
                c_out, c_bin = _setting_items(p_items, ids)
                pr = paired_comparison(b_out, c_out, b_bin and c_bin, spec)
                b_score = base_scores.loc[base_scores["perspective"] == p, "score"].mean()
                vals = {
                    "delta": float(srow[p] - b_score), "item_delta": pr.delta,
                    "item_delta_ci_low": pr.ci_low, "item_delta_ci_high": pr.ci_high,
                    "changed": pr.changed, "flips_to_unsafe": pr.flips_to_unsafe,
                    "flips_to_safe": pr.flips_to_safe, "mcnemar_p": pr.mcnemar_p, "paired_items": pr.n_items,
                }
                paired_rows.append({"setting": srow["setting"], "perspective": p, **vals})
            for k, v in vals.items():
                cols[f"{p}_{k}"].append(v)
        cols["avg_trust_delta"].append(float(srow["avg_trust"] - base_trust) if compare else math.nan)
    return pd.concat([summary, pd.DataFrame(cols, index=summary.index)], axis=1)
