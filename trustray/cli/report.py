"""`trustray report`: summary tables, seed statistics, paired deltas, plots and HTML for a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trustray.cli.common import console, fail


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("report")(report)


def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory holding results/config=<id>/perspective=<p>/shard-<k>.parquet.")],
    baseline: Annotated[
        str | None, typer.Option(help="Config id or setting to compare with (default: the dense config).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: RUN_DIR/report).")] = None,
    bootstrap_seed: Annotated[int, typer.Option(help="Seed of every bootstrap resampling.")] = 0,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples per interval over seeds.")] = 9999,
    item_resamples: Annotated[
        int, typer.Option(min=100, help="Resamples per interval over items (each re-runs a perspective's aggregate).")
    ] = 2000,
) -> None:
    """Write summary.parquet/.csv/.md, paired.csv and report.html for a run."""
    from trustray.report import BootstrapSpec, ReportError, write_report

    try:
        files, tables = write_report(
            run_dir, baseline=baseline, out_dir=out, spec=BootstrapSpec(seed=bootstrap_seed, n_resamples=resamples, item_resamples=item_resamples)
        )
    except ReportError as e:
        fail(str(e))
        return
    s = tables.summary
    console.print(
        f"{len(s)} settings, {s['n_configs'].sum()} configs, perspectives: {', '.join([*tables.trust, *tables.utility])}"
    )
    if tables.baseline is not None:
        console.print(f"baseline: {tables.baseline.label}")
    if not tables.seed_variance.empty:
        from trustray.cli.pipeline import print_seed_variance

        print_seed_variance(tables)
    for line in tables.notes:
        console.print(f"[yellow]note:[/] {line}", highlight=False)
    console.print(f"report: {files.html}", highlight=False)
    console.print(f"summary: {files.summary_csv}, {files.summary_md}, {files.summary_parquet}", highlight=False)
