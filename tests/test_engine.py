"""HFEngine on the embedded model: determinism, seeded sampling, n, stop strings, bad input."""

from __future__ import annotations

import pytest
import torch

from trustray.engines.hf import EngineOptions, HFEngine
from trustray.generation import GenerationRequest, Message, SamplingParams

pytestmark = pytest.mark.slow

QUESTIONS = [
    "Name three colors.",
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Why is the sky blue? Answer in detail, please, with an example.",
]


def chat(i: int, q: str, **sampling) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"q{i}", messages=(Message("user", q),), seed=1000 + i,
        sampling=SamplingParams(**{"max_tokens": 24, **sampling}),
    )


@pytest.fixture(scope="module")
def engine(embedded_model) -> HFEngine:
    return HFEngine(embedded_model, EngineOptions(batch_size=4))


def test_greedy_is_identical_across_batch_compositions(engine):
    reqs = [chat(i, q) for i, q in enumerate(QUESTIONS)]
    together = engine.generate(reqs)
    alone = [engine.generate([r])[0] for r in reqs[:2]]
    shuffled = engine.generate([reqs[3], reqs[1], reqs[0]])
    assert [g.request_id for g in together] == ["q0", "q1", "q2", "q3"]  # request order
    assert together[0].texts == alone[0].texts and together[1].texts == alone[1].texts
    assert together[0].texts == shuffled[2].texts and together[3].texts == shuffled[0].texts
    assert "Paris" in together[1].texts[0]


def test_seeded_sampling_is_reproducible_and_n_gives_distinct_samples(engine):
    req = chat(7, QUESTIONS[2], temperature=1.0, n=3)
    first = engine.generate([req])[0]
    second = engine.generate([chat(0, QUESTIONS[0]), req])[1]  # other company, same seed
    assert len(first.texts) == 3 and len(set(first.texts)) == 3
    assert first.texts == second.texts
    other_seed = GenerationRequest(request_id="x", messages=req.messages, seed=req.seed + 1, sampling=req.sampling)
    assert engine.generate([other_seed])[0].texts != first.texts


def test_stop_strings_cut_the_output(engine):
    full = engine.generate([chat(0, "Count from 1 to 10, separated by commas.")])[0].texts[0]
    assert "3" in full, full
    stopped = engine.generate([chat(0, "Count from 1 to 10, separated by commas.", stop=("3",))])[0]
    assert stopped.texts[0] == full[: full.index("3")]
    assert stopped.finish_reasons == ("stop",)


def test_max_tokens_and_raw_prompts(engine):
    out = engine.generate([GenerationRequest(request_id="raw", prompt="The capital of France is",
                                             sampling=SamplingParams(max_tokens=5))])[0]
    assert out.output_tokens[0] <= 5 and out.finish_reasons in (("length",), ("stop",))
    assert out.prompt_tokens == len(engine.tokenizer("The capital of France is")["input_ids"])


def test_matches_plain_generate_in_fp32(embedded_model):
    """The engine's own decode loop and kernels give exactly what stock transformers' generate gives."""
    eng = HFEngine(embedded_model, EngineOptions(dtype="float32", batch_size=1))
    req = chat(0, QUESTIONS[3], max_tokens=20)
    ids = torch.tensor([eng.encode(req)])
    eng.model.set_attn_implementation("sdpa")
    with torch.inference_mode():
        ref = eng.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False)
    eng.model.set_attn_implementation("sdpa_gqa")
    expected = eng.tokenizer.decode(ref[0, ids.shape[1]:], skip_special_tokens=True)
    assert eng.generate([req])[0].texts[0] == expected


class PaddedPrefill(HFEngine):
    """The fallback path (models whose cache rows cannot be stacked): each decode batch prefills
    its rows together, left-padded to the bucket."""

    def _cache_kind(self) -> str:
        return "dynamic"


@pytest.mark.parametrize("solo", [1, 1 << 20])  # every prompt alone / every prompt in padded passes
@pytest.mark.parametrize("ns", [(1, 1, 1, 1), (1, 1, 1, 3, 2)])
def test_stacked_prefills_match_padded_batch_prefill_in_fp32(embedded_model, ns, solo):
    """Prefilling prompts alone or in padded passes and stacking their caches into decode batches
    (zeroed, masked padding in front) gives what prefilling each decode batch gives, greedy or
    sampled, n > 1 included."""
    reqs = [
        chat(i, QUESTIONS[i % 4], n=n, **({"temperature": 0.9, "top_p": 0.95} if n > 1 else {}))
        for i, n in enumerate(ns)
    ]
    stacked = HFEngine(embedded_model, EngineOptions(dtype="float32", batch_size=4, solo_prefill_tokens=solo))
    padded = PaddedPrefill(embedded_model, EngineOptions(dtype="float32", batch_size=4))
    assert stacked._stackable and not padded._stackable
    assert "prefill-solo" in stacked.version and "prefill-padded" in padded.version
    assert [g.texts for g in stacked.generate(reqs)] == [g.texts for g in padded.generate(reqs)]


@pytest.mark.parametrize("solo", [1, 1 << 20])
def test_a_prompt_is_prefilled_once_for_all_its_samples(embedded_model, monkeypatch, solo):
    engine = HFEngine(embedded_model, EngineOptions(batch_size=4, solo_prefill_tokens=solo))
    prompts: list[int] = []
    alone, padded = HFEngine._prefill_prompt, HFEngine._prefill_padded
    monkeypatch.setattr(HFEngine, "_prefill_prompt", lambda self, ids: prompts.append(1) or alone(self, ids))
    monkeypatch.setattr(HFEngine, "_prefill_padded",
                        lambda self, p, *a: prompts.extend([1] * len(p)) or padded(self, p, *a))
    # 6 samples of one prompt span two decode batches of 4, then 5 more prompts
    reqs = [chat(0, QUESTIONS[0], n=6, temperature=0.9)] + [chat(i, QUESTIONS[i % 4]) for i in range(1, 6)]
    gens = engine.generate(reqs)
    assert [len(g.texts) for g in gens] == [6, 1, 1, 1, 1, 1]
    assert len(prompts) == len(reqs)


def test_bad_input_is_rejected(engine):
    with pytest.raises(ValueError, match="exceeds the model's context"):
        engine.generate([GenerationRequest(request_id="long", prompt="word " * 9000)])
    with pytest.raises(ValueError, match="exactly one of messages or prompt"):
        GenerationRequest(request_id="both", prompt="x", messages=(Message("user", "x"),))
    for bad in ({"temperature": -1}, {"top_p": 0}, {"max_tokens": 0}, {"n": 0}, {"n": 2}):
        with pytest.raises(ValueError):
            SamplingParams(**bad)
    with pytest.raises(ValueError, match="solo_prefill_tokens must be >= 1"):
        EngineOptions(solo_prefill_tokens=0)


@pytest.mark.parametrize("solo", [1, 1 << 20])
def test_continuous_batching_gives_each_row_what_it_gets_alone(embedded_model, monkeypatch, solo):
    """Two decode slots, many rows of uneven length: finished rows hand their slot to the next row
    at once, yet every request (greedy or sampled, bf16) gets exactly what it gets alone, and the
    passes carry no finished rows (far fewer passes than fixed batches would run)."""
    engine = HFEngine(embedded_model, EngineOptions(dtype="bfloat16", batch_size=2, solo_prefill_tokens=solo))
    long_q = "Describe, step by step and with examples, how bread is made, from flour to a baked loaf."
    reqs = [chat(i, q, max_tokens=32 - 12 * (i % 3 == 2), **({"temperature": 1.0, "top_k": 50, "n": 3} if i % 2 else {}))
            for i, q in enumerate(QUESTIONS + ["Say yes.", "Count to three.", long_q * 2])]
    shapes = {(engine.options.bucket_length(len(engine.encode(r))), r.sampling.max_tokens) for r in reqs}
    caches = {engine.options.decode_capacity(*shape) for shape in shapes}
    assert len(caches) < len(shapes)  # rows of different buckets and budgets share a decode cache
    alone = [engine.generate([r])[0].texts for r in reqs]
    passes: list[int] = []
    forward = engine.model.forward
    monkeypatch.setattr(engine.model, "forward", lambda *a, **k: passes.append(1) or forward(*a, **k))
    together = engine.generate(reqs[::-1])[::-1]
    assert [g.texts for g in together] == alone
    rows = [n for g in together for n in g.output_tokens]
    assert len(rows) == 13 and max(rows) > 2 * min(rows)  # uneven rows: slots are refilled mid-bucket
    fixed_batches = sum(max(rows[k : k + 2]) for k in range(0, len(rows), 2))  # fixed pairs, a lower bound
    assert len(passes) - len(reqs) < fixed_batches  # decode passes (prefill passes excluded)


def test_decode_caches_are_carved_from_one_arena_and_stale_rows_never_leak(embedded_model):
    """A long first call fills the engine's KV arena; later calls reuse its memory (no new
    buffers) and still give exactly what a fresh engine gives, sampled rows included."""
    opts = EngineOptions(dtype="bfloat16", batch_size=4)
    used = HFEngine(embedded_model, opts)
    long_q = "Describe, step by step and with examples, how bread is made, from flour to a baked loaf."
    used.generate([chat(i, long_q * 2, max_tokens=40) for i in range(6)])  # a big decode cache, stale rows
    buffers = [(k.data_ptr(), v.data_ptr()) for k, v in used._kv_arena._buffers.values()]
    size = used._kv_arena.nbytes
    assert size > 0
    reqs = [chat(i, q, **({"temperature": 1.0, "n": 2} if i % 2 else {})) for i, q in enumerate(QUESTIONS)]
    again = used.generate(reqs)
    assert [(k.data_ptr(), v.data_ptr()) for k, v in used._kv_arena._buffers.values()] == buffers
    assert used._kv_arena.nbytes == size
    fresh = HFEngine(embedded_model, opts).generate(reqs)
    assert [g.texts for g in again] == [g.texts for g in fresh]


def test_decode_capacity_rounds_prompt_plus_budget_up_coarsely():
    opts = EngineOptions()
    assert opts.decode_capacity(32, 24) == 64 and opts.decode_capacity(64, 64) == 128
    assert opts.decode_capacity(96, 64) == 192  # multiples of 64 up to 255
    assert opts.decode_capacity(288, 20) == 384  # then half the power of two below
    assert opts.decode_capacity(4096, 20) == 6144
    assert all(opts.decode_capacity(n, m) >= n + m for n in range(32, 5000, 97) for m in (1, 20, 64, 150))


def test_padded_prefills_are_sized_by_prompt_tokens_and_decode_by_cache_positions(embedded_model):
    """A short bucket is prefilled ``prefill_batch_tokens // L`` prompts at a time (so a bucket of
    a few prompts pays for at most that many filler tokens), a decode cache holds
    ``max_batch_tokens // C`` rows; both within ``batch_size``."""
    engine = HFEngine(embedded_model, EngineOptions(batch_size=64, prefill_batch_tokens=1024,
                                                    max_batch_tokens=32768))
    assert [engine.prefill_width(n) for n in (32, 64, 128, 224)] == [32, 16, 8, 4]
    assert [engine.width(c) for c in (192, 384, 3072)] == [64, 64, 10]
    assert "-p1024/" in engine.version and "slots-d32768" in engine.version
    with pytest.raises(ValueError, match="prefill_batch_tokens must be >= 1"):
        EngineOptions(prefill_batch_tokens=0)
