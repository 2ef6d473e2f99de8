"""Compression method → llm-compressor recipe (a list of modifiers), registered by name.

llm-compressor is imported inside the builders, so importing this module stays cheap.
Conventions bridged here:

* trustray's ``N:M`` keeps N non-zeros in every M weights; llm-compressor's ``mask_structure``
  names the number *pruned* per M, so ``N:M`` becomes ``"{M-N}:{M}"`` (same for 2:4 and 4:8).
* ``lm_head`` (tied to the embeddings in small models) is never compressed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from trustray.compress.spec import CompressionSpec, parse_structure
from trustray.registry import Registry

IGNORE = ["lm_head"]
LINEAR_TARGETS = ["Linear"]
# MagnitudePruningModifier matches modules by name and takes no ignore list; "Linear" would
# include lm_head (tied to the embeddings), so name the decoder layers' projections instead.
MAGNITUDE_PARAMS = ["re:.*layers\\.\\d+\\..*_proj$"]


@dataclass(frozen=True)
class Method:
    """A compression method: how to build its recipe and whether it reads calibration data."""

    build: Callable[[CompressionSpec], list[Any]]
    needs_calibration: bool = True


METHODS: Registry[Method] = Registry("compression method")


def build_recipe(spec: CompressionSpec) -> list[Any]:
    """The llm-compressor modifiers implementing ``spec`` (resolved: group size filled in)."""
    if spec.is_quantization and spec.group_size is None:
        raise ValueError("group_size: resolve the spec against the model first (CompressionSpec.resolved)")
    return METHODS.get(spec.method).build(spec)


def needs_calibration(spec: CompressionSpec) -> bool:
    return not spec.is_dense and METHODS.get(spec.method).needs_calibration


def _weight_scheme(spec: CompressionSpec) -> dict[str, Any]:
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = QuantizationArgs(
        num_bits=spec.bits,
        type="int",
        symmetric=True,
        strategy="group",
        group_size=spec.group_size,
    )
    return {"group_0": QuantizationScheme(targets=LINEAR_TARGETS, weights=weights)}


def _mask_structure(spec: CompressionSpec) -> tuple[float, str]:
    """(sparsity, llm-compressor mask_structure) for a pruning spec."""
    if spec.structure is None:
        return float(spec.sparsity), "0:0"
    n, m = parse_structure(spec.structure)
    return 1 - n / m, f"{m - n}:{m}"


def _gptq(spec: CompressionSpec) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier

    return [
        GPTQModifier(
            config_groups=_weight_scheme(spec),
            ignore=IGNORE,
            actorder="group" if spec.act_order else None,
        )
    ]


def _awq(spec: CompressionSpec) -> list[Any]:
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    return [AWQModifier(), QuantizationModifier(config_groups=_weight_scheme(spec), ignore=IGNORE)]


def _sparsegpt(spec: CompressionSpec) -> list[Any]:
    from llmcompressor.modifiers.pruning import SparseGPTModifier

    sparsity, structure = _mask_structure(spec)
    return [SparseGPTModifier(sparsity=sparsity, mask_structure=structure, targets=LINEAR_TARGETS, ignore=IGNORE)]


def _wanda(spec: CompressionSpec) -> list[Any]:
    from llmcompressor.modifiers.pruning import WandaPruningModifier

    sparsity, structure = _mask_structure(spec)
    return [WandaPruningModifier(sparsity=sparsity, mask_structure=structure, targets=LINEAR_TARGETS, ignore=IGNORE)]


def _magnitude(spec: CompressionSpec) -> list[Any]:
    from trustray.compress._magnitude import oneshot_magnitude_modifier

    sparsity = spec.target_sparsity
    assert sparsity is not None
    structure = "unstructured" if spec.structure is None else spec.structure
    return [oneshot_magnitude_modifier(sparsity=sparsity, mask_structure=structure, targets=MAGNITUDE_PARAMS)]


METHODS.add("gptq", Method(_gptq))
METHODS.add("awq", Method(_awq))
METHODS.add("sparsegpt", Method(_sparsegpt))
METHODS.add("wanda", Method(_wanda))
METHODS.add("magnitude", Method(_magnitude, needs_calibration=False))


@contextmanager
def cpu_workarounds() -> Iterator[None]:
    """Work around llm-compressor 0.14 pinning memory on machines without an accelerator.

    AWQ pins its cached activations for faster host-to-device copies; without an accelerator
    ``Tensor.pin_memory`` raises. Pinning changes no values, so it is skipped there.
    """
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield
        return
    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        IntermediatesCache.pin_memory = original  # type: ignore[method-assign]
