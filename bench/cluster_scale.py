"""Scale: how full a sweep keeps its GPU slots, on simulated GPUs (same run).

A Ray Tune sweep of ``--configs`` × ``--seeds`` trials on a local Ray that declares ``--gpus``
GPU slots. Each trial deploys its own Serve app on the simulated engine
(``trustray.engines.simulated``: deterministic answers timed by an A100/H100 vLLM throughput
model, one GPU per replica), sends the benchmark requests of its perspectives through the Serve
handle with many in flight, and deletes the app, as a real trial does after compression. Trials
differ in work (seeded item subsets), as configs do.

Printed: makespan; ideal makespan = (sum of the trials' GPU-holding time) / slots, and the
modelled GPU work / slots; slot utilisation = ideal / makespan; where the rest goes (Serve deploy
and delete, Tune start-up, scheduling gaps, and the tail that trials of unequal work leave even on
a gap-free schedule); the driver's peak memory and CPU time.

    python bench/cluster_scale.py                      # 16 slots, 16 configs x 3 seeds
    python bench/cluster_scale.py --gpus 4 --configs 4 --seeds 2 --time-scale 0.002
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import random
import resource
import time
from typing import Any


def trial(config: dict[str, Any]) -> None:
    """One simulated trial: deploy, evaluate through the handle, delete; reports its timings."""
    from ray import serve, tune

    from trustray.benchmarks import BENCHMARKS, EvalContext
    from trustray.data import DataDir
    from trustray.engines.simulated import SimulatedOptions
    from trustray.serve import ServingOptions, build_model_app

    name = f"sim-{config['config']}-{config['seed']}"
    start = time.perf_counter()
    app = build_model_app(config["model_path"], engine_options=SimulatedOptions(time_scale=config["time_scale"]),
                          backend="simulated", name=name, num_cpus=0.01,
                          serving=ServingOptions(num_gpus=1, max_ongoing_requests=4096))
    serve.run(app, name=name, route_prefix=None)
    deployed = time.perf_counter()
    ctx = EvalContext(profile=config["profile"])
    data = DataDir(config["data_dir"])
    rng = random.Random(f"{config['config']}|{config['seed']}")
    requests = []
    for p in config["perspectives"]:
        bench = BENCHMARKS.get(p)
        items = bench.items(data, ctx)
        keep = rng.sample(items, max(1, int(len(items) * rng.uniform(0.5, 1.0))))
        requests += [bench.request(it, ctx) for it in keep]
    handle = serve.get_app_handle(name)

    async def run_all() -> list[Any]:
        return await asyncio.gather(*(handle.generate.remote(r) for r in requests))

    generations = asyncio.run(run_all())
    evaluated = time.perf_counter()
    stats = handle.stats.remote().result()
    serve.delete(name)
    done = time.perf_counter()
    tune.report({"deploy_s": deployed - start, "eval_s": evaluated - deployed, "delete_s": done - evaluated,
                 "held_s": done - start, "engine_busy_s": stats["engine_busy_s"], "requests": len(requests),
                 "outputs": sum(len(g.texts) for g in generations), "start_t": time.time() - (done - start),
                 "end_t": time.time()})


def list_schedule(durations: list[float], slots: int) -> float:
    """Makespan of placing ``durations`` in order, each on the slot that frees first, no gaps."""
    free = [0.0] * slots
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=16, help="simulated GPU slots")
    ap.add_argument("--configs", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--perspectives", default="stereotype,mmlu,machine_ethics")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--time-scale", type=float, default=0.005,
                    help="sleep this fraction of the modelled GPU time (0.005: 200x faster than an A100)")
    ap.add_argument("--cpus", type=int, default=None, help="logical CPUs to declare (default 2 per slot + 2)")
    ap.add_argument("--data-dir", default=os.environ.get("TRUSTRAY_DATA"))
    args = ap.parse_args()

    import ray
    from ray import serve, tune

    from trustray.models import resolve_model

    model = resolve_model("smollm2-135m")
    ray.init(address="local", num_gpus=args.gpus, num_cpus=args.cpus or 2 * args.gpus + 2,
             include_dashboard=False, log_to_driver=False)
    serve.start(proxy_location="Disabled")
    space = {
        "config": tune.grid_search(list(range(args.configs))), "seed": tune.grid_search(list(range(args.seeds))),
        "model_path": str(model.path), "time_scale": args.time_scale, "profile": args.profile,
        "perspectives": [p.strip() for p in args.perspectives.split(",")], "data_dir": args.data_dir,
    }
    trainable = tune.with_resources(trial, tune.PlacementGroupFactory([{"CPU": 0.1}]))
    cpu0 = os.times()
    wall0 = time.time()
    grid = tune.Tuner(trainable, param_space=space,
                      tune_config=tune.TuneConfig(max_concurrent_trials=args.gpus),
                      run_config=tune.RunConfig(storage_path=os.path.abspath("runs/bench-cluster-scale"),
                                                verbose=0)).fit()
    makespan = time.time() - wall0
    cpu1 = os.times()
    if grid.errors:
        raise SystemExit(f"{len(grid.errors)} trials failed: {grid.errors[0]}")
    m = [r.metrics for r in grid]
    held = sum(x["held_s"] for x in m)
    busy = sum(x["engine_busy_s"] for x in m)
    deploy = sum(x["deploy_s"] + x["delete_s"] for x in m)
    first, last = min(x["start_t"] for x in m), max(x["end_t"] for x in m)
    slots = args.gpus
    print(f"{len(m)} trials on {slots} simulated GPU slots ({args.perspectives}, {args.profile}, "
          f"time scale {args.time_scale:g})")
    print(f"makespan                         {makespan:8.1f} s (first trial start to last end {last - first:.1f} s)")
    print(f"ideal makespan (held time/slots) {held / slots:8.1f} s  -> slot utilisation {held / slots / makespan:6.1%}")
    print(f"engine busy / slots              {busy / slots:8.1f} s  -> engine utilisation {busy / slots / makespan:6.1%}")
    print(f"  of the held time: engine busy {busy / held:6.1%}, Serve deploy+delete {deploy / held:6.1%}, "
          f"evaluation outside the engine {(held - busy - deploy) / held:6.1%}")
    print(f"  Tune start-up and scheduling gaps: {makespan - held / slots:.1f} s of the makespan")
    # Trials differ in work, so even a scheduler with no gaps leaves slots idle at the tail.
    in_order = [x["held_s"] for x in sorted(m, key=lambda x: x["start_t"])]
    greedy, lpt = list_schedule(in_order, slots), list_schedule(sorted(in_order, reverse=True), slots)
    print(f"  gap-free schedule of these trials: {greedy:.1f} s in start order (tail of unequal trials "
          f"{greedy - held / slots:.1f} s), {lpt:.1f} s longest first")
    print(f"  so: Tune start-up {first - wall0:.1f} s, scheduling gaps {last - first - greedy:.1f} s, "
          f"unequal-trial tail {greedy - held / slots:.1f} s; scheduler efficiency {greedy / makespan:6.1%}")
    print(f"driver: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB, "
          f"CPU {cpu1.user + cpu1.system - cpu0.user - cpu0.system:.1f} s over {makespan:.1f} s wall")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
