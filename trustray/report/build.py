"""Build a run's report: read the store, compute the tables, write files into ``report/``."""

from __future__ import annotations

from pathlib import Path

from trustray.report import plots
from trustray.report.html import render_html
from trustray.report.markdown import render_markdown
from trustray.scoring.scores import BenchmarkLookup, registered_benchmarks
from trustray.report.stats import DEFAULT_SPEC, BootstrapSpec
from trustray.report.store import read_perplexity, read_results
from trustray.report.summary import Tables, build_tables
from trustray.rundir import ReportFiles, RunDir

__all__ = ["ReportFiles", "write_report"]


def write_report(
    run_dir: str | Path,
    baseline: str | None = None,
    out_dir: str | Path | None = None,
    benchmarks: BenchmarkLookup | None = None,
    spec: BootstrapSpec = DEFAULT_SPEC,
) -> tuple[ReportFiles, Tables]:
    """Write ``summary.{parquet,csv,md}``, ``paired.csv``, ``seed_variance.csv``, ``scores_long.parquet``
    and ``report.html``.

    ``out_dir`` defaults to ``<run_dir>/report``; ``benchmarks`` to the project's registry.
    """
    run = RunDir(run_dir).root
    results = read_results(run)
    tables = build_tables(
        results, benchmarks if benchmarks is not None else registered_benchmarks(),
        perplexity=read_perplexity(run), baseline=baseline, spec=spec,
    )
    files = RunDir(run).report_files(out_dir)
    files.out_dir.mkdir(parents=True, exist_ok=True)
    name = run.resolve().name
    tables.summary.to_parquet(files.summary_parquet, index=False)
    tables.summary.to_csv(files.summary_csv, index=False)
    tables.paired.to_csv(files.paired_csv, index=False)
    tables.seed_variance.to_csv(files.seed_variance_csv, index=False)
    tables.scores_long.to_parquet(files.scores_long, index=False)
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
