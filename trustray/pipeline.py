"""Evaluate one compression config end to end: compress (cached) → serve → evaluate → score.

Used by a Tune trial (``trustray.sweep``) and directly by ``trustray eval``. Everything is
keyed by the config id (the compressed checkpoint's content key), never by a trial id, and
committed shards are skipped, so a re-run does only the missing work.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustray import identity
from trustray.benchmarks import BENCHMARKS
from trustray.benchmarks.base import EvalContext, Item
from trustray.columns import flat_values
from trustray.config import EngineSpec, SpecError, TrialSpec
from trustray.data import DataDir
from trustray.evaluate.plan import Shard, generations_per_item, resolve_plan, work_per_item
from trustray.evaluate.store import (
    foreign_schema_message, is_committed, read_config_rows, stored_schema_versions, write_table_atomic,
)
from trustray.metrics import REFUSAL_RATE, SCORE, MetricId
from trustray.rundir import RunDir
from trustray.schema import SCHEMA_VERSION


@dataclass
class Progress:
    """Callbacks for progress display; every field is optional."""

    on_plan: Callable[[str, int, int], None] | None = None  # perspective, items total, items already done
    on_shard: Callable[[str, int, int, float], None] | None = None  # perspective, items, tokens, seconds
    on_status: Callable[[str], None] | None = None
    # the whole config once planned: items total, items already done, tokens of work total / done
    on_config: Callable[[int, int, int, int], None] | None = None
    on_work: Callable[[int, int], None] | None = None  # a committed shard: items, tokens of work


@dataclass
class ConfigResult:
    config_id: str
    label: str
    scores: dict[str, dict[str, Any]]
    shards_total: int
    shards_run: int
    seconds: float
    perplexity: float | None = None
    notes: list[str] = field(default_factory=list)
    # wall time from deploying the model app to the last committed shard (0 when nothing ran)
    eval_seconds: float = 0.0
    # the serving replicas' counters at the end of evaluation, summed (batches, engine_busy_s, ...)
    engine_stats: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """Flat metrics for ``tune.report``."""
        out: dict[str, Any] = {"config_id": self.config_id, "label": self.label, "shards_run": self.shards_run}
        for p, s in self.scores.items():
            for metric in (SCORE, REFUSAL_RATE):
                out[str(MetricId(p, metric))] = s[metric]
        if self.perplexity is not None:
            out["perplexity"] = self.perplexity
        if self.engine_stats:
            out["eval_seconds"] = self.eval_seconds
            out["engine_busy_s"] = self.engine_stats.get("engine_busy_s")
            out["engine_busy_max_s"] = self.engine_stats.get("engine_busy_max_s")
            out["engine_batches"] = self.engine_stats.get("batches")
            out["engine_replicas"] = self.engine_stats.get("replicas")
        return out


def _status(progress: Progress | None, text: str) -> None:
    if progress and progress.on_status:
        progress.on_status(text)


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def config_identity(trial: TrialSpec, compressed: Any) -> dict[str, Any]:
    """The identity of the config ``compressed`` was made for (resolved compression spec; no
    calibration for methods that read none); its hash is the config id."""
    return identity.config_identity(trial.model, compressed.base_fingerprint, compressed.compression,
                                    compressed.calibration, trial.eval, trial.engine)


def flat_columns(compressed: Any) -> dict[str, Any]:
    """The flat query columns of a compressed model's specs (:mod:`trustray.columns`)."""
    return flat_values(compressed.compression, compressed.calibration)


def provenance(trial: TrialSpec, compressed: Any, run_id: str, data: DataDir, engine_name: str,
               engine_version: str, served_dtype: str, *, engine_reproducible: bool | None = None) -> dict[str, Any]:
    """The columns every row of this config carries, built from the specs themselves."""
    from trustray.compress.size import precision_label, weight_bytes
    from trustray.models import resolve_model

    ident = config_identity(trial, compressed)
    base_path = compressed.path if compressed.compression.is_dense else resolve_model(trial.model.name).path
    return {
        "run_id": run_id,
        "config_id": identity.config_id(ident),
        "setting_id": identity.setting_id(ident),
        "model_name": compressed.base_name,
        "model_fingerprint": compressed.base_fingerprint,
        "model_size_bytes": dir_size(compressed.path),
        "precision": precision_label(compressed.compression, served_dtype),
        "served_dtype": served_dtype,
        "weight_bytes": weight_bytes(base_path, compressed.compression, served_dtype),
        **flat_columns(compressed),
        **identity.spec_columns(ident),
        "profile": trial.eval.profile,
        "render_mode": trial.eval.render,
        "data_source": data.prompts_source,
        "engine_name": engine_name,
        "engine_version": engine_version,
        "engine_reproducible": engine_reproducible,
    }


def eval_context(trial: TrialSpec) -> EvalContext:
    e = trial.eval
    return EvalContext(profile=e.profile, render=e.render, dt_template=e.dt_template, run_seed=e.run_seed,
                       dt_reference=e.dt_reference, max_prompt_tokens=e.max_prompt_tokens)


def plan(
    trial: TrialSpec, config_id: str, data: DataDir, ctx: EvalContext, run_dir: Path | None = None,
    tokenizer_path: str | Path | None = None,
) -> dict[str, tuple[list[Item], list[Shard]]]:
    """Items and shards per perspective: the plan recorded in ``run_dir`` where there is one, else
    shards of about ``resources.shard_tokens`` tokens of work (recorded when ``run_dir`` is given)."""
    out = {}
    count = prompt_counter(tokenizer_path, ctx)
    for p in trial.eval.perspectives:
        bench = BENCHMARKS.get(p)
        items = bench.items(data, ctx)
        shards, _ = resolve_plan(
            run_dir, config_id, p, items,
            work=lambda: work_per_item(bench, items, ctx, count),  # noqa: B023 (called right away)
            generations=lambda: generations_per_item(bench, items, ctx),  # noqa: B023
            shard_tokens=trial.resources.shard_tokens, shard_generations=trial.resources.shard_generations,
        )
        out[p] = (items, shards)
    return out


def prompt_counter(tokenizer_path: str | Path | None, ctx: EvalContext) -> Callable[[Any], int]:
    """Prompt tokens of a request as the HF engine encodes it (``tokenizer_path``'s tokenizer), or
    the context's estimate over the request's text without one."""
    if tokenizer_path is None:
        return lambda req: ctx.tokens(req.prompt if req.prompt is not None
                                      else "".join(m.content for m in req.messages or ()))
    loaded: list[Any] = []  # the tokenizer, loaded on first use (a recorded plan needs none)

    def count(req: Any) -> int:
        from trustray.engines.hf import prompt_ids

        if not loaded:
            from transformers import AutoTokenizer

            loaded.append(AutoTokenizer.from_pretrained(tokenizer_path, clean_up_tokenization_spaces=False))
        return len(prompt_ids(loaded[0], req))

    return count


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


def run_config(
    trial: TrialSpec,
    run_dir: Path,
    run_id: str,
    data_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> ConfigResult:
    """Evaluate one trial's config; returns per-perspective scores read back from the store."""
    import ray
    from ray import serve
    from ray.util import ActorPool

    from trustray.compress import compress
    from trustray.serve.builder import resolve_backend
    from trustray.evaluate.actor import EvaluatorActor
    from trustray.serve import ServeApp, ServingOptions, deploy_model_app, model_handle

    start = time.perf_counter()
    data = DataDir(data_dir)
    run_dir = Path(run_dir)
    problem = foreign_schema_message(run_dir, stored_schema_versions(run_dir))
    if problem:
        raise SpecError(problem)
    _status(progress, f"compressing {trial.label()} (cached after the first time)")
    compressed = compress(trial.model.name, trial.compression, trial.calibration, data_dir=data.root)
    config_id = identity.config_id(config_identity(trial, compressed))
    label = trial.label()
    ctx = eval_context(trial)
    plans = plan(trial, config_id, data, ctx, run_dir, compressed.path)
    pending: list[tuple[Shard, list[Item]]] = []
    for p, (items, shards) in plans.items():
        todo = [s for s in shards if not is_committed(run_dir, s)]
        done_items = sum(s.stop - s.start for s in shards if s not in todo)
        if progress and progress.on_plan:
            progress.on_plan(p, len(items), done_items)
        pending += [(s, items[s.start : s.stop]) for s in todo]
    shards_total = sum(len(s) for _, s in plans.values())
    if progress and progress.on_config:
        every = [s for _, shards in plans.values() for s in shards]
        todo_keys = {(s.perspective, s.index) for s, _ in pending}
        done = [s for s in every if (s.perspective, s.index) not in todo_keys]
        progress.on_config(sum(s.stop - s.start for s in every), sum(s.stop - s.start for s in done),
                           sum(s.work for s in every), sum(s.work for s in done))
    shard_work = {(s.perspective, s.index): s.work for s, _ in pending}
    _write_config_record(run_dir, config_id, trial, compressed)

    eval_seconds, engine_stats = 0.0, {}
    if pending:
        eval_start = time.perf_counter()
        eng = trial.engine
        res = trial.resources
        backend = resolve_backend(eng.backend)
        check_one_engine(run_dir, config_id, backend)
        _status(progress, f"deploying {label} as Serve app {config_id}")
        if backend == "vllm":
            info = deploy_model_app(
                compressed.path, app=ServeApp(config_id, f"/{config_id}", config_id), backend="vllm",
                num_cpus=res.model_cpus, dtype=eng.dtype, vllm=eng.vllm,
                serving=ServingOptions(num_replicas=res.model_replicas, num_gpus=res.model_gpus),
            )
        else:
            info = deploy_model_app(
                compressed.path, app=ServeApp(config_id, f"/{config_id}", config_id), backend=backend,
                engine_options=engine_options(eng),
                num_cpus=res.model_cpus,
                serving=ServingOptions(torch_threads=res.torch_threads, num_replicas=res.model_replicas,
                                       num_gpus=res.model_gpus),
            )
        actors: list[Any] = []
        try:
            if info is None:  # the HF app: its replicas report the engine and the dtype it runs in
                stats = _engine_stats(model_handle(config_id), 1)
                engine = (stats.get("engine_name", backend), stats.get("engine_version", "unknown"), eng.deterministic)
                served_dtype = stats.get("engine_dtype") or eng.dtype
            else:
                engine = (info.name, info.version, info.reproducible)
                served_dtype = _vllm_dtype(trial)
            check_one_engine(run_dir, config_id, engine[0], engine[1])
            prov = provenance(trial, compressed, run_id, data, *engine[:2], served_dtype, engine_reproducible=engine[2])
            actors = [
                EvaluatorActor.options(num_cpus=res.evaluator_cpus).remote(trial.eval.toxicity_scorer)
                for _ in range(min(res.evaluators, len(pending)))
            ]
            pool = ActorPool(actors)
            jobs = pool.map_unordered(
                lambda a, job: a.run_shard.remote(str(run_dir), job[0], job[1], ctx, prov, config_id,
                                                  str(compressed.path)),
                pending,
            )
            _status(progress, f"evaluating {label}: {len(pending)} shards")
            for result in jobs:
                if progress and progress.on_shard:
                    progress.on_shard(result.perspective, result.items, result.output_tokens, result.seconds)
                if progress and progress.on_work:
                    progress.on_work(result.items, shard_work[(result.perspective, result.index)])
            eval_seconds = time.perf_counter() - eval_start
            engine_stats = _engine_stats(model_handle(config_id), res.model_replicas)
        finally:
            for a in actors:
                ray.kill(a)
            serve.delete(config_id)

    ppl = None
    if trial.eval.perplexity:
        _status(progress, f"perplexity of {label}")
        ppl = _perplexity(run_dir, config_id, compressed.path, data, trial)
    scores = score_config(run_dir, config_id, trial.eval.perspectives)
    return ConfigResult(config_id, label, scores, shards_total, len(pending), time.perf_counter() - start, ppl,
                        eval_seconds=eval_seconds, engine_stats=engine_stats)


class EngineMixError(RuntimeError):
    """A resumed config would get rows from a different engine than its committed ones."""


def check_one_engine(run_dir: Path, config_id: str, engine_name: str, engine_version: str | None = None) -> None:
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


def _engine_stats(handle: Any, replicas: int) -> dict[str, Any]:
    """The serving engine's name, version and counters summed over ``replicas`` replicas
    (the HF app reports them; others may not)."""
    from trustray.serve.builder import replica_stats
    from trustray.serve.server import merge_stats

    try:
        return merge_stats(replica_stats(handle, replicas))
    except AttributeError:
        return {}


def _write_config_record(run_dir: Path, config_id: str, trial: TrialSpec, compressed: Any) -> None:
    """``configs/<id>.json``: the identity, spec and checkpoint of a config. A record that exists
    must hold the same identity: rows of two different specs never share a config directory."""
    path = RunDir(run_dir).config_record(config_id)
    ident = config_identity(trial, compressed)
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("schema_version") != SCHEMA_VERSION or previous.get("identity") != ident:
            raise SpecError(
                f"{run_dir} already holds config {config_id} made by another spec or an older trustray "
                f"(schema {previous.get('schema_version')}, this is {SCHEMA_VERSION}); "
                "evaluate into a new run directory (another --run / --name)"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"config_id": config_id, "setting_id": identity.setting_id(ident), "label": trial.label(),
            "checkpoint": str(compressed.path), "identity": ident, "trial": trial.model_dump(mode="json"),
            "schema_version": SCHEMA_VERSION}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _perplexity(run_dir: Path, config_id: str, checkpoint: Path, data: DataDir, trial: TrialSpec) -> float:
    """WikiText-2 perplexity of the config (computed once, then read back)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = RunDir(run_dir).perplexity(config_id)
    if not path.exists():
        import torch

        from trustray.engines.hf import load_causal_lm, pick_dtype
        from trustray.utility.perplexity import perplexity
        from transformers import AutoTokenizer

        import transformers

        device = torch.device("cpu")
        dtype = pick_dtype(trial.engine.dtype, device)
        model = load_causal_lm(checkpoint, dtype, device)
        tok = AutoTokenizer.from_pretrained(checkpoint)
        r = perplexity(model, tok, data=data, profile=trial.eval.profile)
        # Always scored by transformers (whatever engine served the generations): the reference.
        table = pa.table({"config_id": [config_id], "perplexity": [r.perplexity], "tokens": [r.n_tokens],
                          "windows": [r.n_windows], "profile": [r.profile], "dataset": [r.dataset],
                          "scored_by": [f"transformers {transformers.__version__}"],
                          "dtype": [str(dtype).removeprefix("torch.")]})
        write_table_atomic(table, path)
    return float(pq.read_table(path)["perplexity"][0].as_py())


def score_config(run_dir: Path, config_id: str, perspectives: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """Per-perspective score and refusal rate from the committed rows of one config."""
    from trustray.report.scores import perspective_score, registered_benchmarks

    table = read_config_rows(run_dir, config_id, list(perspectives))
    df = table.to_pandas()
    out: dict[str, dict[str, Any]] = {}
    benchmarks = registered_benchmarks()
    for p in perspectives:
        rows = df[df["perspective"] == p]
        if rows.empty:
            continue
        s = perspective_score(rows, benchmarks)
        out[p] = {"score": s.score, "refusal_rate": s.refusal_rate, "unparsed_rate": s.unparsed_rate,
                  "source": s.source,
                  "n_items": s.n_items, "n_generations": s.n_generations}
        if not math.isfinite(s.score):
            out[p]["note"] = s.note
    return out
