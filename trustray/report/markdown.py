"""``summary.md``: the paper's table layout, refusal rates and the paired comparison."""

from __future__ import annotations

import math

import pandas as pd

from trustray.compress.spec import family_of
from trustray.metrics import MetricId
from trustray.scoring.perspectives import label
from trustray.report.summary import Tables


def num(value: object, digits: int = 1) -> str:
    """A number for display; empty for null/NaN."""
    if value is None or value is pd.NA:
        return ""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return "" if math.isnan(v) else f"{v:.{digits}f}"


def pm(mean: object, std: object) -> str:
    """``mean ± std``, or the mean alone where std is undefined (one seed)."""
    m, s = num(mean), num(std)
    return f"{m} ± {s}" if m and s else m


def compression(r: pd.Series) -> str:
    """The bits / sparsity cell of the paper's table."""
    if family_of(r["method"]) == "none":
        return "dense"
    parts = []
    if not pd.isna(r["bits"]):
        parts.append(f"{int(r['bits'])}-bit")
    if isinstance(r["structure"], str) and r["structure"]:
        parts.append(r["structure"])
    elif not pd.isna(r["sparsity"]):
        parts.append(f"{100 * float(r['sparsity']):g}%")
    return " ".join(parts)


def text(value: object) -> str:
    """A text cell; empty for null/NaN."""
    return "" if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else str(value)


def seeds(value: object) -> str:
    """The Seeds cell: the number of calibration seeds, or – for a method without calibration."""
    return "–" if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else str(int(value))


def mb(value: object) -> str:
    v = num(value, 0)
    return num(float(value) / 1e6) if v else ""  # type: ignore[arg-type]


def _table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: c.replace("|", "\\|") or "–"  # an empty cell reads as "not applicable / not computed"
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


SUMMARY_HEADER = ["Setting", "Method", "Bits / sparsity", "Precision", "Seeds", "Weights (MB)", "Disk (MB)"]


def summary_cells(r: pd.Series) -> list[str]:
    """The identity cells of a summary row (shared by Markdown and HTML)."""
    return [str(r["setting"]), str(r["method"]), compression(r), text(r["precision"]), seeds(r["calib_seeds"]),
            mb(r["weight_bytes"]), mb(r["model_size_bytes"])]


def render_markdown(t: Tables, run_name: str) -> str:
    s = t.summary
    out = [f"# Trust report: {run_name}", ""]
    header = [*SUMMARY_HEADER, *[label(p) for p in t.trust], "Avg trust", *[label(p) for p in t.utility], "PPL"]
    rows = [
        [*summary_cells(r), *[pm(r[p], r[MetricId(p, "std").column]) for p in t.trust],
         pm(r["avg_trust"], r["avg_trust_std"]), *[pm(r[p], r[MetricId(p, "std").column]) for p in t.utility],
         pm(r["perplexity"], r["perplexity_std"])]
        for _, r in s.iterrows()
    ]
    out += ["Scores in 0–100 (higher is more trustworthy), mean ± std over calibration seeds. "
            "Precision: as served (W4A16 = 4-bit weights, 16-bit activations); Weights: the bytes the weights "
            "need at that precision; Disk: the checkpoint's files. Seeds: calibration seeds (– where the method "
            "reads no calibration data). – elsewhere: not applicable or not computed (e.g. perplexity switched off); "
            "the notes say why.",
            f"DecodingTrust reference: {t.dt_reference or 'not recorded'}.", "",
            _table(header, rows), ""]
    for title, key, legend in (
        ("Refusal rates (%)", "refusal",
         "Each perspective's own refusal rate, as its DecodingTrust source counts it."),
        ("Unparsed answers (%)", "unparsed",
         "Answers with no valid label that are not explicit refusals."),
    ):
        out += [f"## {title}", "", legend, "",
                _table(["Setting", *[label(p) for p in [*t.trust, *t.utility]]],
                       [[str(r["setting"]), *[num(r[MetricId(p, key).column]) for p in [*t.trust, *t.utility]]]
                        for _, r in s.iterrows()]), ""]
    out += ["## 95 % confidence intervals", "",
            "Of each perspective's own score: a percentile bootstrap over calibration seeds where a setting has "
            "several; with one seed, over items (labelled), re-running the perspective's aggregate on every "
            "resample with all generations of an item kept together. † = the percentile interval missed the "
            "score (a biased statistic under resampling) and was extended to it.", "",
            _table(["Setting", *[label(p) for p in [*t.trust, *t.utility]]],
                   [[str(r["setting"]), *[_ci(r, p) for p in [*t.trust, *t.utility]]] for _, r in s.iterrows()]), ""]
    if t.baseline is not None and not t.paired.empty:
        legend = (
            "Δ = score difference (points), 95 % CI by the same rule as the scores (paired over items: the same "
            "resampled items score both models; over seeds where a side has several); ✱ = CI excludes zero. "
            "Flips: safe/correct in the baseline and not in the compressed model (↓), and the reverse (↑), from "
            "per-item outcomes. McNemar exact p for binary outcomes with one seed."
        )
        out += [f"## Paired comparison with {t.baseline.label}", "", legend, ""]
        rows = [
            [str(r["setting"]), label(r["perspective"]), _delta(r), _count(r["flips_to_unsafe"]),
             _count(r["flips_to_safe"]), num(r["mcnemar_p"], 3), str(r["paired_items"]), str(r["paired_note"])]
            for _, r in t.paired.iterrows()
        ]
        out += [_table(["Setting", "Perspective", "Δ [95 % CI]", "↓", "↑", "McNemar p", "items", "note"], rows), ""]
    if not t.seed_variance.empty:
        out += ["## Calibration-seed noise vs item noise", "", SEED_VARIANCE_LEGEND, "",
                seed_variance_markdown(t.seed_variance), ""]
    if t.notes:
        out += ["## Notes", "", *[f"- {n}" for n in t.notes], ""]
    return "\n".join(out)


SEED_VARIANCE_LEGEND = (
    "Per setting with several calibration seeds: seed std = std of the per-seed scores (the items are the same "
    "for every seed, so this is calibration-seed noise); item std = root of the mean over seeds of the item-"
    "bootstrap variance of a seed's score (what resampling the benchmark items would move it by); seed share = "
    "seed variance / (seed + item variance). Δ = score − baseline; the effect exceeds the seed spread when "
    "|Δ| > 2 × seed std."
)


def seed_variance_markdown(v: pd.DataFrame) -> str:
    """The seed-vs-item variance table as Markdown."""
    rows = [
        [str(r["setting"]), label(r["perspective"]), str(r["seeds"]), num(r["score"]), num(r["seed_std"], 2),
         num(r["item_std"], 2), num(100 * r["seed_share"], 0) + ("%" if num(r["seed_share"]) else ""),
         num(r["delta"]), num(r["delta_over_seed_std"], 1), str(r["verdict"])]
        for _, r in v.iterrows()
    ]
    return _table(["Setting", "Perspective", "Seeds", "Score", "Seed std", "Item std", "Seed share", "Δ",
                   "|Δ| / seed std", "Verdict"], rows)


def _count(v: object) -> str:
    return "" if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else str(int(v))  # type: ignore[arg-type]


def _delta(r: pd.Series) -> str:
    d, lo, hi = num(r["delta"]), num(r["delta_ci_low"]), num(r["delta_ci_high"])
    if not lo:
        return f"{d} (no CI)" if d else "–"
    return f"{d} [{lo}, {hi}]" + (" (seeds)" if r["delta_ci_over"] == "seeds" else "") + (" ✱" if r["changed"] else "")


def _ci(r: pd.Series, p: str) -> str:
    lo, hi = num(r[MetricId(p, "ci_low").column]), num(r[MetricId(p, "ci_high").column])
    if not lo:
        note = r.get(MetricId(p, "ci_note").column)
        return f"– ({note})" if isinstance(note, str) and note else ""
    over = r[MetricId(p, "ci_over").column]
    widened = bool(r[MetricId(p, "ci_widened").column])
    return f"[{lo}, {hi}]" + (" (items)" if over == "items" else "") + (" †" if widened else "")
