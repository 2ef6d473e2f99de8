"""Evaluate one compression config end to end: compress (cached) → serve → evaluate → score.

Used by a Tune trial (``trustray.sweep``) and directly by ``trustray eval``. Everything is
keyed by the config id (the compressed checkpoint's content key), never by a trial id, and
committed shards are skipped, so a re-run does only the missing work.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustray import identity
from trustray.benchmarks import BENCHMARKS
from trustray.benchmarks.base import EvalContext, Item
from trustray.columns import flat_values
from trustray.config import SpecError, TrialSpec
from trustray.data import DataDir
from trustray.evaluate.plan import Shard, generations_per_item, resolve_plan, work_per_item
from trustray.evaluate.store import (
    foreign_schema_message, is_committed, stored_schema_versions, write_table_atomic,
)
from trustray.metrics import REFUSAL_RATE, SCORE, MetricId
from trustray.rundir import RunDir
from trustray.schema import SCHEMA_VERSION
from trustray.scoring.scores import score_config
from trustray.stages import (
    EngineMixError, EvalOutcome, PendingWork, Progress, check_one_engine, evaluate_shards, evaluator_pool,
    serve_config, status,
)

__all__ = ["ConfigResult", "EngineMixError", "Progress", "check_one_engine", "run_config", "score_config"]


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


def run_config(
    trial: TrialSpec,
    run_dir: Path,
    run_id: str,
    data_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> ConfigResult:
    """Evaluate one trial's config: compress → plan → serve → evaluate → score; returns the
    per-perspective scores read back from the store."""
    from trustray.compress import compress

    start = time.perf_counter()
    data, run = DataDir(data_dir), RunDir(run_dir)
    problem = foreign_schema_message(run.root, stored_schema_versions(run.root))
    if problem:
        raise SpecError(problem)
    status(progress, f"compressing {trial.label()} (cached after the first time)")
    # On the CPUs the config's replicas will hold: the previous config's app is gone by now.
    compressed = compress(trial.model.name, trial.compression, trial.calibration, data_dir=data.root,
                          threads=_replica_threads(trial))
    config_id = identity.config_id(config_identity(trial, compressed))
    ctx = eval_context(trial)
    plans = plan(trial, config_id, data, ctx, run.root, compressed.path)
    pending = pending_work(plans, run, progress)
    _write_config_record(run.root, config_id, trial, compressed)
    outcome = EvalOutcome()
    if pending.shards:
        with (evaluator_pool(trial, len(pending.shards), compressed.path) as actors,
              serve_config(trial, compressed.path, config_id, run, progress) as served):
            check_one_engine(run, config_id, served.engine_name, served.engine_version)
            prov = provenance(trial, compressed, run_id, data, served.engine_name, served.engine_version,
                              served.served_dtype, engine_reproducible=served.reproducible)
            outcome = evaluate_shards(trial, served, pending, run, ctx, prov, actors, progress)
    ppl = None
    if trial.eval.perplexity:
        status(progress, f"perplexity of {trial.label()}")
        ppl = _perplexity(run.root, config_id, compressed.path, data, trial)
    scores = score_config(run, config_id, trial.eval.perspectives)
    return ConfigResult(config_id, trial.label(), scores, sum(len(s) for _, s in plans.values()), len(pending.shards),
                        time.perf_counter() - start, ppl, eval_seconds=outcome.seconds,
                        engine_stats=outcome.engine_stats or {})


def pending_work(plans: dict[str, tuple[list[Item], list[Shard]]], run: RunDir,
                 progress: Progress | None = None) -> PendingWork:
    """The shards of ``plans`` not yet committed in ``run``, with their items (and the planned
    and already done work reported to ``progress``)."""
    pending: list[tuple[Shard, list[Item]]] = []
    every: list[Shard] = []
    done: list[Shard] = []
    for p, (items, shards) in plans.items():
        committed = [is_committed(run.root, s) for s in shards]
        if progress and progress.on_plan:
            progress.on_plan(p, len(items), sum(s.stop - s.start for s, c in zip(shards, committed) if c))
        pending += [(s, items[s.start : s.stop]) for s, c in zip(shards, committed) if not c]
        every += shards
        done += [s for s, c in zip(shards, committed) if c]
    if progress and progress.on_config:
        progress.on_config(sum(s.stop - s.start for s in every), sum(s.stop - s.start for s in done),
                           sum(s.work for s in every), sum(s.work for s in done))
    return PendingWork(pending)


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


def _replica_threads(trial: TrialSpec) -> int | None:
    """The torch threads the config's replicas run with, together: compression runs before the
    app is deployed and perplexity after it is deleted, on the CPUs the replicas hold."""
    res = trial.resources
    return res.torch_threads * res.model_replicas if res.torch_threads and not res.model_gpus else None


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (unchanged for None), then restore the count."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _stored_perplexity(path: Path, profile: str) -> float | None:
    """The perplexity stored at ``path``; None when there is none, or when it was scored on
    another number of windows than ``profile`` now reads (a run resumed after the profile
    changed): it is then computed again, so every config of a run is compared on the same text."""
    import pyarrow.parquet as pq

    from trustray.utility.perplexity import MAX_WINDOWS

    if not path.exists():
        return None
    table = pq.read_table(path)
    wanted = MAX_WINDOWS.get(profile)
    if "windows" not in table.column_names or (wanted is not None and table["windows"][0].as_py() != wanted):
        return None
    return float(table["perplexity"][0].as_py())


def _perplexity(run_dir: Path, config_id: str, checkpoint: Path, data: DataDir, trial: TrialSpec) -> float:
    """WikiText-2 perplexity of the config (computed once, then read back)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = RunDir(run_dir).perplexity(config_id)
    stored = _stored_perplexity(path, trial.eval.profile)
    if stored is None:
        import torch

        from trustray.engines.hf import load_causal_lm, pick_dtype
        from trustray.utility.perplexity import perplexity
        from transformers import AutoTokenizer

        import transformers

        device = torch.device("cpu")
        dtype = pick_dtype(trial.engine.dtype, device)
        model = load_causal_lm(checkpoint, dtype, device)
        tok = AutoTokenizer.from_pretrained(checkpoint)
        with torch_threads(_replica_threads(trial)):
            threads = torch.get_num_threads()
            r = perplexity(model, tok, data=data, profile=trial.eval.profile)
        # Always scored by transformers (whatever engine served the generations): the reference.
        table = pa.table({"config_id": [config_id], "perplexity": [r.perplexity], "tokens": [r.n_tokens],
                          "windows": [r.n_windows], "profile": [r.profile], "dataset": [r.dataset],
                          "scored_by": [f"transformers {transformers.__version__}"],
                          "dtype": [str(dtype).removeprefix("torch.")],
                          # bf16 sums split over threads round differently (~3e-4 relative)
                          "threads": [threads]})
        write_table_atomic(table, path, replace=path.exists())  # a stale one is replaced
        stored = float(pq.read_table(path)["perplexity"][0].as_py())
    return stored
