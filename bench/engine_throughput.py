"""HFEngine vs plain ``model.generate`` on the same inputs, same run: tokens/s and their ratio.
With ``--backend vllm``, first the vLLM app (``ray.serve.llm`` under ``.venv-vllm`` on a local
CPU-only Ray, reached over HTTP as the evaluators reach it) on the same prompts, all in flight.

    python bench/engine_throughput.py [--batch-sizes 64,128] [--new-tokens 64] [--model smollm2-135m]
    python bench/engine_throughput.py --backend vllm [--vllm-cpus 2]
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


def vllm_rates(model: str, sizes: list[int], new_tokens: int, cpus: float) -> dict[int, float]:
    """tok/s of the vLLM app per batch size: every request in flight at once, greedy."""
    import asyncio

    import ray
    from ray import serve

    from trustray.serve import ServeApp, ServingOptions, deploy_model_app, model_handle
    from trustray.sweep import start_serve

    ray.init(address="local", num_cpus=max(1, int(cpus + 0.999)), include_dashboard=False, log_to_driver=False)
    out: dict[int, float] = {}
    try:
        start_serve(http=True)
        t0 = time.perf_counter()
        info = deploy_model_app(model, app=ServeApp("bench", "/bench"), backend="vllm", num_cpus=cpus,
                                serving=ServingOptions())
        print(f"vLLM app ({info.version}) deployed in {time.perf_counter() - t0:.0f} s")
        handle = model_handle("bench")

        async def run(reqs: list[GenerationRequest]) -> list:
            return await asyncio.gather(*(handle.generate.remote(r) for r in reqs))

        asyncio.run(run(requests(2, new_tokens)))  # warm-up
        for b in sizes:
            reqs = requests(b, new_tokens)
            start = time.perf_counter()
            gens = asyncio.run(run(reqs))
            out[b] = sum(sum(g.output_tokens) for g in gens) / (time.perf_counter() - start)
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch-sizes", default="64,128")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--backend", choices=["hf", "vllm"], default="hf",
                    help="vllm: also time the vLLM app on the same prompts")
    ap.add_argument("--vllm-cpus", type=float, default=1.0, help="CPUs of the vLLM replica")
    args = ap.parse_args()
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    vllm = vllm_rates(args.model, sizes, args.new_tokens, args.vllm_cpus) if args.backend == "vllm" else {}
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
        if b in vllm:
            print(f"           vLLM app {vllm[b]:7.1f} tok/s; vLLM / HFEngine {vllm[b] / e_rate:.3f}, "
                  f"vLLM / model.generate {vllm[b] / p_rate:.3f}")


if __name__ == "__main__":
    main()
