"""Shared-prefix reuse in ``HFEngine`` on MMLU 5-shot prompts: time with and without, same outputs.

MMLU prompts of one subject share the header and the five dev demonstrations; only the question
differs. The engine with ``prefix_reuse`` prefills those shared blocks once per subject. Both
engines get the same requests in one call (subject by subject, as the item list orders them) on
the same threads; the outputs must be identical.

    python bench/prefix_reuse.py [--per-subject 4] [--subjects 57] [--torch-threads 1] [--dtype auto]
    python bench/prefix_reuse.py --perspective fairness   # the quick profile's items of another perspective
"""

from __future__ import annotations

import argparse
import time

from trustray.benchmarks import BENCHMARKS
from trustray.benchmarks.base import EvalContext, stratified_subset
from trustray.data import DataDir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--per-subject", type=int, default=4, help="questions per subject (4: the former quick profile)")
    ap.add_argument("--subjects", type=int, default=57)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--perspective", default="mmlu", help="mmlu, or another perspective (its quick items)")
    ap.add_argument("--limit", type=int, help="at most this many requests")
    args = ap.parse_args()
    import torch

    from trustray.engines.hf import EngineOptions, HFEngine

    torch.set_num_threads(args.torch_threads)
    bench = BENCHMARKS.get(args.perspective)
    profile = "paper" if args.perspective == "mmlu" else "quick"
    items = bench.items(DataDir(), EvalContext(profile=profile))
    subjects = sorted({i.scenario for i in items})[: args.subjects]
    if args.perspective == "mmlu":
        items = stratified_subset([i for i in items if i.scenario in subjects], lambda i: i.scenario,
                                  args.per_subject, "mmlu")
    off = HFEngine(args.model, EngineOptions(dtype=args.dtype, batch_size=args.batch_size, prefix_reuse=False))
    on = HFEngine(args.model, EngineOptions(dtype=args.dtype, batch_size=args.batch_size))
    ctx = EvalContext(profile=profile, count_tokens=on.count_tokens)
    reqs = [bench.request(i, ctx) for i in items][: args.limit]
    prompt_tokens = sum(len(on.encode(r)) for r in reqs)
    timings = {}
    outputs = {}
    for name, engine in (("off", off), ("on", on)):
        start = time.perf_counter()
        outputs[name] = [g.texts for g in engine.generate(reqs)]
        timings[name] = time.perf_counter() - start
    reused = on.prefix_store.hit_tokens
    what = (f"{args.per_subject} per subject, {len(subjects)} subjects" if args.perspective == "mmlu"
            else f"{profile} profile")
    print(f"{args.perspective}: {len(reqs)} requests ({what}), "
          f"{prompt_tokens} prompt tokens; {on.dtype}, {args.torch_threads} torch thread(s)")
    print(f"  prefix reuse off: {timings['off']:.1f} s; on: {timings['on']:.1f} s "
          f"({reused} prompt tokens copied, {100 * reused / prompt_tokens:.0f}%); "
          f"speed-up {timings['off'] / timings['on']:.2f}x; identical outputs: {outputs['on'] == outputs['off']}")


if __name__ == "__main__":
    main()
