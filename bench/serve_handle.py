"""Serve overhead: a handle round trip, and 64 concurrent short requests through the Serve
handle vs ``HFEngine.generate`` called directly on the same requests (same thread count).

    python bench/serve_handle.py [--batch-size 8] [--requests 64] [--max-tokens 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, driver and replica alike")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import ray
    import torch
    from ray import serve

    from trustray.engines.hf import EngineOptions, HFEngine
    from trustray.generation import GenerationRequest, Message, SamplingParams
    from trustray.models import resolve_model
    from trustray.serve import ServingOptions, build_model_app, model_handle

    torch.set_num_threads(args.threads)
    resolved = resolve_model(args.model)
    options = EngineOptions(batch_size=args.batch_size)
    reqs = [
        GenerationRequest(f"b{i}", SamplingParams(max_tokens=args.max_tokens),
                          messages=(Message("user", f"Write one short sentence about topic number {i}."),))
        for i in range(args.requests)
    ]
    one = GenerationRequest("one", SamplingParams(max_tokens=1), messages=(Message("user", "Hi"),))

    engine = HFEngine(resolved, options)
    ray.init(address="local", num_cpus=max(2, args.threads), include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="rb", dir="/tmp"))
    try:
        serve.start(proxy_location="Disabled")
        app = build_model_app(resolved, engine_options=options, backend="hf", num_cpus=1,
                              serving=ServingOptions(torch_threads=args.threads))
        serve.run(app, name="bench", blocking=False)
        handle = model_handle("bench")

        async def timed_burst() -> tuple[float, list]:
            t = time.perf_counter()
            out = await asyncio.gather(*(handle.generate.remote(r) for r in reqs))
            return time.perf_counter() - t, out

        async def timed_one() -> float:
            t = time.perf_counter()
            await handle.generate.remote(one)
            return time.perf_counter() - t

        def timed_direct(batch: list) -> tuple[float, list]:
            t = time.perf_counter()
            out = engine.generate(batch)
            return time.perf_counter() - t, out

        # Warm-up both (first calls build kernels per shape), then alternate direct and handle
        # runs so that load from elsewhere on the machine hits both alike.
        timed_direct(reqs), asyncio.run(timed_burst())
        direct_times, handle_times, single_direct, single_handle = [], [], [], []
        for _ in range(args.repeats):
            dt, direct = timed_direct(reqs)
            ht, served = asyncio.run(timed_burst())
            direct_times.append(dt)
            handle_times.append(ht)
        for _ in range(10):
            single_direct.append(timed_direct([one])[0])
            single_handle.append(asyncio.run(timed_one()))
        stats = handle.stats.remote().result()
    finally:
        serve.shutdown()
        ray.shutdown()

    same = [g.texts for g in served] == [g.texts for g in direct]
    d, h = statistics.median(direct_times), statistics.median(handle_times)
    ratios = sorted(b / a for a, b in zip(direct_times, handle_times, strict=True))
    sd, sh = statistics.median(single_direct), statistics.median(single_handle)
    print(f"{args.requests} requests x {args.max_tokens} tokens, batch {args.batch_size}, {args.threads} thread(s)")
    print(f"direct engine.generate: {d:.2f} s ({args.requests / d:.1f} req/s)")
    print(f"via Serve handle:       {h:.2f} s ({args.requests / h:.1f} req/s)  ratio handle/direct = {h / d:.3f}")
    print(f"per-pair ratios handle/direct: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"single request, 1 token: direct {sd * 1000:.0f} ms, handle round trip {sh * 1000:.0f} ms "
          f"(overhead {(sh - sd) * 1000:.0f} ms)")
    print(f"greedy outputs identical: {same}; replica batches: {stats['batches']}, "
          f"max requests per engine call {stats['max_batch_requests']}; sizes {stats['batch_sizes']}")


if __name__ == "__main__":
    main()
