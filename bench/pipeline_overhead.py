"""Pipeline overhead for one config, same run:

1. end-to-end evaluation wall time (Serve + evaluator actors + Parquet) vs the engine's own busy
   time on the same requests (target ratio <= 1.10);
2. items/s of the pipeline vs a one-request-at-a-time loop over the same items, the way
   DecodingTrust drives Hugging Face models (target >= 20x).

    python bench/pipeline_overhead.py [--perspectives stereotype,mmlu] [--profile smoke]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from trustray.benchmarks import BENCHMARKS
from trustray.config import EngineSpec, EvalSpec, ModelSpec, TrialSpec
from trustray.data import DataDir
from trustray.pipeline import Progress, eval_context, run_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--perspectives", default="stereotype,mmlu")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--loop-items", type=int, default=16, help="items timed in the one-at-a-time loop")
    args = ap.parse_args()
    import ray

    from trustray.sweep import init_ray, start_serve

    trial = TrialSpec(model=ModelSpec(name=args.model),
                      eval=EvalSpec(profile=args.profile, perspectives=args.perspectives, perplexity=False),
                      engine=EngineSpec(batch_size=args.batch_size))
    init_ray()
    start_serve()
    items_total = {"n": 0}

    def on_shard(_p: str, items: int, _t: int, _s: float) -> None:
        items_total["n"] += items


    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = run_config(trial, Path(tmp), "bench", None, Progress(on_shard=on_shard))
        wall = time.perf_counter() - start
    print(f"pipeline: {items_total['n']} items in {wall:.1f} s ({items_total['n'] / wall:.2f} items/s), "
          f"config {result.config_id}")

    # The same requests straight through the engine, batched (engine busy time) and one at a time.
    from trustray.engines.hf import EngineOptions, HFEngine

    engine = HFEngine(args.model, EngineOptions(batch_size=args.batch_size))
    ctx = eval_context(trial)
    data = DataDir()
    reqs = [BENCHMARKS.get(p).request(i, ctx) for p in trial.eval.perspectives for i in BENCHMARKS.get(p).items(data, ctx)]
    start = time.perf_counter()
    engine.generate(reqs)
    engine_s = time.perf_counter() - start
    single = HFEngine(args.model, EngineOptions(batch_size=1, deterministic=False))
    sample = reqs[: args.loop_items]
    start = time.perf_counter()
    for r in sample:
        single.generate([r])
    loop_rate = len(sample) / (time.perf_counter() - start)
    print(f"engine alone on the same {len(reqs)} requests: {engine_s:.1f} s; wall/engine ratio {wall / engine_s:.2f} "
          "(includes compression-cache lookup, Serve deploy and model load)")
    print(f"one-at-a-time loop: {loop_rate:.2f} items/s; pipeline speed-up {items_total['n'] / wall / loop_rate:.1f}x")
    ray.shutdown()


if __name__ == "__main__":
    main()
