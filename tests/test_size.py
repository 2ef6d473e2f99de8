"""Served precision labels and the bytes weights need at that precision, from safetensors headers."""

from __future__ import annotations

import math

import pytest

from trustray.compress.size import precision_label, tensor_shapes, weight_bytes
from trustray.config import CompressionSpec

DENSE = CompressionSpec(method="none")
W4 = CompressionSpec(method="gptq", bits=4, group_size=16)
PRUNED = CompressionSpec(method="wanda", structure="2:4")


def test_precision_labels():
    assert precision_label(DENSE, "bfloat16") == "bf16"
    assert precision_label(DENSE, "float32") == "fp32"
    assert precision_label(W4, "bfloat16") == "W4A16"
    assert precision_label(CompressionSpec(method="awq", bits=8, group_size=64), "float16") == "W8A16"
    assert precision_label(PRUNED, "bfloat16") == "bf16 2:4-sparse"
    assert precision_label(CompressionSpec(method="magnitude", sparsity=0.5), "bfloat16") == "bf16 50%-sparse"


def test_weight_bytes_count_packed_weights_and_group_scales(tiny_checkpoint):
    shapes = tensor_shapes(tiny_checkpoint)
    assert any(".layers." in n and n.endswith("proj.weight") for n in shapes)
    numel = {n: math.prod(s) for n, s in shapes.items()}
    proj = sum(v for n, v in numel.items() if ".layers." in n and n.endswith("proj.weight"))
    rest = sum(numel.values()) - proj
    assert weight_bytes(tiny_checkpoint, DENSE, "bfloat16") == 2 * sum(numel.values())
    assert weight_bytes(tiny_checkpoint, DENSE, "float32") == 4 * sum(numel.values())
    assert weight_bytes(tiny_checkpoint, W4, "bfloat16") == pytest.approx(proj / 2 + 2 * proj / 16 + 2 * rest, abs=1)
    assert weight_bytes(tiny_checkpoint, PRUNED, "bfloat16") == 2 * sum(numel.values())  # served dense


def test_no_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no safetensors weights"):
        tensor_shapes(tmp_path)
