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
    model: Annotated[str, typer.Option("--model", help="Model whose tokenizer counts the prompts.")] = "smollm2-135m",
    perspectives: Annotated[
        Optional[str], typer.Option("--perspectives", help="Comma-separated perspectives (default: all).")
    ] = None,
    estimate: Annotated[
        bool, typer.Option("--estimate/--no-estimate", help="Estimate engine time (measures this machine once).")
    ] = True,
) -> None:
    """Per perspective: items, generations, prompt tokens, max output tokens and an estimated
    engine time on this machine, against the profile's per-config budget."""
    from rich.table import Table

    from trustray.benchmarks.base import PROFILES
    from trustray.budget import BUDGETS, engine_rates, over_budget, profile_work, tokenizer_for
    from trustray.cli.common import fail
    from trustray.config import ALL_PERSPECTIVES
    from trustray.data import DataDir

    if profile not in PROFILES:
        fail(f"--profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    names = [p.strip() for p in perspectives.split(",") if p.strip()] if perspectives else list(ALL_PERSPECTIVES)
    unknown = [p for p in names if p not in ALL_PERSPECTIVES]
    if unknown:
        fail(f"unknown perspectives {unknown} (known: {', '.join(ALL_PERSPECTIVES)})")
    d = DataDir(data_dir)
    work = profile_work(profile, d, tokenizer_for(model), names)
    rates = engine_rates(model, measure=estimate, log=console.print) if estimate else None
    budget = BUDGETS[profile]
    table = Table(title=f"profile {profile}, per config (tokens counted with {model}'s tokenizer)")
    cols = ["perspective", "items", "generations", "prompt tokens", "after prefix reuse", "max output tokens"]
    if rates:
        cols.append("est. engine time")
    for col in cols:
        table.add_column(col, justify="left" if col == "perspective" else "right")

    def row(name: str, w: list, bold: bool = False) -> None:
        cells = [name, sum(x.items for x in w), sum(x.generations for x in w), sum(x.prompt_tokens for x in w),
                 sum(x.prefill_tokens for x in w), sum(x.output_tokens for x in w)]
        text = [str(cells[0])] + [f"{c:,}" for c in cells[1:]]
        if rates:
            text.append(f"{sum(rates.seconds(x) for x in w) / 60:.1f} min")
        table.add_row(*(f"[bold]{t}[/]" if bold else t for t in text))

    for w in work:
        row(w.perspective, [w])
    row("total", work, bold=True)
    console.print(table)
    console.print(f"budget of profile {profile}: {budget.prompt_tokens:,} prompt / {budget.output_tokens:,} "
                  "output tokens per config (trustray/budget.py)", highlight=False)
    if rates:
        console.print(
            f"engine time: one HF engine, {rates.dtype}, {rates.threads} thread(s) on {rates.machine}: "
            f"prefill {rates.prefill_tok_s:,.0f} tokens/s, batched decode {rates.decode_tok_s:,.0f} tokens/s; "
            "every sample counted to max_tokens (an upper bound)"
        )
    problems = over_budget(profile, work) if names == list(ALL_PERSPECTIVES) else []
    for p in problems:
        console.print(f"[bold red]over budget[/]: {p}")
    if problems:
        raise typer.Exit(1)


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
