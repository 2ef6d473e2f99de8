"""`trustray sweep` and `trustray eval`: the distributed pipeline from the command line."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trustray.cli.common import console, err_console, fail
from trustray.compress.spec import METHOD_NAMES
from trustray.rundir import RunDir

Profile = Annotated[str | None, typer.Option("--profile", help="smoke, quick or paper (overrides the spec).")]
Perspectives = Annotated[str | None, typer.Option("--perspectives", help="Comma-separated perspectives.")]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="Benchmark data (default $TRUSTRAY_DATA).")]
Address = Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: $RAY_ADDRESS or local).")]
Sets = Annotated[list[str] | None, typer.Option(
    "--set", metavar="FIELD=VALUE",
    help="Set any spec field, e.g. --set eval.profile=smoke --set compression.act_order=true (repeatable).")]


def _overrides(sets: list[str] | None, **flags: Any) -> dict[str, Any]:
    """The spec fields a command line sets: its flags (those given) and then each ``--set``."""
    from trustray.config import parse_assignments

    return {**{k: v for k, v in flags.items() if v is not None}, **parse_assignments(sets or [])}


def _csv_ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"--seeds takes comma-separated integers, got {text!r}")
        raise  # unreachable


def sweep(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Sweep spec YAML.")],
    profile: Profile = None,
    perspectives: Perspectives = None,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Calibration seeds, e.g. 0,1,2.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name (default: the spec's).")] = None,
    storage_path: Annotated[str | None, typer.Option("--storage-path", help="Where runs go (default: the spec's).")] = None,
    data_dir: DataDirOpt = None,
    address: Address = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the report at the end.")] = True,
    sets: Sets = None,
) -> None:
    """Run (or resume) a sweep: one Tune trial per compression config × calibration seed."""
    overrides = _overrides(sets, **{"eval.profile": profile, "eval.perspectives": perspectives,
                                    "seeds": _csv_ints(seeds), "name": name})
    _sweep(spec_path, overrides, storage_path, data_dir, address, report)


def _sweep(spec_path: Path, overrides: Mapping[str, Any], storage_path: str | None, data_dir: str | None,
           address: str | None, report: bool) -> object | None:
    """The sweep command's work; returns the report's tables (None without a report)."""
    from trustray.config import SweepSpec, build_spec, load_sweep_spec
    from trustray.data import DataDir
    from trustray.sweep import run_sweep

    spec = build_spec(SweepSpec, load_sweep_spec(spec_path).model_dump(mode="json"), overrides)
    if data_dir or not _has_env_data():
        DataDir(data_dir).verify_present()
    trials = spec.trials()
    console.print(f"sweep [bold]{spec.name}[/]: {len(trials)} trials "
                  f"({', '.join(t.label() for t in trials)}), profile {spec.eval.profile}", highlight=False)
    start = time.perf_counter()
    with SweepDisplay() as display:
        outcome = run_sweep(spec, storage_path=storage_path, data_dir=data_dir, address=address, on_progress=display)
    _print_metrics(outcome.metrics, spec.eval.perspectives)
    console.print(f"results: {RunDir(outcome.run_dir).results}  ({time.perf_counter() - start:.0f} s)", highlight=False)
    tables = _report(outcome.run_dir) if report and outcome.metrics else None
    if not outcome.ok:
        for e in outcome.errors:
            err_console.print(f"[bold red]trial failed:[/] {e}", highlight=False)
        fail(f"{len(outcome.errors)} of {len(trials)} trials failed; rerun the same command to resume", code=1)
    return tables


class SweepDisplay:
    """Live rows per config and overall: items done, tokens of work per second, time left."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("{task.description:<22}"), BarColumn(), TextColumn("{task.fields[items]:>11}"),
                            TextColumn("{task.fields[rate]:>11}"), TextColumn("left {task.fields[eta]}"),
                            console=console)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> SweepDisplay:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def __call__(self, snapshot: dict) -> None:
        from trustray.evaluate.progress import format_eta

        rows = [*snapshot["configs"], snapshot["overall"]]
        for i, row in enumerate(rows):
            key = row["label"] if row is not snapshot["overall"] else "\0overall"
            name = f"[bold]overall ({snapshot['overall']['configs_planned']}/{snapshot['overall']['configs']})[/]" \
                if row is snapshot["overall"] else row["label"]
            fields = {
                "items": f"{row['items_done']}/{row['items_total']}" if row["planned"] else "-",
                "rate": f"{row['tok_s']:.0f} tok/s" if row["tok_s"] else "",
                "eta": format_eta(row["eta_s"]),
            }
            total = max(1, row["work_total"])
            if key not in self.tasks:
                self.tasks[key] = self.bar.add_task(name, total=total, completed=row["work_done"], **fields)
            else:
                self.bar.update(self.tasks[key], description=name, total=total, completed=row["work_done"], **fields)


def _has_env_data() -> bool:
    import os

    return bool(os.environ.get("TRUSTRAY_DATA"))


def _report(run_dir: Path) -> object:
    from trustray.report import write_report

    files, tables = write_report(run_dir)
    console.print(f"report: {files.html}\nsummary: {files.summary_md}", highlight=False)
    return tables


def print_seed_variance(tables: object) -> None:
    """The calibration-seed vs item-sampling variance table of a report, for the console."""
    from trustray.report.markdown import SEED_VARIANCE_LEGEND, num
    from trustray.scoring.perspectives import label

    v = tables.seed_variance  # type: ignore[attr-defined]
    if v.empty:
        console.print("no setting has two or more calibration seeds: no seed-vs-item variance table")
        return
    table = Table("setting", "perspective", "seeds", "score", "seed std", "item std", "seed share", "Δ",
                  "|Δ|/seed std", "verdict", title="calibration-seed noise vs item noise")
    for _, r in v.iterrows():
        share = num(100 * r["seed_share"], 0)
        table.add_row(str(r["setting"]), label(r["perspective"]), str(r["seeds"]), num(r["score"]),
                      num(r["seed_std"], 2), num(r["item_std"], 2), f"{share}%" if share else "", num(r["delta"]),
                      num(r["delta_over_seed_std"], 1), str(r["verdict"]))
    (console if console.is_terminal else Console(width=200, file=console.file)).print(table)
    console.print(SEED_VARIANCE_LEGEND, highlight=False)


def _print_metrics(metrics: list[dict], perspectives: tuple[str, ...]) -> None:
    if not metrics:
        return
    from trustray.metrics import MetricId

    table = Table("config", "label", *perspectives, "ppl", title="scores (0–100, higher is more trustworthy)")
    keys = [str(MetricId(p)) for p in perspectives]
    for m in sorted(metrics, key=lambda m: m.get("label", "")):
        cells = [f"{m[k]:.1f}" if k in m else "-" for k in keys]
        ppl = f"{m['perplexity']:.1f}" if "perplexity" in m else "-"
        table.add_row(str(m.get("config_id")), str(m.get("label")), *cells, ppl)
    # Logs (make sweep > file, ray job logs) get the whole table instead of 80 columns of "…".
    (console if console.is_terminal else Console(width=200, file=console.file)).print(table)


def evaluate(
    model: Annotated[str, typer.Option("--model", "-m", help="Embedded name, checkpoint dir or HF id.")] = "smollm2-135m",
    method: Annotated[str, typer.Option("--method", help=", ".join(METHOD_NAMES) + ".")] = "none",
    bits: Annotated[int | None, typer.Option("--bits")] = None,
    group_size: Annotated[int | None, typer.Option("--group-size")] = None,
    sparsity: Annotated[float | None, typer.Option("--sparsity")] = None,
    structure: Annotated[str | None, typer.Option("--structure", help="N:M, e.g. 2:4.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Calibration seed.")] = 0,
    samples: Annotated[int, typer.Option("--samples", help="Calibration samples.")] = 128,
    profile: Annotated[str, typer.Option("--profile")] = "quick",
    perspectives: Perspectives = None,
    run: Annotated[str, typer.Option("--run", help="Run name (results go to RUNS/NAME).")] = "eval",
    storage_path: Annotated[str, typer.Option("--storage-path")] = "runs",
    data_dir: DataDirOpt = None,
    address: Address = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="HF engine rows per batch.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, hf or vllm.")] = "auto",
    sets: Sets = None,
) -> None:
    """Evaluate one model config (no Tune; its spec is a one-trial sweep's) with live progress per perspective."""
    from trustray.config import SpecError, one_trial_sweep
    from trustray.data import DataDir
    from trustray.evaluate.progress import ProgressBoard, format_eta
    from trustray.models import resolve_model
    from trustray.pipeline import Progress as Callbacks, run_config
    from trustray.sweep import check_or_record_eval, init_ray, needs_http, run_dir_for, start_serve

    flags = {
        "model.name": model, "compression.method": method, "compression.bits": bits,
        "compression.group_size": group_size, "compression.sparsity": sparsity, "compression.structure": structure,
        "calibration.num_samples": samples, "calibration.seed": seed, "eval.profile": profile,
        "eval.perspectives": perspectives or None, "engine.backend": backend, "engine.batch_size": batch_size,
    }
    try:
        spec, trial = one_trial_sweep(_overrides(sets, **flags), name=run, storage_path=storage_path)
    except SpecError as e:
        fail(str(e))
        raise  # unreachable
    DataDir(data_dir).verify_present()
    resolve_model(trial.model.name)  # fail fast on an unknown model, before Ray starts
    run_dir = run_dir_for(spec)
    check_or_record_eval(run_dir, trial)  # before Ray starts: a clash costs nothing
    init_ray(address)
    start_serve(http=needs_http([trial]))
    with Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console) as bar:
        tasks: dict[str, int] = {}
        tokens = {"n": 0, "t0": time.perf_counter()}

        def on_plan(p: str, total: int, done: int) -> None:
            tasks[p] = bar.add_task(p, total=total, completed=done, rate="")

        def on_shard(p: str, items: int, toks: int, _s: float) -> None:
            tokens["n"] += toks
            rate = tokens["n"] / max(1e-9, time.perf_counter() - tokens["t0"])
            bar.update(tasks[p], advance=items, rate=f"{rate:.0f} tok/s")

        board = ProgressBoard({"config": trial.label()})

        def show_total() -> None:
            row = board.snapshot()["configs"][0]
            fields = {"rate": f"{row['tok_s']:.0f} work tok/s, left {format_eta(row['eta_s'])}" if row["tok_s"] else ""}
            if "\0all" not in tasks:
                tasks["\0all"] = bar.add_task("all", total=row["items_total"], completed=row["items_done"], **fields)
            bar.update(tasks["\0all"], completed=row["items_done"], **fields)

        def on_config(*totals: int) -> None:
            board.plan("config", *totals)
            show_total()

        def on_work(items: int, work: int) -> None:
            board.shard("config", items, work)
            show_total()

        result = run_config(trial, run_dir, run, data_dir,
                            Callbacks(on_plan=on_plan, on_shard=on_shard, on_status=lambda s: bar.console.log(s),
                                      on_config=on_config, on_work=on_work))
    metrics = result.metrics()
    _print_metrics([metrics], trial.eval.perspectives)
    console.print(f"config {result.config_id}: {result.shards_run}/{result.shards_total} shards run now; "
                  f"results in {RunDir(run_dir).results}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
    app.command("eval")(evaluate)


def sweep_script(default_spec: Path, seed_table: bool = False) -> None:
    """Entry point of the ``sweeps/*.py`` scripts: ``trustray sweep`` with their own spec;
    ``seed_table`` ends the run with the report's seed-vs-item variance table."""
    import sys

    from trustray.cli.common import run

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    def main(
        spec: Annotated[Path, typer.Option("--spec", help="Sweep spec YAML.")] = default_spec,
        profile: Profile = None,
        perspectives: Perspectives = None,
        seeds: Annotated[str | None, typer.Option("--seeds")] = None,
        name: Annotated[str | None, typer.Option("--name")] = None,
        storage_path: Annotated[str | None, typer.Option("--storage-path")] = None,
        data_dir: DataDirOpt = None,
        address: Address = None,
        report: Annotated[bool, typer.Option("--report/--no-report")] = True,
        sets: Sets = None,
    ) -> None:
        overrides = _overrides(sets, **{"eval.profile": profile, "eval.perspectives": perspectives,
                                        "seeds": _csv_ints(seeds), "name": name})
        tables = _sweep(spec, overrides, storage_path, data_dir, address, report)
        if seed_table and tables is not None:
            print_seed_variance(tables)

    sys.argv[0] = default_spec.with_suffix(".py").name
    run(app)
