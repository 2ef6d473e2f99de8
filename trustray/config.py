"""Sweep and evaluation specs (pydantic, ``extra="forbid"``), loaded from YAML with clear errors.

No Ray or torch here. Compression and calibration specs live in ``trustray.compress.spec``
and are re-exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trustray.benchmarks.base import DtReference, Profile, RenderMode
from trustray.compress.spec import CalibrationSpec, CompressionSpec, canonical_json, short_hash

__all__ = [
    "CalibrationSpec", "CompressionSpec", "EngineSpec", "EvalSpec", "ModelSpec", "ResourceSpec",
    "SpecError", "SweepSpec", "TrialSpec", "load_sweep_spec", "ALL_PERSPECTIVES",
]

# The eight DecodingTrust perspectives, then MMLU.
TRUST_PERSPECTIVES: tuple[str, ...] = (
    "toxicity", "stereotype", "adv_demonstration", "advglue", "ood", "privacy", "machine_ethics", "fairness",
)
ALL_PERSPECTIVES: tuple[str, ...] = (*TRUST_PERSPECTIVES, "mmlu")


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
    perspectives: tuple[str, ...] = ALL_PERSPECTIVES
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
    """How models are served: backend, dtype and the engine's fixed batch shape."""

    # "simulated": a model-free engine timed by a GPU throughput model, for scale tests only.
    backend: Literal["auto", "hf", "vllm", "simulated"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    batch_size: int = Field(32, ge=1)
    bucket: int = Field(32, ge=1)
    deterministic: bool = True
    # backend "simulated" only: the GPU and model size it stands for, and its speed-up over real time
    simulated_gpu: Literal["A100", "H100"] = "A100"
    simulated_params_b: float = Field(13.0, gt=0)
    simulated_time_scale: float = Field(1.0, gt=0, le=1000)


class ResourceSpec(_Spec):
    """Ray resources: evaluator actors per trial, CPUs per part, concurrent trials, shard size."""

    evaluators: int = Field(2, ge=1)
    evaluator_cpus: float = Field(0.1, ge=0)
    trial_cpus: float = Field(0.1, ge=0)
    model_cpus: float = Field(1.0, ge=0)
    # Serve replicas of the model app per trial; on a CPU box, 1-thread replicas (one per core)
    # scale better than one replica with many torch threads.
    model_replicas: int = Field(1, ge=1)
    model_gpus: float = Field(0.0, ge=0)
    torch_threads: int | None = Field(None, ge=1)
    max_concurrent_trials: int | None = Field(None, ge=1)
    shard_generations: int = Field(128, ge=1)
    max_failures: int = Field(2, ge=0)

    def cpus_per_trial(self) -> float:
        """CPUs one trial holds while it evaluates: itself, its evaluators and every replica."""
        return self.trial_cpus + self.evaluators * self.evaluator_cpus + self.model_replicas * self.model_cpus


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
        """A copy with top-level or ``eval.*`` fields replaced (for CLI flags), re-validated."""
        data = self.model_dump(mode="json")
        for key, value in fields.items():
            if value is None:
                continue
            target, _, leaf = key.rpartition(".")
            node = data
            for part in filter(None, target.split(".")):
                node = node[part]
            node[leaf] = value
        return SweepSpec.model_validate(data)


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
