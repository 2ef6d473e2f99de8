"""The engine's decode kernels give exactly the numbers of stock transformers."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from trustray.engines.hf import EngineOptions, HFEngine
from trustray.engines.kernels import PreallocatedLayer, preallocated_cache

pytestmark = pytest.mark.slow

PROMPTS = ["Hello there, how are you today my friend?", "Hi", "The capital of France is a city called"]


def decode_logits(engine: HFEngine, attention: str, cache) -> list[torch.Tensor]:
    """Logits of a left-padded prefill and five greedy decode steps."""
    tok = engine.tokenizer
    tok.padding_side, tok.pad_token = "left", tok.eos_token
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    engine.model.set_attn_implementation(attention)
    with torch.inference_mode():
        mask = batch["attention_mask"]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = engine.model(**batch, position_ids=pos, past_key_values=cache, use_cache=True)
        logits = [out.logits]
        for _ in range(5):
            nxt = out.logits[:, -1].argmax(-1)
            mask = torch.cat([mask, mask.new_ones(len(PROMPTS), 1)], 1)
            pos = pos[:, -1:] + 1
            out = engine.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos,
                               past_key_values=cache, use_cache=True)
            logits.append(out.logits)
    return logits


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_gqa_attention_and_preallocated_cache_match_stock_exactly(embedded_model, dtype):
    engine = HFEngine(embedded_model, EngineOptions(dtype=dtype, batch_size=4))
    assert engine.model.config._attn_implementation == "sdpa_gqa"
    layers = engine.model.config.num_hidden_layers
    stock = decode_logits(engine, "sdpa", DynamicCache())
    # capacity 8 is below prompt + 5 steps, so the growth path runs too
    ours = decode_logits(engine, "sdpa_gqa", preallocated_cache(layers, 8))
    assert all(torch.equal(a, b) for a, b in zip(stock, ours, strict=True))


def test_preallocated_layer_equals_concatenation():
    layer = PreallocatedLayer(capacity=3)
    chunks = [torch.randn(2, 3, n, 4) for n in (2, 1, 4, 1)]
    for i, chunk in enumerate(chunks):
        keys, values = layer.update(chunk, -chunk)
        expected = torch.cat(chunks[: i + 1], dim=2)
        assert torch.equal(keys, expected) and torch.equal(values, -expected)
        assert layer.get_seq_length() == expected.shape[2]
