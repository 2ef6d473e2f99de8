"""Pipeline overhead for one config, same run:

1. evaluation wall time (Serve deploy → last committed Parquet shard) vs the serving engine's own
   busy time on the same requests (the replica's ``engine_busy_s``; target ratio <= 1.10), and vs
   the same requests sent straight to an ``HFEngine`` in one call with one replica's thread count;
   with several replicas, the busiest replica's busy time;
2. items/s of the pipeline vs a one-request-at-a-time loop over the same items, the way
   DecodingTrust drives Hugging Face models: stock ``model.generate`` per prompt (sdpa attention,
   ``num_return_sequences=n``), on all the replicas' threads together (target >= 20x);
3. model-FLOP utilisation: the workload's useful model FLOPs (2 × layer parameters per prompt
   and generated token, the LM head per generated token, causal attention; ``trustray.engines.flops``)
   per second of evaluation, over the matmul peak of the cores used (replicas × threads), measured
   in the same run with square torch matmuls at the engine's dtype; also for the engine alone.

    python bench/pipeline_overhead.py [--perspectives stereotype,mmlu] [--profile quick] [--torch-threads 2]
    python bench/pipeline_overhead.py --replicas 2 --torch-threads 1   # a 2-core laptop

With ``--backend vllm`` the config is served by the vLLM app (``.venv-vllm`` on CPU); vLLM reports
no busy time, so ratio 1 compares the evaluation wall time with the same requests sent to a fresh
vLLM app all at once, and a third figure times the MMLU requests on a fresh app with prefix caching
on and off (the few-shot demonstrations are a prefix shared by every item of a subject).

    python bench/pipeline_overhead.py --backend vllm [--vllm-cpus 1]
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
    ap.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    ap.add_argument("--vllm-cpus", type=float, default=1.0, help="CPUs of the vLLM replica")
    args = ap.parse_args()
    if args.backend == "vllm":
        vllm_main(args)
        return
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
    gens = engine.generate(reqs)
    engine_s = time.perf_counter() - start
    print(f"  engine alone, one call, same {len(reqs)} requests: {engine_s:.1f} s; "
          f"evaluation wall × replicas / engine alone = {result.eval_seconds * replicas / engine_s:.3f}")
    print_mfu(engine, gens, result.eval_seconds, engine_s, threads, replicas)
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


def print_mfu(engine, gens, eval_s: float, engine_s: float, threads: int, replicas: int) -> None:
    """Model-FLOP utilisation of the evaluation (all replicas' cores) and of the engine alone."""
    from trustray.engines.flops import ModelShape, matmul_peak

    shape = ModelShape.of(engine.model)
    flops = sum(shape.request_flops(g.prompt_tokens, g.output_tokens) for g in gens)
    tokens = sum(g.prompt_tokens + sum(g.output_tokens) for g in gens)
    dtype = str(engine.dtype).removeprefix("torch.")
    peak_all = matmul_peak(engine.dtype, threads * replicas)
    peak_one = matmul_peak(engine.dtype, threads)
    print(f"  useful model FLOPs: {flops / 1e12:.2f} TFLOP over {tokens} prompt + generated tokens "
          f"({shape.layer_params / 1e6:.0f}M layer parameters, {dtype})")
    print(f"  measured {dtype} matmul peak: {peak_all / 1e9:.0f} GFLOP/s on {threads * replicas} thread(s), "
          f"{peak_one / 1e9:.0f} GFLOP/s on {threads}")
    print(f"  MFU: evaluation {flops / eval_s / 1e9:.1f} GFLOP/s = {100 * flops / eval_s / peak_all:.1f}% of peak; "
          f"engine alone {flops / engine_s / 1e9:.1f} GFLOP/s = {100 * flops / engine_s / peak_one:.1f}%")


def _timed_on_fresh_app(model: str, reqs: list, cpus: float, prefix_caching: bool, app: str) -> float:
    """Seconds for ``reqs`` all in flight against a freshly deployed vLLM app (deploy not counted)."""
    import asyncio

    from ray import serve

    from trustray.serve import ServeApp, ServingOptions, deploy_model_app, model_handle
    from trustray.serve.vllm_serving import VLLMOptions

    deploy_model_app(model, app=ServeApp(app, f"/{app}"), backend="vllm", num_cpus=cpus,
                     serving=ServingOptions(), vllm=VLLMOptions(enable_prefix_caching=prefix_caching))
    try:
        handle = model_handle(app)

        async def run() -> None:
            await asyncio.gather(*(handle.generate.remote(r) for r in reqs))

        start = time.perf_counter()
        asyncio.run(run())
        return time.perf_counter() - start
    finally:
        serve.delete(app)


def vllm_main(args: argparse.Namespace) -> None:
    """The pipeline on the vLLM backend, and the same requests straight to the vLLM app."""
    import ray
    import torch

    from trustray.engines.hf import EngineOptions, HFEngine
    from trustray.sweep import check_trial_fits, init_ray, start_serve

    trial = TrialSpec(model=ModelSpec(name=args.model),
                      eval=EvalSpec(profile=args.profile, perspectives=args.perspectives, perplexity=False),
                      engine=EngineSpec(backend="vllm"), resources=ResourceSpec(model_cpus=args.vllm_cpus))
    init_ray(num_cpus=max(2, int(args.vllm_cpus + 1)))
    check_trial_fits(trial.resources)
    start_serve(http=True)
    items_total = {"n": 0}

    def on_shard(_p: str, items: int, _t: int, _s: float) -> None:
        items_total["n"] += items

    ctx = eval_context(trial)
    data = DataDir()
    reqs = [BENCHMARKS.get(p).request(i, ctx) for p in trial.eval.perspectives
            for i in BENCHMARKS.get(p).items(data, ctx)]
    mmlu = [BENCHMARKS.get("mmlu").request(i, ctx) for i in BENCHMARKS.get("mmlu").items(data, ctx)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = run_config(trial, Path(tmp), "bench", None, Progress(on_shard=on_shard))
            wall = time.perf_counter() - start
        items = items_total["n"]
        print(f"pipeline on vLLM ({args.profile}: {args.perspectives}): {items} items, {len(reqs)} requests, "
              f"one vLLM replica on {args.vllm_cpus:g} CPU(s)")
        print(f"  wall {wall:.1f} s (deploy, evaluation, scoring); evaluation {result.eval_seconds:.1f} s")
        alone = _timed_on_fresh_app(args.model, reqs, args.vllm_cpus, True, "alone")
        print(f"  vLLM app alone, same {len(reqs)} requests all in flight: {alone:.1f} s; "
              f"evaluation wall / vLLM alone = {result.eval_seconds / alone:.3f}")
        cached = _timed_on_fresh_app(args.model, mmlu, args.vllm_cpus, True, "cached")
        uncached = _timed_on_fresh_app(args.model, mmlu, args.vllm_cpus, False, "uncached")
        print(f"  MMLU ({len(mmlu)} requests) on a fresh app: prefix caching on {cached:.1f} s, off {uncached:.1f} s, "
              f"speed-up {uncached / cached:.2f}x")
    finally:
        ray.shutdown()
    threads = max(1, int(args.vllm_cpus))
    torch.set_num_threads(threads)
    single = HFEngine(args.model, EngineOptions(batch_size=1, deterministic=False))
    single.model.set_attn_implementation("sdpa")
    sample = reqs[:: max(1, len(reqs) // args.loop_items)][: args.loop_items]
    start = time.perf_counter()
    for r in sample:
        stock_generate(single, r)
    loop_rate = len(sample) / (time.perf_counter() - start)
    pipe_rate = items / result.eval_seconds
    print(f"  one-at-a-time model.generate loop ({len(sample)} items, {threads} torch threads): {loop_rate:.3f} "
          f"items/s; pipeline evaluation {pipe_rate:.3f} items/s; speed-up {pipe_rate / loop_rate:.1f}x")


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
