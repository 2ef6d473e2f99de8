"""The engine's kernels give the numbers of stock transformers: prefill exactly, decode up to float rounding."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from trustray.engines.hf import EngineOptions, HFEngine
from trustray.generation import GenerationRequest, Message, SamplingParams
from trustray.engines.kernels import (
    PreallocatedLayer, busy_ranges, grouped_decode_attention, preallocated_cache, sdpa_gqa_attention,
)

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
def test_gqa_attention_and_preallocated_cache_match_stock(embedded_model, dtype):
    """Prefill: bit-for-bit stock. Decode steps run the grouped decode kernel: the same greedy
    tokens, logits equal up to float rounding (its dot products are blocked differently)."""
    engine = HFEngine(embedded_model, EngineOptions(dtype=dtype, batch_size=4))
    assert engine.model.config._attn_implementation == "sdpa_gqa"
    assert "/sdpa_gqa+decode-grouped/" in engine.version
    layers = engine.model.config.num_hidden_layers
    stock = decode_logits(engine, "sdpa", DynamicCache())
    # capacity 8 is below prompt + 5 steps, so the growth path runs too
    ours = decode_logits(engine, "sdpa_gqa", preallocated_cache(layers, 8))
    assert torch.equal(stock[0], ours[0])
    for a, b in zip(stock[1:], ours[1:], strict=True):
        assert torch.equal(a[:, -1].argmax(-1), b[:, -1].argmax(-1))
        tol = 1e-4 if dtype == "float32" else 0.05 * float(a.float().abs().max())
        assert float((a.float() - b.float()).abs().max()) <= tol


@pytest.mark.parametrize(("slots", "capacity"), [(1, 7), (5, 192), (20, 384)])
def test_grouped_decode_attention_is_grouped_query_sdpa(slots, capacity):
    """One query position per row: the grouped kernel is SDPA with ``enable_gqa`` up to float
    rounding (fp32), masks included, and a row's numbers do not depend on the other rows (one
    thread: multi-threaded fp32 SDPA blocks rows by batch size, stock ``enable_gqa`` too; bf16,
    the engine's dtype, is row-independent at any thread count, see the busy-slots test)."""
    torch.manual_seed(slots)
    q = torch.randn(slots, 9, 1, 64)
    k, v = torch.randn(slots, 3, capacity, 64), torch.randn(slots, 3, capacity, 64)
    mask = torch.rand(slots, 1, 1, capacity) < 0.7
    mask[..., -1] = True  # a row always attends to the position it writes
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours = grouped_decode_attention(q, k, v, mask, 0.125)
        stock = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.125, enable_gqa=True)
        alone = torch.cat([grouped_decode_attention(q[i : i + 1], k[i : i + 1], v[i : i + 1], mask[i : i + 1], 0.125)
                           for i in range(slots)])
    finally:
        torch.set_num_threads(previous)
    assert ours.shape == stock.shape
    assert torch.allclose(ours, stock, atol=1e-5, rtol=0)
    assert torch.equal(alone, ours)


def test_preallocated_layer_equals_concatenation():
    layer = PreallocatedLayer(capacity=3)
    chunks = [torch.randn(2, 3, n, 4) for n in (2, 1, 4, 1)]
    for i, chunk in enumerate(chunks):
        keys, values = layer.update(chunk, -chunk)
        expected = torch.cat(chunks[: i + 1], dim=2)
        assert torch.equal(keys, expected) and torch.equal(values, -expected)
        assert layer.get_seq_length() == expected.shape[2]


def test_busy_ranges_are_the_maximal_runs_of_busy_slots():
    assert busy_ranges([]) == ()
    assert busy_ranges([False, False]) == ()
    assert busy_ranges([True, True, False, True, False, False, True, True]) == ((0, 2), (3, 4), (6, 8))


@pytest.mark.parametrize("threads", [1, 2])
def test_attention_over_busy_slots_gives_busy_rows_their_exact_numbers(threads):
    """Decode attention restricted to busy slot ranges: each busy row bit-for-bit what SDPA over
    all slots gives it (bf16, grouped-query heads, uneven masks), idle rows zero."""
    torch.manual_seed(0)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        slots, capacity = 12, 384
        q = torch.randn(slots, 9, 1, 64).bfloat16()
        k, v = torch.randn(slots, 3, capacity, 64).bfloat16(), torch.randn(slots, 3, capacity, 64).bfloat16()
        mask = torch.zeros(slots, 1, 1, capacity, dtype=torch.bool)
        for i in range(slots):
            mask[i, 0, 0, 17 * i : 200 + 13 * i] = True
        module = torch.nn.Linear(1, 1)
        full, _ = sdpa_gqa_attention(module, q, k, v, mask, scaling=0.125)
        busy = [i % 5 != 1 for i in range(slots)]
        part, _ = sdpa_gqa_attention(module, q, k, v, mask, scaling=0.125, busy_slots=busy_ranges(busy))
    finally:
        torch.set_num_threads(previous)
    assert part.shape == full.shape
    for i, b in enumerate(busy):
        assert torch.equal(part[i], full[i]) if b else not part[i].any()


def test_decode_attends_over_busy_slots_only_and_outputs_do_not_change(embedded_model, monkeypatch):
    """More decode slots than rows, rows finishing unevenly: the engine hands attention only the
    busy slots, and every request (greedy or sampled, bf16) gets what it gets when every slot
    is attended."""
    engine = HFEngine(embedded_model, EngineOptions(dtype="bfloat16", batch_size=8))
    reqs = [
        GenerationRequest(
            request_id=f"r{i}", messages=(Message("user", q),), seed=7 + i,
            sampling=SamplingParams(max_tokens=12 + 6 * i, **({"temperature": 1.0, "n": 2} if i % 2 else {})),
        )
        for i, q in enumerate(["Name three colors.", "Say yes.", "Why is the sky blue? Explain."])
    ]
    seen: list[dict[str, object]] = []
    busy_kwargs = engine._busy_kwargs
    monkeypatch.setattr(engine, "_busy_kwargs", lambda slots: seen.append(busy_kwargs(slots)) or seen[-1])
    restricted = [g.texts for g in engine.generate(reqs)]
    assert seen and all(sum(e - s for s, e in kw["busy_slots"]) < 8 for kw in seen)  # idle slots never attended
    monkeypatch.setattr(engine, "_busy_kwargs", lambda slots: {})
    assert [g.texts for g in engine.generate(reqs)] == restricted
