"""Compression on the embedded model with tiny calibration sets (8 samples × 64 tokens).

Checkpoints are built once per session in a temporary cache and shared across tests.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from trustray.compress import (
    RECORD_FILE,
    CalibrationSpec,
    CompressionSpec,
    checkpoint_digest,
    compress,
    is_compressed,
    load_dense,
    read_record,
)

# Five llm-compressor runs (GPTQ, AWQ, SparseGPT, Wanda, magnitude): about 9 min in fp32.
pytestmark = [pytest.mark.slow, pytest.mark.heavy]

MODEL = "smollm2-135m"
CALIB = CalibrationSpec(num_samples=8, seq_len=64, seed=0)
SPECS = {
    "gptq": CompressionSpec(method="gptq", bits=4),
    "awq": CompressionSpec(method="awq", bits=3),
    "sparsegpt": CompressionSpec(method="sparsegpt", sparsity=0.5),
    "wanda": CompressionSpec(method="wanda", structure="2:4"),
    "magnitude": CompressionSpec(method="magnitude", structure="4:8"),
}


@pytest.fixture(scope="session")
def base():
    from trustray.models import resolve_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return resolve_model(MODEL)


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("compress-cache")


@pytest.fixture(scope="session")
def compressed(base, cache, data_dir):
    """Lazily compress each method once per session."""
    done: dict = {}

    def get(name: str):
        if name not in done:
            done[name] = compress(base, SPECS[name], CALIB, data_dir=data_dir.root, cache=cache)
        return done[name]

    return get


def _linear_weights(model):
    import torch

    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in name:
            yield name, mod.weight.detach().float()


def _generate(model, path) -> str:
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=6, do_sample=False)
    return tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_quantised_checkpoint_loads_generates_and_has_few_levels(compressed, method):
    import torch

    cm = compressed(method)
    assert is_compressed(cm.path)
    qcfg = json.loads((cm.path / "config.json").read_text())["quantization_config"]
    weights = qcfg["config_groups"]["group_0"]["weights"]
    bits, group = cm.compression.bits, cm.compression.group_size
    assert (weights["num_bits"], weights["group_size"], weights["symmetric"]) == (bits, 64, True)
    assert group == 64  # default for hidden 576: largest of 128/64/32 dividing 576 and 1536

    model = load_dense(cm.path, "bfloat16")
    n = 0
    for name, w in _linear_weights(model):
        assert model.get_submodule(name).__class__ is torch.nn.Linear  # plain dense layers
        groups = w.reshape(w.shape[0], -1, group)
        # distinct values per group: sort, count changes along the group axis
        s = groups.sort(dim=-1).values
        distinct = 1 + (s[..., 1:] != s[..., :-1]).sum(dim=-1)
        assert int(distinct.max()) <= 2**bits, name
        n += 1
    assert n == 30 * 7
    assert model.dtype == torch.bfloat16
    assert _generate(model, cm.path).strip()


@pytest.mark.parametrize("method", ["sparsegpt", "wanda", "magnitude"])
def test_pruned_checkpoint_has_requested_sparsity(compressed, method):
    cm = compressed(method)
    spec = cm.compression
    model = load_dense(cm.path, "float32")
    zeros = total = 0
    for name, w in _linear_weights(model):
        zeros += int((w == 0).sum())
        total += w.numel()
        if spec.structure:
            n, m = (int(x) for x in spec.structure.split(":"))
            nonzero_per_block = (w.reshape(w.shape[0], -1, m) != 0).sum(dim=-1)
            assert int(nonzero_per_block.max()) <= n, name
    assert abs(zeros / total - spec.target_sparsity) < 0.01
    assert _generate(model, cm.path).strip()


def test_checkpoint_records_its_specs(compressed, base):
    cm = compressed("wanda")
    record = read_record(cm.path)
    assert record["key"] == cm.key
    assert record["base"]["fingerprint"] == base.fingerprint
    assert CompressionSpec.model_validate(record["compression"]) == cm.compression
    assert CalibrationSpec.model_validate(record["calibration"]) == CALIB
    # magnitude reads no data: no calibration in its record or key
    assert read_record(compressed("magnitude").path)["calibration"] is None


def test_same_seed_same_bytes_different_seed_differs(compressed, base, data_dir, tmp_path):
    first = compressed("wanda")
    again = compress(base, SPECS["wanda"], CALIB, data_dir=data_dir.root, cache=tmp_path / "a")
    assert not again.cache_hit and again.key == first.key
    assert checkpoint_digest(again.path) == checkpoint_digest(first.path)
    other = compress(
        base, SPECS["wanda"], CALIB.model_copy(update={"seed": 1}), data_dir=data_dir.root, cache=tmp_path / "b"
    )
    assert other.key != first.key
    assert checkpoint_digest(other.path) != checkpoint_digest(first.path)


def test_a_thread_count_fixes_the_bytes_and_is_recorded(compressed, base, data_dir, tmp_path):
    one = compressed("wanda")
    assert read_record(one.path)["threads"] == 1  # the default
    a = compress(base, SPECS["wanda"], CALIB, data_dir=data_dir.root, cache=tmp_path / "a", threads=2)
    b = compress(base, SPECS["wanda"], CALIB, data_dir=data_dir.root, cache=tmp_path / "b", threads=2)
    assert a.key == b.key == one.key  # the thread count names no new setting
    assert read_record(a.path)["threads"] == read_record(b.path)["threads"] == 2
    assert checkpoint_digest(a.path) == checkpoint_digest(b.path)


def test_cli_compresses_then_finds_the_checkpoint_in_the_cache(tmp_path, data_dir):
    import subprocess
    import sys

    args = [sys.executable, "-c", "from trustray.cli import main; main()", "compress",
            "--method", "magnitude", "--sparsity", "0.25", "--threads", "2",
            "--cache", str(tmp_path), "--data-dir", str(data_dir.root)]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    path = first.stdout.strip()
    record = read_record(path)
    assert record is not None and record["threads"] == 2
    assert f"checkpoint {record['key']}" in first.stderr
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.strip() == path
    assert "cache hit" in again.stderr


def test_cache_hit_skips_compression(compressed, base, cache, data_dir):
    first = compressed("wanda")
    mtime = (first.path / "model.safetensors").stat().st_mtime_ns
    t = time.perf_counter()
    hit = compress(base, SPECS["wanda"], CALIB, data_dir=data_dir.root, cache=cache)
    assert hit.cache_hit and hit.path == first.path and hit.key == first.key
    assert time.perf_counter() - t < 10
    assert (hit.path / "model.safetensors").stat().st_mtime_ns == mtime
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_unfinished_checkpoint_is_not_trusted(base, data_dir, tmp_path):
    spec = CompressionSpec(method="magnitude", sparsity=0.25)
    done = compress(base, spec, CALIB, data_dir=data_dir.root, cache=tmp_path)
    # simulate a crash that left a directory without its record at the final path
    (done.path / RECORD_FILE).unlink()
    (done.path / "model.safetensors").write_bytes(b"half written")
    again = compress(base, spec, CALIB, data_dir=data_dir.root, cache=tmp_path)
    assert not again.cache_hit and read_record(again.path)["key"] == done.key
    assert (again.path / "model.safetensors").stat().st_size > 1000


def test_dense_baseline_is_the_base_model(base):
    cm = compress(base, CompressionSpec(method="none"))
    assert cm.path == base.path and not is_compressed(cm.path)


def test_bad_spec_fails_before_compressing(base, tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="group_size"):
        compress(base, CompressionSpec(method="gptq", bits=4, group_size=100), cache=tmp_path)
    assert not any(tmp_path.iterdir())
