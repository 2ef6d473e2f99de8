"""Shared-prefix reuse in HFEngine: block-wise prefill, the prefix store, exactness in fp32."""

from __future__ import annotations

import pytest
import torch

from trustray.engines.prefix import PrefixStore, block_bounds, block_keys
from trustray.generation import GenerationRequest, Message, SamplingParams

DEMOS = " ".join(f"Q: What is {i} plus {i + 3}? A: {2 * i + 3}." for i in range(40))
QUESTIONS = [f"{DEMOS}\nQ: What is {k} times 7? A:" for k in (3, 4, 5)]


def test_block_bounds_leave_the_last_token_to_compute():
    assert block_bounds(10, 4) == [4, 8]
    assert block_bounds(8, 4) == [4]  # the block holding token 8 is computed for its logits
    assert block_bounds(4, 4) == []


def test_block_bounds_widen_to_four_blocks():
    # blocks as long as the prefix before them, up to 4 blocks: few wide passes for a long prompt
    assert block_bounds(2200, 128) == [128, 256, 512, 1024, 1536, 2048]
    assert block_bounds(40, 4) == [4, 8, 16, 32]


def test_block_keys_depend_on_the_whole_prefix():
    a, b = list(range(12)), list(range(12))
    b[1] = 99
    assert block_keys(a, [4, 8]) == block_keys(a + [5, 6], [4, 8])
    assert not set(block_keys(a, [4, 8])) & set(block_keys(b, [4, 8]))


def _layers(positions: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    t = torch.arange(positions, dtype=torch.float32).reshape(1, 1, positions, 1)
    return [(t, t + 1), (t * 2, t * 3)]


def test_prefix_store_finds_the_longest_block_prefix_and_evicts_least_recent():
    store = PrefixStore(max_bytes=3 * _bytes(10))
    prompt = list(range(10))
    bounds = block_bounds(10, 4)
    store.add(block_keys(prompt, bounds), bounds, _layers(10))
    longer = prompt[:8] + [77, 78, 79, 80, 81]
    n, layers = store.lookup(block_keys(longer, block_bounds(13, 4)), block_bounds(13, 4))
    assert n == 8 and store.hit_tokens == 8
    assert [k.shape[-2] for k, _ in layers] == [8, 8] and torch.equal(layers[1][1][0, 0, :, 0], torch.arange(8.0) * 3)
    other = [5] + prompt[1:]
    assert store.lookup(block_keys(other, bounds), bounds) == (0, [])
    for p in range(3):  # three more entries of the same size push the first one out
        fresh = [100 + p] * 10
        store.add(block_keys(fresh, bounds), bounds, _layers(10))
    assert len(store) == 3 and store.lookup(block_keys(prompt, bounds), bounds) == (0, [])


def _bytes(positions: int) -> int:
    return sum(k.nbytes + v.nbytes for k, v in _layers(positions))


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory, embedded_model):
    """A tiny random Llama with the embedded model's tokenizer and chat template (fast to run)."""
    import json
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    base = json.loads((embedded_model.path / "config.json").read_text())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=base["vocab_size"], hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=base.get("bos_token_id"), eos_token_id=base.get("eos_token_id"),
                      tie_word_embeddings=True)
    path = tmp_path_factory.mktemp("tiny-chat") / "model"
    LlamaForCausalLM(cfg).save_pretrained(path)
    for f in embedded_model.path.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "generation_config")):
            shutil.copy(f, path / f.name)
    return path


def test_tiny_model_prefix_reuse_is_exact_and_independent_of_what_came_first(tiny_chat_model):
    from trustray.engines.hf import EngineOptions, HFEngine

    def engine(**kw):
        return HFEngine(tiny_chat_model, EngineOptions(dtype="float32", batch_size=4, prefix_block=64, **kw))

    on, off, fresh = engine(), engine(prefix_reuse=False), engine()
    reqs = [_req(i, q) for i, q in enumerate(QUESTIONS)]
    reqs += [_req(10 + i, q, temperature=1.0, top_p=0.95, n=2) for i, q in enumerate(QUESTIONS[:2])]
    assert [g.texts for g in on.generate(reqs)] == [g.texts for g in off.generate(reqs)]
    assert on.prefix_store.hit_tokens >= (len(QUESTIONS) - 1) * 4 * 64
    ids = on.encode(reqs[2])
    warm, cold = on._prefill_prompt(ids), fresh._prefill_prompt(ids)
    assert fresh.prefix_store.hit_tokens == 0
    assert torch.equal(warm.logits, cold.logits)
    assert all(torch.equal(a.keys, b.keys) for a, b in zip(warm.cache.layers, cold.cache.layers, strict=True))
    # alone on a fresh engine or behind its neighbours: the same texts
    assert fresh.generate([reqs[4]])[0].texts == on.generate(reqs)[4].texts


@pytest.fixture(scope="module")
def engines(embedded_model):
    from trustray.engines.hf import EngineOptions, HFEngine

    on = HFEngine(embedded_model, EngineOptions(dtype="float32", batch_size=4))
    off = HFEngine(embedded_model, EngineOptions(dtype="float32", batch_size=4, prefix_reuse=False))
    return on, off


def _req(i: int, text: str, **sampling) -> GenerationRequest:
    return GenerationRequest(request_id=f"p{i}", messages=(Message("user", text),), seed=50 + i,
                             sampling=SamplingParams(**{"max_tokens": 16, **sampling}))


@pytest.mark.slow
def test_prefix_reuse_matches_the_no_reuse_path_in_fp32_greedy_and_sampled(engines):
    on, off = engines
    assert "/prefix128" in on.version and "/prefix" not in off.version
    reqs = [_req(i, q) for i, q in enumerate(QUESTIONS)]
    reqs += [_req(10 + i, q, temperature=1.0, top_p=0.95, n=2) for i, q in enumerate(QUESTIONS[:2])]
    assert len(on.encode(reqs[0])) > 3 * 128
    before = on.prefix_store.hit_tokens
    reused = on.generate(reqs)
    assert on.prefix_store.hit_tokens - before >= (len(reqs) - 1) * 3 * 128  # all but the first reused
    assert [g.texts for g in reused] == [g.texts for g in off.generate(reqs)]


@pytest.mark.slow
def test_a_prompt_prefills_the_same_numbers_with_or_without_a_stored_prefix(embedded_model, engines):
    from trustray.engines.hf import EngineOptions, HFEngine

    on, _ = engines
    on.generate([_req(0, QUESTIONS[0], max_tokens=1)])  # the shared blocks are now stored
    fresh = HFEngine(embedded_model, EngineOptions(dtype="float32", batch_size=4))
    ids = on.encode(_req(2, QUESTIONS[2]))
    hits = on.prefix_store.hit_tokens
    warm, cold = on._prefill_prompt(ids), fresh._prefill_prompt(ids)
    assert on.prefix_store.hit_tokens > hits and fresh.prefix_store.hit_tokens == 0
    assert torch.equal(warm.logits, cold.logits)
    assert all(torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
               for a, b in zip(warm.cache.layers, cold.cache.layers, strict=True))
