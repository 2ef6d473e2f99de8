"""Two processes asking the cache for the same checkpoint compress it once (the per-key lock)."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"


def _compress(cache: str, data_dir: str, out: mp.Queue) -> None:
    from trustray.compress import CalibrationSpec, CompressionSpec, compress

    made = compress(MODEL, CompressionSpec(method="magnitude", sparsity=0.25), CalibrationSpec(),
                    data_dir=data_dir, cache=cache)
    out.put((made.cache_hit, str(made.path)))


def test_concurrent_requests_for_one_key_compress_once(tmp_path, data_dir):
    from trustray.models import resolve_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    resolve_model(MODEL)  # the base checkpoint exists before the two processes race
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_compress, args=(str(tmp_path), str(data_dir.root), out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(hit for hit, _ in results) == [False, True]  # one made it, the other waited for it
    assert len({path for _, path in results}) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_compress_in_order_reports_misses_then_hits(tmp_path, data_dir):
    from trustray.compress.prefetch import compress_in_order
    from trustray.config import SweepSpec

    spec = SweepSpec.model_validate({"model": {"name": MODEL}, "compressions": [
        {"method": "magnitude", "sparsity": 0.25}, {"method": "magnitude", "sparsity": 0.3}]})
    bodies = [t.model_dump(mode="json") for t in spec.trials()]
    first = compress_in_order(bodies, str(data_dir.root), cache=str(tmp_path))
    assert [r["cache_hit"] for r in first] == [False, False]
    again = compress_in_order(bodies, str(data_dir.root), cache=str(tmp_path))
    assert [r["cache_hit"] for r in again] == [True, True]
    assert [r["label"] for r in again] == [t.label() for t in spec.trials()]
