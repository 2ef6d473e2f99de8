"""Pipeline overhead for one config, same run:

1. evaluation wall time (Serve deploy → last committed Parquet shard) vs the serving engine's own
   busy time on the same requests (the replica's ``engine_busy_s``; target ratio <= 1.10), and vs
   the same requests sent straight to an ``HFEngine`` in one call with one replica's thread count;
   with several replicas, the busiest replica's busy time;
2. items/s of the pipeline vs a one-request-at-a-time loop over the same items, the way
   DecodingTrust drives Hugging Face models: stock ``model.generate`` per prompt (sdpa attention,
   ``num_return_sequences=n``), on all the replicas' threads together (target >= 20x).

    python bench/pipeline_overhead.py [--perspectives stereotype,mmlu] [--profile quick] [--torch-threads 2]
    python bench/pipeline_overhead.py --replicas 2 --torch-threads 1   # a 2-core laptop
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
    ap.add_argument("--replicas", type=int, default=1,
                    help="model replicas (each on --torch-threads threads, 0.8 CPU so two fit a 2-core box)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--loop-items", type=int, default=16, help="items timed in the one-at-a-time loop")
    args = ap.parse_args()
    import ray
    import torch

    from trustray.engines.hf import EngineOptions, HFEngine
    from trustray.sweep import check_trial_fits, init_ray, start_serve

    trial = TrialSpec(model=ModelSpec(name=args.model),
                      eval=EvalSpec(profile=args.profile, perspectives=args.perspectives, perplexity=False),
                      engine=EngineSpec(batch_size=args.batch_size),
                      resources=ResourceSpec(torch_threads=args.torch_threads, model_replicas=args.replicas,
                                             model_cpus=1.0 if args.replicas == 1 else 0.8))
    init_ray()
    check_trial_fits(trial.resources)
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
    busy, busiest = stats["engine_busy_s"], stats["engine_busy_max_s"]
    threads, items, replicas = int(stats["torch_threads"]), items_total["n"], int(stats["replicas"])
    print(f"pipeline ({args.profile}: {args.perspectives}): {items} items, {stats['requests']} requests in "
          f"{stats['batches']} engine calls (mean {stats['mean_batch_requests']:.1f} requests each), "
          f"{replicas} replica(s) on {threads} torch thread(s) each")
    print(f"  wall {wall:.1f} s (compression-cache lookup, Serve deploy, model load, evaluation, scoring); "
          f"evaluation {result.eval_seconds:.1f} s; replica engine busy {busy:.1f} s in all, "
          f"{busiest:.1f} s on the busiest replica")
    print(f"  evaluation wall / busiest replica's engine busy = {result.eval_seconds / busiest:.3f}")

    # The same requests straight through one engine in one call, on one replica's thread count;
    # the one-at-a-time loop gets every thread the replicas had together.
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
          f"evaluation wall × replicas / engine alone = {result.eval_seconds * replicas / engine_s:.3f}")
    torch.set_num_threads(threads * replicas)
    single = HFEngine(args.model, EngineOptions(batch_size=1, deterministic=False))
    single.model.set_attn_implementation("sdpa")  # stock transformers, as DecodingTrust loads it
    sample = reqs[:: max(1, len(reqs) // args.loop_items)][: args.loop_items]  # spread over perspectives
    start = time.perf_counter()
    for r in sample:
        stock_generate(single, r)
    loop_rate = len(sample) / (time.perf_counter() - start)
    pipe_rate = items / result.eval_seconds
    print(f"  one-at-a-time model.generate loop ({len(sample)} items, {threads * replicas} torch threads): "
          f"{loop_rate:.3f} items/s; pipeline "
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
