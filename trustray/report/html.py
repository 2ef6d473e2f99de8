"""``report.html``: one offline page (PNG data URIs, inline CSS and a small sort script),
rendered by jinja2 with autoescape: model outputs are untrusted text."""

from __future__ import annotations

import base64
import hashlib
from importlib import resources

import jinja2
import pandas as pd
from markupsafe import Markup

from trustray.compress.spec import family_of
from trustray.metrics import MetricId
from trustray.report.markdown import SEED_VARIANCE_LEGEND, compression, num, pm, seeds, text
from trustray.scoring.perspectives import label
from trustray.report.summary import Tables

SAMPLE_CHARS = 600
SAMPLE_CONFIGS = 8


def _template_text(name: str) -> str:
    return resources.files("trustray.report").joinpath("templates", name).read_text(encoding="utf-8")


def sample_generations(results: pd.DataFrame, configs: pd.DataFrame) -> dict[str, list[dict[str, str]]]:
    """Per perspective: the first generation of its first item under each config (≤ 8 configs)."""
    setting = dict(zip(configs["config_id"], configs["setting"]))
    out: dict[str, list[dict[str, str]]] = {}
    for p, rows in results.groupby("perspective", sort=True):
        first = rows["item_id"].min()
        picked = rows[(rows["item_id"] == first)].sort_values(["config_id", "generation_index"])
        picked = picked.drop_duplicates("config_id").head(SAMPLE_CONFIGS)
        out[str(p)] = [
            {
                "setting": setting.get(r.config_id, r.config_id), "config_id": r.config_id,
                "item_id": r.item_id, "label": "" if pd.isna(r.parsed_label) else str(r.parsed_label),
                "correct": "" if pd.isna(r.correct) else ("yes" if r.correct else "no"),
                "refused": "yes" if r.refused else "no",
                "unparsed": "yes" if getattr(r, "unparsed", False) is True else "no",
                "score": num(r.score, 3),
                "text": r.output_text if len(r.output_text) <= SAMPLE_CHARS else r.output_text[:SAMPLE_CHARS] + "…",
            }
            for r in picked.itertuples(index=False)
        ]
    return out


def _cell(text: str, sort: object) -> dict[str, str]:
    """A table cell: display text and the value the sort script compares (number or text)."""
    key = num(sort, 6) if isinstance(sort, (int, float)) and not isinstance(sort, bool) else str(sort)
    return {"text": text, "sort": key}


def _table(t: Tables) -> tuple[list[dict[str, str]], list[list[dict[str, str]]]]:
    header = [
        {"text": text, "key": key}
        for text, key in [
            ("Setting", "setting"), ("Method", "method"), ("Bits / sparsity", "compression"),
            ("Precision", "precision"), ("Seeds", "calib_seeds"), ("Weights (MB)", "weight_mb"),
            ("Disk (MB)", "size_mb"), *[(label(p), p) for p in t.trust],
            ("Avg trust", "avg_trust"), *[(label(p), p) for p in t.utility], ("PPL", "perplexity"),
        ]
    ]
    rows = []
    for _, r in t.summary.iterrows():
        family = family_of(r["method"])
        bits = 99 if family == "none" else (r["bits"] if family == "quantisation" else 100 - 100 * (r["sparsity"] or 0))
        n_seeds = -1 if pd.isna(r["calib_seeds"]) else int(r["calib_seeds"])
        rows.append([
            _cell(str(r["setting"]), str(r["setting"])), _cell(str(r["method"]), str(r["method"])),
            _cell(compression(r), float(bits)), _cell(text(r["precision"]), text(r["precision"])),
            _cell(seeds(r["calib_seeds"]), n_seeds),
            _cell(num(r["weight_bytes"] / 1e6), float(r["weight_bytes"])),
            _cell(num(r["model_size_bytes"] / 1e6), float(r["model_size_bytes"])),
            *[_cell(pm(r[p], r[MetricId(p, "std").column]), float(r[p])) for p in t.trust],
            _cell(pm(r["avg_trust"], r["avg_trust_std"]), float(r["avg_trust"])),
            *[_cell(pm(r[p], r[MetricId(p, "std").column]), float(r[p])) for p in t.utility],
            _cell(pm(r["perplexity"], r["perplexity_std"]), float(r["perplexity"])),
        ])
    return header, rows


def render_html(
    t: Tables, results: pd.DataFrame, figures: dict[str, bytes], run_name: str
) -> str:
    """The report page as a string."""
    script = _template_text("sort.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["num"] = num
    env.filters["label"] = label
    env.filters["count"] = lambda v: "" if v is None or pd.isna(v) else str(int(v))
    template = env.from_string(_template_text("report.html.j2"))
    header, rows = _table(t)
    perspectives = [*t.trust, *t.utility]
    return template.render(
        run_name=run_name,
        dt_reference=t.dt_reference,
        baseline=t.baseline.label if t.baseline else None,
        header=header, rows=rows, perspectives=perspectives, summary=t.summary.to_dict("records"),
        paired=t.paired.to_dict("records"), notes=t.notes,
        seed_variance=t.seed_variance.to_dict("records"), seed_variance_legend=SEED_VARIANCE_LEGEND,
        figures={k: "data:image/png;base64," + base64.b64encode(v).decode("ascii") for k, v in figures.items()},
        samples=sample_generations(results, t.configs),
        script=Markup(script), script_hash=f"sha256-{digest}",
    )
