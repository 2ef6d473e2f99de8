"""`trustray data verify | fetch | stats | calibrate-toxicity`: the benchmark data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from trustray.cli.common import console

data_app = typer.Typer(help="Check, fetch and describe the benchmark data.", no_args_is_help=True)

DataDirOpt = Annotated[
    Optional[Path],
    typer.Option("--data-dir", help="Data directory (default: $TRUSTRAY_DATA, else <cache>/data)."),
]
OnlyOpt = Annotated[Optional[str], typer.Option("--only", help="Only files whose path starts with this prefix.")]


@data_app.command("verify")
def verify(data_dir: DataDirOpt = None, only: OnlyOpt = None) -> None:
    """Check every file against MANIFEST.json (size and sha256)."""
    from trustray.data import DataDir

    d = DataDir(data_dir)
    n = d.verify(only)
    console.print(f"[green]ok[/]: {n} files match {d.root / 'MANIFEST.json'}")


@data_app.command("fetch")
def fetch(
    source: Annotated[str, typer.Option("--from", help="A bundle directory or an http(s) URL serving one.")],
    data_dir: DataDirOpt = None,
    only: OnlyOpt = None,
) -> None:
    """Copy a data bundle, verifying every file; good files already there are kept."""
    from trustray.data import DataDir
    from trustray.data import fetch as do_fetch

    dest = DataDir(data_dir).root
    report = do_fetch(source, dest, only=only)
    console.print(f"[green]ok[/]: {len(report.copied)} copied, {len(report.kept)} already good, into {dest}")


@data_app.command("stats")
def stats(
    profile: Annotated[str, typer.Option("--profile", help="smoke, quick or paper.")] = "quick",
    data_dir: DataDirOpt = None,
) -> None:
    """Item and generation counts per perspective and scenario for a profile."""
    from collections import Counter

    from rich.table import Table

    import trustray.benchmarks  # noqa: F401  (registers every perspective)
    from trustray.benchmarks.base import BENCHMARKS, EvalContext
    from trustray.data import DataDir

    ctx = EvalContext(profile=profile)  # type: ignore[arg-type]
    d = DataDir(data_dir)
    table = Table(title=f"profile {profile}")
    for col in ("perspective", "scenario", "items", "generations"):
        table.add_column(col, justify="right" if col in ("items", "generations") else "left")
    total_items = total_gens = 0
    for name in BENCHMARKS:
        bench = BENCHMARKS.get(name)
        items = bench.items(d, ctx)
        counts: Counter[str] = Counter()
        gens: Counter[str] = Counter()
        for it in items:
            counts[it.scenario] += 1
            gens[it.scenario] += bench.request(it, ctx).sampling.n
        for scenario in sorted(counts):
            table.add_row(name, scenario, str(counts[scenario]), str(gens[scenario]))
        table.add_row(f"[bold]{name}[/]", "[bold]all[/]", f"[bold]{len(items)}[/]", f"[bold]{sum(gens.values())}[/]")
        total_items += len(items)
        total_gens += sum(gens.values())
    table.add_row("[bold]total[/]", "", f"[bold]{total_items}[/]", f"[bold]{total_gens}[/]")
    console.print(table)


@data_app.command("calibrate-toxicity")
def calibrate_toxicity(
    data_dir: DataDirOpt = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Where to write the parameters (default: the packaged file).")
    ] = None,
    method: Annotated[
        Optional[str], typer.Option("--method", help="quantile or isotonic (default: quantile).")
    ] = None,
    knots: Annotated[Optional[int], typer.Option("--knots", help="Quantile steps of the quantile fit.")] = None,
    normalise: Annotated[
        Optional[str],
        typer.Option("--normalise", help="Comma-separated normalisation steps, '' for none (default: all)."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Refit with the stored file's settings and fail if it differs.")
    ] = False,
) -> None:
    """Fit the local-calibrated toxicity scorer's map on the bundle's Perspective-scored human text."""
    from trustray.cli.common import fail
    from trustray.data import DataDir
    from trustray.scorers import calibration as c

    d = DataDir(data_dir)
    d.verify_present()
    path = out or c.PARAMS_FILE
    if check:
        stored, sha = c.load_calibration(path)
        if c.refit(stored, d) != stored:
            fail(f"{path} does not match a fresh fit from {d.root}; rerun `trustray data calibrate-toxicity`", 1)
        console.print(f"[green]ok[/]: {path} (sha256 {sha[:16]}) matches a fresh fit from {d.root}")
        return
    method = method or c.DEFAULT_METHOD
    if method not in ("quantile", "isotonic"):
        fail(f"--method must be quantile or isotonic, got {method!r}")
    steps = c.DEFAULT_NORMALISE if normalise is None else tuple(s.strip() for s in normalise.split(",") if s.strip())
    knots = c.DEFAULT_KNOTS if knots is None else knots
    cal = c.fit_calibration(d, method=method, knots=knots, normalise=steps)  # type: ignore[arg-type]
    path.write_text(cal.to_json(), encoding="utf-8")
    _, sha = c.load_calibration(path)
    console.print(
        f"[green]ok[/]: {len(cal.x)} knots fitted on {cal.n_texts} texts (data sha256 {cal.data_sha256[:16]}) "
        f"written to {path} (sha256 {sha[:16]})"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(data_app, name="data")
