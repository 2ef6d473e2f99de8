"""Ray Tune wiring: one trial per (compression config × calibration seed), resumable.

The driver joins a cluster (``ray.init()`` under ``ray job submit`` or with an address) or
starts a local one, starts Serve before ``Tuner.fit()`` (a Serve controller cannot be created
inside a trial's placement group), and fits. A sweep directory that already holds a Tune
experiment is restored with errored trials restarted; inside a trial, committed shards are
skipped. Trials are keyed by config id, never by Tune's trial id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustray.config import ResourceSpec, SpecError, SweepSpec, TrialSpec, load_sweep_spec
from trustray.rundir import RunDir

__all__ = ["SweepError", "SweepOutcome", "load_sweep_spec", "run_sweep"]


class SweepError(RuntimeError):
    """The sweep could not run, or some trials failed."""


@dataclass
class SweepOutcome:
    run_dir: Path
    metrics: list[dict[str, Any]]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors


def run_dir_for(spec: SweepSpec, storage_path: str | None = None) -> Path:
    return RunDir.under(storage_path or spec.storage_path, spec.name).root


def check_schema(run_dir: Path) -> None:
    """Refuse a run directory holding results of another schema version, saying what to do."""
    from trustray.evaluate.store import foreign_schema_message, stored_schema_versions

    problem = foreign_schema_message(run_dir, stored_schema_versions(run_dir))
    if problem:
        raise SpecError(problem)


def _write_json_atomic(path: Path, body: dict[str, Any]) -> None:
    """Write ``body`` to ``path`` through a dot-prefixed temp file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _as_compared(body: dict[str, Any]) -> dict[str, Any]:
    """A sweep spec's record as resuming compares it: the order of its perspectives selects
    nothing (the default order follows the perspective registry), so it is left out."""
    ev = body.get("eval")
    if isinstance(ev, dict) and isinstance(ev.get("perspectives"), list):
        return {**body, "eval": {**ev, "perspectives": sorted(ev["perspectives"])}}
    return body


def check_or_record_spec(run_dir: Path, spec: SweepSpec) -> None:
    """Record the spec in a new run directory; refuse to resume one made by a different spec."""
    check_schema(run_dir)
    path = RunDir(run_dir).sweep_record
    body = spec.model_dump(mode="json")
    body.pop("storage_path", None)
    if path.exists():
        previous = json.loads(path.read_text())
        if _as_compared(previous) != _as_compared(body):
            raise SpecError(
                f"{run_dir} holds a sweep with a different spec; give the sweep another name "
                "(name: in the YAML or --name) or remove the directory"
            )
        return
    _write_json_atomic(path, body)


def check_or_record_eval(run_dir: Path, trial: TrialSpec) -> None:
    """``trustray eval``'s counterpart of :func:`check_or_record_spec`: a run directory records
    the evaluation and engine specs of its first eval; an eval with other specs is refused
    (compression configs may differ: each is its own config)."""
    from trustray.identity import run_identity
    from trustray.schema import SCHEMA_VERSION

    check_schema(run_dir)
    path = RunDir(run_dir).eval_record
    body = {**run_identity(trial.eval, trial.engine), "schema_version": SCHEMA_VERSION}
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != body:
            diff = sorted(
                f"{spec}.{k}" for spec in ("eval", "engine") for k in set(body[spec]) | set(previous.get(spec) or {})
                if body[spec].get(k) != (previous.get(spec) or {}).get(k)
            ) or ["schema_version"]
            raise SpecError(
                f"{run_dir} holds evaluations made with other settings ({', '.join(diff)} differ); "
                "evaluate into another run directory (--run NAME) or remove it"
            )
        return
    _write_json_atomic(path, body)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join ``address`` (or ``$RAY_ADDRESS`` under a job), else start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        _probe(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    except (ConnectionError, TimeoutError, RuntimeError) as e:
        raise SweepError(f"cannot connect to the Ray cluster at {address or 'local'}: {e}") from None


def _probe(address: str) -> None:
    """Fail in seconds, not minutes, when a ``host:port`` cluster address does not answer."""
    import socket

    target = address.removeprefix("ray://").removeprefix("http://").removeprefix("https://").rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms: leave them to ray.init
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise SweepError(f"cannot connect to the Ray cluster at {address}: {e.strerror or e}") from None


#: Serve's default HTTP port; the sweep never uses it (a free loopback port where HTTP is needed).
SERVE_HTTP_PORT = 8000


def needs_http(trials: Sequence[TrialSpec]) -> bool:
    """Whether any trial's model app is reachable only over HTTP (the vLLM OpenAI app)."""
    from trustray.serve.builder import resolve_backend

    return any(resolve_backend(t.engine.backend) == "vllm" for t in trials)


def start_serve(*, http: bool = False) -> None:
    """Start Serve in the driver. Evaluators reach HF apps through Serve handles, so by default no
    HTTP proxy runs; with ``http`` (the vLLM app, reached over HTTP) each node's proxy listens on
    its loopback address only, on a free port, never on an address other machines can reach."""
    from ray import serve

    if http:
        serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
    else:
        serve.start(proxy_location="Disabled")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _trainable(config: dict[str, Any]) -> None:
    from ray import tune

    from trustray.pipeline import run_config

    trial = TrialSpec.model_validate(config["trial"])
    result = run_config(trial, Path(config["run_dir"]), config["run_id"], config.get("data_dir"),
                        progress=_board_callbacks(board_name(config["run_id"]), trial.spec_id()))
    tune.report(result.metrics())


def board_name(run_id: str) -> str:
    from trustray.evaluate.progress import BOARD_NAME

    return f"{BOARD_NAME}-{run_id}"


def _board_callbacks(name: str, key: str) -> Any:
    """Progress callbacks that report to the sweep driver's board actor (none without one)."""
    import ray

    from trustray.pipeline import Progress

    try:
        board = ray.get_actor(name)
    except ValueError:  # no live display (a sweep run without one)
        return None
    return Progress(on_config=lambda *a: board.plan.remote(key, *a),
                    on_work=lambda items, work: board.shard.remote(key, items, work))


def start_board(spec: SweepSpec, on_snapshot: Callable[[dict[str, Any]], None], every_s: float = 1.0) -> Callable[[], None]:
    """Start the progress board actor and a driver thread passing its snapshots to
    ``on_snapshot``; returns a function that stops both (after one last snapshot)."""
    import threading

    import ray

    from trustray.evaluate.progress import ProgressBoard

    board = ray.remote(num_cpus=0)(ProgressBoard).options(name=board_name(spec.name)).remote(
        {t.spec_id(): t.label() for t in spec.trials()})
    stop = threading.Event()

    def poll() -> None:
        while True:
            try:
                on_snapshot(ray.get(board.snapshot.remote(), timeout=30))
            except Exception:  # noqa: BLE001  (the display must never stop the sweep)
                pass
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=poll, name="sweep-progress", daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join(timeout=35)
        try:
            on_snapshot(ray.get(board.snapshot.remote(), timeout=30))
        except Exception:  # noqa: BLE001
            pass
        ray.kill(board)

    return close


def trial_resources(spec: SweepSpec) -> Any:
    from ray import tune

    r = spec.resources
    return tune.PlacementGroupFactory([{"CPU": r.trial_cpus}] + [{"CPU": r.evaluator_cpus}] * r.evaluators)


def check_trial_fits(r: ResourceSpec) -> None:
    """On a fixed-size (local) Ray, fail now if one trial's CPUs cannot all be placed at once;
    Serve would otherwise wait forever for the replica that does not fit."""
    import ray

    need = r.cpus_per_trial()
    have = ray.cluster_resources().get("CPU", 0)
    if need > have + 1e-9:
        raise SweepError(
            f"one trial needs {need:g} CPUs (trial {r.trial_cpus:g} + {r.evaluators} evaluators × "
            f"{r.evaluator_cpus:g} + {r.model_replicas} model replicas × {r.model_cpus:g}) but this Ray has "
            f"{have:g}; lower resources.model_replicas or resources.model_cpus in the spec"
        )


def run_sweep(
    spec: SweepSpec,
    *,
    storage_path: str | None = None,
    data_dir: str | None = None,
    address: str | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> SweepOutcome:
    """Run (or resume) a sweep; returns per-trial metrics and the errors of failed trials.
    ``on_progress`` receives the progress board's snapshot about every second while it runs."""
    from ray import tune

    run_dir = run_dir_for(spec, storage_path)
    local = not (address or os.environ.get("RAY_ADDRESS"))
    init_ray(address)
    if local:
        check_trial_fits(spec.resources)
    check_or_record_spec(run_dir, spec)
    trials = spec.trials()
    start_serve(http=needs_http(trials))
    import ray

    max_concurrent = spec.resources.max_concurrent_trials or max(1, int(ray.cluster_resources().get("GPU", 0)))
    trainable = tune.with_resources(_trainable, trial_resources(spec))
    tune_path = RunDir(run_dir).tune
    if tune.Tuner.can_restore(str(tune_path)):
        tuner = tune.Tuner.restore(str(tune_path), trainable, restart_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={
                "trial": tune.grid_search([t.model_dump(mode="json") for t in trials]),
                "run_dir": str(run_dir),
                "run_id": spec.name,
                "data_dir": data_dir or os.environ.get("TRUSTRAY_DATA"),
            },
            tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent),
            run_config=tune.RunConfig(
                name=tune_path.name,
                storage_path=str(tune_path.parent),
                failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
                verbose=1,
            ),
        )
    close = start_board(spec, on_progress) if on_progress else None
    precompressing = None
    if spec.resources.precompress:
        from trustray.compress.prefetch import start_precompression

        precompressing = start_precompression(trials, data_dir or os.environ.get("TRUSTRAY_DATA"))
    try:
        grid = tuner.fit()
    finally:
        if close:
            close()
        if precompressing is not None:
            ray.cancel(precompressing, force=True)  # a no-op once it finished
    metrics = [dict(r.metrics) for r in grid if r.metrics]
    errors = [f"{type(e).__name__}: {e}".splitlines()[0] for e in grid.errors]
    return SweepOutcome(run_dir, metrics, errors)
