"""HFEngine vs plain ``model.generate`` on the same inputs, same run: tokens/s and their ratio.

    python bench/engine_throughput.py [--batch-sizes 64,128] [--new-tokens 64] [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import time

import torch

from trustray.engines.hf import EngineOptions, HFEngine
from trustray.generation import GenerationRequest, Message, SamplingParams

TOPICS = ["the sea", "a city at night", "trees", "a robot", "music", "winter", "a library", "the moon"]


def requests(n: int, new_tokens: int) -> list[GenerationRequest]:
    return [
        GenerationRequest(request_id=str(i), messages=(Message("user", f"Write a short story about {TOPICS[i % 8]} ({i})."),),
                          sampling=SamplingParams(max_tokens=new_tokens))
        for i in range(n)
    ]


def plain_generate(engine: HFEngine, reqs: list[GenerationRequest], new_tokens: int) -> tuple[int, float]:
    tok = engine.tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    texts = [engine.render(r) for r in reqs]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    engine_attention = engine.model.config._attn_implementation
    engine.model.set_attn_implementation("sdpa")  # stock transformers, as a user would load it
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            out = engine.model.generate(**batch, max_new_tokens=new_tokens, do_sample=False,
                                        pad_token_id=engine.pad_id)
        seconds = time.perf_counter() - start
    finally:
        engine.model.set_attn_implementation(engine_attention)
    gen = out[:, batch["input_ids"].shape[1]:]
    produced = int(sum(((row != engine.pad_id).cumprod(0)).sum() for row in gen))
    return produced, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch-sizes", default="64,128")
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args()
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        engine = HFEngine(args.model, EngineOptions(batch_size=b, max_batch_tokens=1 << 20))
        reqs = requests(b, args.new_tokens)
        engine.generate(reqs[:2])  # warm-up
        start = time.perf_counter()
        gens = engine.generate(reqs)
        e_seconds = time.perf_counter() - start
        e_tokens = sum(sum(g.output_tokens) for g in gens)
        p_tokens, p_seconds = plain_generate(engine, reqs, args.new_tokens)
        e_rate, p_rate = e_tokens / e_seconds, p_tokens / p_seconds
        print(f"batch {b:4d} ({engine.dtype}, {torch.get_num_threads()} threads): HFEngine {e_rate:7.1f} tok/s "
              f"({e_tokens} tokens), model.generate {p_rate:7.1f} tok/s ({p_tokens} tokens), "
              f"ratio {e_rate / p_rate:.3f}")


if __name__ == "__main__":
    main()
