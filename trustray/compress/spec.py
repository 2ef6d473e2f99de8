"""Compression and calibration specs: frozen, validated, hashable units of work.

Pure pydantic: no torch, no llm-compressor. A spec's canonical JSON (sorted keys, no spaces)
and its short hash identify it everywhere (cache keys, config ids, result rows).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Method = Literal["none", "gptq", "awq", "sparsegpt", "wanda", "magnitude"]
# What a method does to the weights: the dense baseline, fewer bits per weight, or fewer weights.
Family = Literal["none", "quantisation", "pruning"]
METHOD_FAMILIES: dict[str, Family] = {
    "none": "none",
    "gptq": "quantisation",
    "awq": "quantisation",
    "sparsegpt": "pruning",
    "wanda": "pruning",
    "magnitude": "pruning",
}
if set(METHOD_FAMILIES) != set(get_args(Method)):  # a new method needs its family here
    raise AssertionError(f"METHOD_FAMILIES {sorted(METHOD_FAMILIES)} != Method {sorted(get_args(Method))}")
METHOD_NAMES: tuple[str, ...] = get_args(Method)
QUANT_METHODS: frozenset[str] = frozenset(m for m, f in METHOD_FAMILIES.items() if f == "quantisation")
PRUNE_METHODS: frozenset[str] = frozenset(m for m, f in METHOD_FAMILIES.items() if f == "pruning")
GROUP_SIZE_CANDIDATES: tuple[int, ...] = (128, 64, 32)

_STRUCTURE = re.compile(r"^(\d+):(\d+)$")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the form every spec hash is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def short_hash(text: str, n: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def parse_structure(structure: str) -> tuple[int, int]:
    """``"2:4"`` → ``(2, 4)``; raises ValueError unless ``0 < N < M``."""
    m = _STRUCTURE.match(structure.strip())
    if not m:
        raise ValueError(f"structure must look like 'N:M' (e.g. '2:4'), got {structure!r}")
    n, mm = int(m.group(1)), int(m.group(2))
    if not 0 < n < mm:
        raise ValueError(f"structure {structure!r} needs 0 < N < M (keep N of every M weights)")
    return n, mm


def family_of(method: str) -> Family | None:
    """The family of a method name as results record it (None for a method this version lacks)."""
    return METHOD_FAMILIES.get(method)


def default_group_size(dims: Sequence[int]) -> int:
    """The largest of 128/64/32 that divides every dimension in ``dims``."""
    for g in GROUP_SIZE_CANDIDATES:
        if all(d % g == 0 for d in dims):
            return g
    raise ValueError(f"none of {GROUP_SIZE_CANDIDATES} divides the model's layer widths {sorted(set(dims))}")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def canonical(self) -> str:
        """Canonical JSON of every field (defaults included, so equal specs hash equally)."""
        return canonical_json(self.model_dump(mode="json"))

    def spec_hash(self) -> str:
        """Short hash of the canonical JSON."""
        return short_hash(self.canonical())


class CompressionSpec(_Spec):
    """How to compress: method and its parameters.

    ``gptq``/``awq``: weight-only, symmetric int quantisation with ``bits`` in {8, 4, 3} and
    ``group_size`` (default: the largest of 128/64/32 dividing the layer widths, filled in by
    :meth:`for_model`); ``act_order`` for GPTQ only. ``sparsegpt``/``wanda``/``magnitude``:
    unstructured ``sparsity`` in [0, 1) or an N:M ``structure`` (exactly one of them).
    ``none`` is the dense baseline and takes no parameters.

    Validate against a model's layer widths with ``CompressionSpec.for_model(dims, ...)``
    (or ``model_validate(data, context={"dims": dims})``): then a group size that does not
    divide a layer fails naming ``group_size``.
    """

    method: Method
    bits: Literal[8, 4, 3] | None = None
    group_size: int | None = Field(default=None, gt=0)
    act_order: bool = False
    sparsity: float | None = Field(default=None, ge=0.0, lt=1.0)
    structure: str | None = None

    @field_validator("structure")
    @classmethod
    def _check_structure(cls, v: str | None) -> str | None:
        if v is None:
            return None
        n, m = parse_structure(v)
        return f"{n}:{m}"

    @field_validator("group_size")
    @classmethod
    def _check_group_divides(cls, v: int | None, info: ValidationInfo) -> int | None:
        dims = (info.context or {}).get("dims")
        if v is not None and dims:
            bad = sorted({d for d in dims if d % v})
            if bad:
                raise ValueError(f"group size {v} does not divide layer width(s) {bad}")
        return v

    @model_validator(mode="after")
    def _check_combination(self, info: ValidationInfo) -> CompressionSpec:
        m = self.method
        # Errors name the offending field first; pydantic prefixes model-level errors with nothing.
        if m in QUANT_METHODS:
            if self.bits is None:
                raise ValueError(f"bits: method {m!r} needs bits (one of 8, 4, 3)")
            if self.sparsity is not None or self.structure is not None:
                raise ValueError(f"sparsity/structure: method {m!r} quantises; it takes no sparsity")
            if self.act_order and m != "gptq":
                raise ValueError("act_order: only GPTQ has an activation order")
        elif m in PRUNE_METHODS:
            for name in ("bits", "group_size"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: method {m!r} prunes; it takes no {name}")
            if self.act_order:
                raise ValueError("act_order: only GPTQ has an activation order")
            if (self.sparsity is None) == (self.structure is None):
                raise ValueError(f"sparsity/structure: method {m!r} needs exactly one of sparsity or structure")
        else:  # none
            for name in ("bits", "group_size", "sparsity", "structure"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: method 'none' takes no {name}")
            if self.act_order:
                raise ValueError("act_order: method 'none' takes no act_order")
        dims = (info.context or {}).get("dims")
        if m in QUANT_METHODS and self.group_size is None and dims:
            # Frozen model: fill the resolved default in place during validation.
            object.__setattr__(self, "group_size", default_group_size(dims))
        return self

    @classmethod
    def for_model(cls, dims: Sequence[int], /, **fields: Any) -> CompressionSpec:
        """Validate ``fields`` against a model's layer widths, filling the default group size."""
        return cls.model_validate(fields, context={"dims": list(dims)})

    def resolved(self, dims: Sequence[int]) -> CompressionSpec:
        """This spec re-validated against ``dims`` (default group size filled in)."""
        return type(self).for_model(dims, **self.model_dump(exclude_none=True))

    @property
    def family(self) -> Family:
        return METHOD_FAMILIES[self.method]

    @property
    def is_dense(self) -> bool:
        return self.family == "none"

    @property
    def is_quantization(self) -> bool:
        return self.family == "quantisation"

    @property
    def is_pruning(self) -> bool:
        return self.family == "pruning"

    @property
    def target_sparsity(self) -> float | None:
        """Fraction of pruned weights: ``sparsity``, or ``1 - N/M`` for a structure."""
        if self.structure is not None:
            n, m = parse_structure(self.structure)
            return 1 - n / m
        return self.sparsity

    def label(self) -> str:
        """Short human-readable name, e.g. ``gptq-w4-g64`` or ``wanda-2:4``."""
        if self.is_dense:
            return "dense"
        if self.is_quantization:
            g = f"-g{self.group_size}" if self.group_size else ""
            return f"{self.method}-w{self.bits}{g}{'-act' if self.act_order else ''}"
        return f"{self.method}-{self.structure or f's{self.sparsity:g}'}"


class CalibrationSpec(_Spec):
    """Which text calibrates the compression, and how much of it.

    ``dataset``: ``wikitext2`` (read offline from the data directory's ``wikitext-2/``), a
    local ``.txt``/``.jsonl``/``.json`` file path, or a Hugging Face dataset name (``c4`` or
    ``org/name``, only where the hub is reachable). The ``seed`` alone decides which windows of
    ``seq_len`` tokens are drawn and their order.
    """

    dataset: str = "wikitext2"
    num_samples: int = Field(default=128, gt=0, le=65536)
    seq_len: int = Field(default=512, gt=0, le=131072)
    seed: int = Field(default=0, ge=0)

    @field_validator("dataset")
    @classmethod
    def _check_dataset(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("dataset must not be empty")
        return v
