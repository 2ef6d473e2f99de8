"""The serve and evaluate stages of one config: the only part of a trial that holds Ray objects.

:func:`serve_config` deploys the config's model as a Serve application and deletes it on exit;
:func:`evaluator_pool` starts the evaluator actors (before deploying, so they start up while the
replicas load) and kills them on exit; :func:`evaluate_shards` runs the pending shards on them.
Everything else of a trial (compress, plan, score) is plain Python in :mod:`trustray.pipeline`
and :mod:`trustray.scoring`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustray.benchmarks.base import EvalContext, Item
from trustray.config import EngineSpec, TrialSpec
from trustray.evaluate.plan import Shard
from trustray.rundir import RunDir


@dataclass
class Progress:
    """Callbacks for progress display; every field is optional."""

    on_plan: Callable[[str, int, int], None] | None = None  # perspective, items total, items already done
    on_shard: Callable[[str, int, int, float], None] | None = None  # perspective, items, tokens, seconds
    on_status: Callable[[str], None] | None = None
    # the whole config once planned: items total, items already done, tokens of work total / done
    on_config: Callable[[int, int, int, int], None] | None = None
    on_work: Callable[[int, int], None] | None = None  # a committed shard: items, tokens of work


def status(progress: Progress | None, text: str) -> None:
    """Report ``text`` as the trial's current status, where someone listens."""
    if progress and progress.on_status:
        progress.on_status(text)


@dataclass(frozen=True)
class PendingWork:
    """The shards of a config still to run, each with its items."""

    shards: list[tuple[Shard, list[Item]]]


@dataclass(frozen=True)
class ServedConfig:
    """A config's deployed model app and the engine that serves it."""

    config_id: str
    checkpoint: Path
    engine_name: str
    engine_version: str
    reproducible: bool | None
    served_dtype: str
    started: float  # perf_counter() when deploying began


@dataclass(frozen=True)
class EvalOutcome:
    """Wall time from deploying to the last committed shard, and the replicas' summed counters."""

    seconds: float = 0.0
    engine_stats: dict[str, Any] | None = None


class EngineMixError(RuntimeError):
    """A resumed config would get rows from a different engine than its committed ones."""


def check_one_engine(run_dir: Path | RunDir, config_id: str, engine_name: str,
                     engine_version: str | None = None) -> None:
    """Refuse to add rows to ``config_id`` from another engine (or engine version) than the
    rows already committed for it: one config's scores come from one engine."""
    from trustray.evaluate.store import committed_engines

    found = committed_engines(run_dir, config_id)
    other = sorted(f"{n} {v}" for n, v in found if n != engine_name or (engine_version is not None and v != engine_version))
    if other:
        now = f"{engine_name} {engine_version}" if engine_version else engine_name
        raise EngineMixError(
            f"config {config_id} has rows from {', '.join(other)}; resuming it with {now} would mix engines "
            f"in one config. Resume with the same engine.backend, or start a new run (--name)"
        )


def engine_options(eng: EngineSpec) -> Any:
    """The serving engine's options for ``eng``: ``SimulatedOptions`` for the simulated backend,
    else the HF engine's ``EngineOptions``."""
    if eng.backend == "simulated":
        from trustray.engines.simulated import SimulatedOptions

        return SimulatedOptions(gpu=eng.simulated_gpu, params_b=eng.simulated_params_b,
                                time_scale=eng.simulated_time_scale)
    from trustray.engines.hf import EngineOptions

    return EngineOptions(dtype=eng.dtype, batch_size=eng.batch_size, bucket=eng.bucket,
                         deterministic=eng.deterministic, prefix_reuse=eng.prefix_reuse)


def _vllm_dtype(trial: TrialSpec) -> str:
    """The dtype the vLLM app runs in: the spec's, or for ``auto`` the model's bf16 on a GPU and,
    on a CPU, bf16 where the CPU has it (as the HF engine and the vLLM plan decide)."""
    if trial.engine.dtype != "auto":
        return trial.engine.dtype
    if trial.resources.model_gpus:
        return "bfloat16"
    from trustray.engines.hf import cpu_has_bf16

    return "bfloat16" if cpu_has_bf16() else "float32"


def _engine_stats(handle: Any, replicas: int) -> dict[str, Any]:
    """The serving engine's name, version and counters summed over ``replicas`` replicas
    (the HF app reports them; others may not)."""
    from trustray.serve.builder import replica_stats
    from trustray.serve.server import merge_stats

    try:
        return merge_stats(replica_stats(handle, replicas))
    except AttributeError:
        return {}


def _deploy(trial: TrialSpec, checkpoint: Path, config_id: str, backend: str) -> Any:
    """Deploy the checkpoint as Serve app ``config_id``; the vLLM app's engine info, else None."""
    from trustray.serve import ServeApp, ServingOptions, deploy_model_app

    eng, res = trial.engine, trial.resources
    app = ServeApp(config_id, f"/{config_id}", config_id)
    if backend == "vllm":
        return deploy_model_app(
            checkpoint, app=app, backend="vllm", num_cpus=res.model_cpus, dtype=eng.dtype, vllm=eng.vllm,
            serving=ServingOptions(num_replicas=res.model_replicas, num_gpus=res.model_gpus),
        )
    return deploy_model_app(
        checkpoint, app=app, backend=backend, engine_options=engine_options(eng), num_cpus=res.model_cpus,
        serving=ServingOptions(torch_threads=res.torch_threads, num_replicas=res.model_replicas,
                               num_gpus=res.model_gpus),
    )


@contextmanager
def serve_config(trial: TrialSpec, checkpoint: Path, config_id: str, run_dir: Path | RunDir,
                 progress: Progress | None = None) -> Iterator[ServedConfig]:
    """Serve the config's checkpoint as Serve app ``config_id`` for the ``with`` block, then delete it.

    A resumed config is refused before deploying when its rows came from another backend."""
    from ray import serve

    from trustray.serve import model_handle
    from trustray.serve.builder import resolve_backend

    started = time.perf_counter()
    backend = resolve_backend(trial.engine.backend)
    check_one_engine(run_dir, config_id, backend)
    status(progress, f"deploying {trial.label()} as Serve app {config_id}")
    info = _deploy(trial, checkpoint, config_id, backend)
    try:
        if info is None:  # the HF app: its replicas report the engine and the dtype it runs in
            stats = _engine_stats(model_handle(config_id), 1)
            served = ServedConfig(config_id, checkpoint, stats.get("engine_name", backend),
                                  stats.get("engine_version", "unknown"), trial.engine.deterministic,
                                  stats.get("engine_dtype") or trial.engine.dtype, started)
        else:
            served = ServedConfig(config_id, checkpoint, info.name, info.version, info.reproducible,
                                  _vllm_dtype(trial), started)
        yield served
    finally:
        serve.delete(config_id)


@contextmanager
def evaluator_pool(trial: TrialSpec, n_shards: int,
                   tokenizer_path: Path | None = None) -> Iterator[list[Any]]:
    """``resources.evaluators`` evaluator actors (no more than there are shards) for the ``with``
    block, killed on exit. They load ``tokenizer_path``'s tokenizer as they start: entered before
    :func:`serve_config`, their start-up overlaps the replicas'."""
    from trustray.evaluate.actor import EvaluatorActor

    res = trial.resources
    actors: list[Any] = []
    try:
        for _ in range(min(res.evaluators, n_shards)):
            actor = EvaluatorActor.options(num_cpus=res.evaluator_cpus).remote(trial.eval.toxicity_scorer)
            actors.append(actor)
            if tokenizer_path is not None:
                actor.warm.remote(str(tokenizer_path))  # queued ahead of the actor's first shard
        yield actors
    finally:
        import ray

        for a in actors:
            ray.kill(a)


def evaluate_shards(trial: TrialSpec, served: ServedConfig, pending: PendingWork, run_dir: Path | RunDir,
                    ctx: EvalContext, provenance: dict[str, Any], actors: list[Any],
                    progress: Progress | None = None) -> EvalOutcome:
    """Run the pending shards on ``actors`` (:func:`evaluator_pool`) against the served app,
    ``resources.shards_per_evaluator`` at a time each, committing their rows into ``run_dir``."""
    import ray

    from trustray.serve import model_handle

    res = trial.resources
    work = {(s.perspective, s.index): s.work for s, _ in pending.shards}  # results name their shard by key
    # longest shards first, so the last ones to finish are short and no replica idles long at the end
    queue = iter(sorted(pending.shards, key=lambda job: -job[0].work))
    running: dict[Any, Any] = {}  # shard task -> the actor running it

    def submit(actor: Any) -> None:
        job = next(queue, None)
        if job is not None:
            running[actor.run_shard.remote(str(RunDir(run_dir).root), job[0], job[1], ctx, provenance,
                                           served.config_id, str(served.checkpoint))] = actor

    for _ in range(res.shards_per_evaluator):
        for a in actors:
            submit(a)
    status(progress, f"evaluating {trial.label()}: {len(pending.shards)} shards")
    while running:
        [ref], _ = ray.wait(list(running), num_returns=1)
        actor = running.pop(ref)
        result = ray.get(ref)
        if progress and progress.on_shard:
            progress.on_shard(result.perspective, result.items, result.output_tokens, result.seconds)
        if progress and progress.on_work:
            progress.on_work(result.items, work[(result.perspective, result.index)])
        submit(actor)
    seconds = time.perf_counter() - served.started
    return EvalOutcome(seconds, _engine_stats(model_handle(served.config_id), res.model_replicas))
