"""Useful-FLOP accounting for the model-FLOP utilisation figure."""

from __future__ import annotations

import pytest

from trustray.engines.flops import ModelShape


def test_request_flops_count_dense_head_and_causal_attention():
    shape = ModelShape(layers=2, hidden=8, heads=2, head_dim=4, vocab=10, layer_params=100)
    # a 3-token prompt: 3 dense tokens, one LM head row, attention over 1 + 2 + 3 keys
    assert shape.request_flops(3, []) == 2 * 100 * 3 + 2 * 10 * 8 + 4 * 2 * 2 * 4 * 6
    # two samples of 1 and 2 tokens: each token its dense pass, head row and keys after the prompt
    one = 2 * 100 + 2 * 10 * 8
    extra = 1 * one + 4 * 2 * 2 * 4 * 4 + 2 * one + 4 * 2 * 2 * 4 * (4 + 5)
    assert shape.request_flops(3, [1, 2]) == pytest.approx(shape.request_flops(3, []) + extra)


def test_shape_of_a_transformers_model(tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    shape = ModelShape.of(model)
    # per layer: q, o (16×16), k, v (8×16), gate, up, down (32×16)
    assert shape.layer_params == 2 * (2 * 16 * 16 + 2 * 8 * 16 + 3 * 32 * 16)
    assert (shape.layers, shape.heads, shape.head_dim, shape.vocab) == (2, 2, 8, 64)
