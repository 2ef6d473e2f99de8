"""Pipeline overhead for one config, same run:

1. evaluation wall time (Serve deploy → last committed Parquet shard) vs the serving engine's own
   busy time on the same requests (the replica's ``engine_busy_s``; target ratio <= 1.10), and vs
   the same requests sent straight to an ``HFEngine`` in one call with the replica's thread count;
2. items/s of the pipeline vs a one-request-at-a-time loop over the same items, the way
   DecodingTrust drives Hugging Face models: stock ``model.generate`` per prompt (sdpa attention,
   ``num_return_sequences=n``), on the replica's thread count (target >= 20x).

    python bench/pipeline_overhead.py [--perspectives stereotype,mmlu] [--profile quick] [--torch-threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from trustray.benchmarks import BENCHMARKS
from trustray.config import EngineSpec, EvalSpec, ModelSpec, ResourceSpec, TrialSpec
from trustray.data import DataDir
from trustray.pipeline import Progress, eval_context, run_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--perspectives", default="stereotype,mmlu")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--torch-threads", type=int, help="torch threads in the replica (default: Ray's, 1 per CPU)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--loop-items", type=int, default=16, help="items timed in the one-at-a-time loop")
    args = ap.parse_args()
    import ray
    import torch

    from trustray.engines.hf import EngineOptions, HFEngine
    from trustray.sweep import init_ray, start_serve

    trial = TrialSpec(model=ModelSpec(name=args.model),
                      eval=EvalSpec(profile=args.profile, perspectives=args.perspectives, perplexity=False),
                      engine=EngineSpec(batch_size=args.batch_size),
                      resources=ResourceSpec(torch_threads=args.torch_threads))
    init_ray()
    start_serve()
    items_total = {"n": 0}

    def on_shard(_p: str, items: int, _t: int, _s: float) -> None:
        items_total["n"] += items

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_config(trial, Path(tmp), "bench", None, Progress(on_shard=on_shard))
        wall = time.perf_counter() - start
    ray.shutdown()
    stats = result.engine_stats
    busy, threads, items = stats["engine_busy_s"], int(stats["torch_threads"]), items_total["n"]
    print(f"pipeline ({args.profile}: {args.perspectives}): {items} items, {stats['requests']} requests in "
          f"{stats['batches']} engine calls (mean {stats['mean_batch_requests']:.1f} requests each), "
          f"replica on {threads} torch thread(s)")
    print(f"  wall {wall:.1f} s (compression-cache lookup, Serve deploy, model load, evaluation, scoring); "
          f"evaluation {result.eval_seconds:.1f} s; replica engine busy {busy:.1f} s")
    print(f"  evaluation wall / replica engine busy = {result.eval_seconds / busy:.3f}")

    # The same requests straight through the engine, in one call and one at a time, on the
    # replica's thread count.
    torch.set_num_threads(threads)
    ctx = eval_context(trial)
    data = DataDir()
    reqs = [BENCHMARKS.get(p).request(i, ctx) for p in trial.eval.perspectives
            for i in BENCHMARKS.get(p).items(data, ctx)]
    engine = HFEngine(args.model, EngineOptions(batch_size=args.batch_size))
    start = time.perf_counter()
    engine.generate(reqs)
    engine_s = time.perf_counter() - start
    print(f"  engine alone, one call, same {len(reqs)} requests: {engine_s:.1f} s; "
          f"evaluation wall / engine alone = {result.eval_seconds / engine_s:.3f}")
    single = HFEngine(args.model, EngineOptions(batch_size=1, deterministic=False))
    single.model.set_attn_implementation("sdpa")  # stock transformers, as DecodingTrust loads it
    sample = reqs[:: max(1, len(reqs) // args.loop_items)][: args.loop_items]  # spread over perspectives
    start = time.perf_counter()
    for r in sample:
        stock_generate(single, r)
    loop_rate = len(sample) / (time.perf_counter() - start)
    pipe_rate = items / result.eval_seconds
    print(f"  one-at-a-time model.generate loop ({len(sample)} items): {loop_rate:.3f} items/s; pipeline "
          f"evaluation {pipe_rate:.3f} items/s; speed-up {pipe_rate / loop_rate:.1f}x")


def stock_generate(engine, request) -> None:
    """One request through plain ``model.generate``, its ``n`` samples as return sequences."""
    import torch

    ids = torch.tensor([engine.encode(request)])
    sp = request.sampling
    kwargs = {"max_new_tokens": sp.max_tokens, "pad_token_id": engine.pad_id, "do_sample": not sp.greedy}
    if not sp.greedy:
        kwargs.update(temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k, num_return_sequences=sp.n)
    if sp.stop:
        kwargs.update(stop_strings=list(sp.stop), tokenizer=engine.tokenizer)
    with torch.inference_mode():
        engine.model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)


if __name__ == "__main__":
    main()
