"""Overhead of ``trustray.compress.compress`` over calling llm-compressor's ``oneshot`` directly.

Both paths, in the same process and run, load the same base model, use the same recipe and
the same calibration tokens (built by the same seeded sampler) and write a checkpoint; the
trustray path adds what it does on top: model fingerprint, cache key, spec validation,
record file, temp dir + rename. Runs alternate (direct, trustray, direct, ...) and the
fastest of each is compared, to damp the noise of a shared machine.

    .venv/bin/python bench/compress_overhead.py --method wanda --structure 2:4 --samples 32 --seq-len 256
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--method", default="gptq")
    p.add_argument("--bits", type=int)
    p.add_argument("--sparsity", type=float)
    p.add_argument("--structure")
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--data-dir", default=os.environ.get("TRUSTRAY_DATA"))
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from transformers import AutoTokenizer

    from trustray.compress import CalibrationSpec, CompressionSpec, build_calibration, build_recipe, compress
    from trustray.compress.recipes import needs_calibration
    from trustray.compress.run import _seed_everything, layer_widths, run_oneshot
    from trustray.models import resolve_model

    base = resolve_model(args.model)
    fields = {k: v for k, v in dict(method=args.method, bits=args.bits, sparsity=args.sparsity,
                                    structure=args.structure).items() if v is not None}  # fmt: skip
    if args.method in ("gptq", "awq") and "bits" not in fields:
        fields["bits"] = 4
    spec = CompressionSpec.for_model(layer_widths(base.path), **fields)
    calib = CalibrationSpec(num_samples=args.samples, seq_len=args.seq_len, seed=args.seed)

    def direct(out: Path) -> float:
        t = time.perf_counter()
        _seed_everything(calib.seed)
        calib_set = None
        if needs_calibration(spec):
            calib_set = build_calibration(calib, AutoTokenizer.from_pretrained(base.path), args.data_dir)
        run_oneshot(base.path, build_recipe(spec), calib_set, out)  # a plain llm-compressor oneshot call
        return time.perf_counter() - t

    def wrapped(cache: Path) -> float:
        t = time.perf_counter()
        result = compress(args.model, spec, calib, data_dir=args.data_dir, cache=cache)
        assert not result.cache_hit
        return time.perf_counter() - t

    times: dict[str, list[float]] = {"oneshot": [], "trustray": []}
    with tempfile.TemporaryDirectory(prefix="compress-bench-") as tmp:
        for i in range(args.repeats):
            times["oneshot"].append(direct(Path(tmp) / f"direct-{i}"))
            times["trustray"].append(wrapped(Path(tmp) / f"cache-{i}"))
    load = os.getloadavg()
    best = {k: min(v) for k, v in times.items()}
    print(f"{spec.label()}  calibration {calib.num_samples}x{calib.seq_len}  repeats {args.repeats}")
    for k, v in times.items():
        print(f"  {k:9s} min {best[k]:8.2f}s  runs {', '.join(f'{x:.2f}' for x in v)}")
    print(f"  overhead ratio trustray/oneshot = {best['trustray'] / best['oneshot']:.3f}  "
          f"(load average {load[0]:.1f}, {os.cpu_count()} CPUs)")  # fmt: skip


if __name__ == "__main__":
    main()
