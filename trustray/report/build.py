"""Build a run's report: read the store, compute the tables, write files into ``report/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trustray.report import plots
from trustray.report.html import render_html
from trustray.report.markdown import render_markdown
from trustray.report.scores import BenchmarkLookup, registered_benchmarks
from trustray.report.stats import DEFAULT_SPEC, BootstrapSpec
from trustray.report.store import read_perplexity, read_results
from trustray.report.summary import Tables, build_tables


@dataclass(frozen=True)
class ReportFiles:
    out_dir: Path
    summary_parquet: Path
    summary_csv: Path
    summary_md: Path
    html: Path
    paired_csv: Path
    seed_variance_csv: Path


def write_report(
    run_dir: str | Path,
    baseline: str | None = None,
    out_dir: str | Path | None = None,
    benchmarks: BenchmarkLookup | None = None,
    spec: BootstrapSpec = DEFAULT_SPEC,
) -> tuple[ReportFiles, Tables]:
    """Write ``summary.{parquet,csv,md}``, ``paired.csv``, ``seed_variance.csv`` and ``report.html``.

    ``out_dir`` defaults to ``<run_dir>/report``; ``benchmarks`` to the project's registry.
    """
    run = Path(run_dir)
    results = read_results(run)
    tables = build_tables(
        results, benchmarks if benchmarks is not None else registered_benchmarks(),
        perplexity=read_perplexity(run), baseline=baseline, spec=spec,
    )
    out = Path(out_dir) if out_dir is not None else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        out_dir=out, summary_parquet=out / "summary.parquet", summary_csv=out / "summary.csv",
        summary_md=out / "summary.md", html=out / "report.html", paired_csv=out / "paired.csv",
        seed_variance_csv=out / "seed_variance.csv",
    )
    name = run.resolve().name
    tables.summary.to_parquet(files.summary_parquet, index=False)
    tables.summary.to_csv(files.summary_csv, index=False)
    tables.paired.to_csv(files.paired_csv, index=False)
    tables.seed_variance.to_csv(files.seed_variance_csv, index=False)
    files.summary_md.write_text(render_markdown(tables, name), encoding="utf-8")
    s = tables.summary
    figures = {
        "trust_vs_compression": plots.trust_vs_compression(s),
        "radar": plots.radar(s, tables.trust, tables.baseline.setting if tables.baseline else None),
        "refusal": plots.refusal_rates(s, [*tables.trust, *tables.utility]),
        "trust_vs_size": plots.trust_vs_size(s),
    }
    files.html.write_text(render_html(tables, results, figures, name), encoding="utf-8")
    return files, tables
