"""Honest sizes: the precision a config is served at and the bytes its weights need there.

Read from the base checkpoint's safetensors headers (tensor shapes only, no weights loaded).
Quantised methods store the decoder's Linear weights at ``bits`` per weight plus one 16-bit
scale per group (symmetric: no zero points); everything else (embeddings, norms, the output
head, which the recipes leave alone) stays at the served dtype. Pruned models are served dense,
so their weights need the dense bytes; the saving shows in the size on disk instead.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from trustray.compress.spec import CompressionSpec

DTYPE_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}
SHORT_DTYPE: dict[str, str] = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
SCALE_BYTES = 2


def tensor_shapes(checkpoint: str | Path) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor in the checkpoint's ``*.safetensors`` files."""
    shapes: dict[str, tuple[int, ...]] = {}
    for f in sorted(Path(checkpoint).glob("*.safetensors")):
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                shapes[name] = tuple(meta["shape"])
    if not shapes:
        raise ValueError(f"no safetensors weights in {checkpoint}")
    return shapes


def is_quantised_weight(name: str, shape: tuple[int, ...]) -> bool:
    """A decoder-layer Linear weight (what the GPTQ/AWQ recipes quantise)."""
    return len(shape) == 2 and ".layers." in name and name.endswith("proj.weight")


def precision_label(spec: CompressionSpec, served_dtype: str) -> str:
    """``W4A16`` for weight-only quantisation, ``bf16`` dense, ``bf16 2:4-sparse`` pruned."""
    short = SHORT_DTYPE.get(served_dtype, served_dtype)
    if spec.is_quantization:
        return f"W{spec.bits}A{8 * DTYPE_BYTES.get(served_dtype, 2)}"
    if spec.is_pruning:
        return f"{short} {spec.structure}-sparse" if spec.structure else f"{short} {spec.target_sparsity:.0%}-sparse"
    return short


def weight_bytes(base_checkpoint: str | Path, spec: CompressionSpec, served_dtype: str) -> int:
    """Bytes of all weights at the served precision (tied embeddings counted once)."""
    per = DTYPE_BYTES.get(served_dtype, 2)
    total = 0.0
    for name, shape in tensor_shapes(base_checkpoint).items():
        n = math.prod(shape)
        if spec.is_quantization and is_quantised_weight(name, shape):
            group = spec.group_size or shape[1]
            total += n * (spec.bits or 16) / 8 + math.ceil(n / group) * SCALE_BYTES
        else:
            total += n * per
    return int(math.ceil(total))
