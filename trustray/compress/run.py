"""Compress a model with llm-compressor into a content-addressed, crash-safe cache.

Key = hash(base model fingerprint, resolved CompressionSpec, CalibrationSpec, calibration
source digest). A checkpoint directory is trusted only if it holds the record file, which
is written last inside a dot-prefixed temp directory that is then renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustray.compress.calibration import CalibrationSource, build_calibration, resolve_source
from trustray.compress.recipes import build_recipe, cpu_workarounds, needs_calibration
from trustray.compress.spec import CalibrationSpec, CompressionSpec, canonical_json
from trustray.paths import cache_dir, file_lock

RECORD_FILE = "trustray_compression.json"
# Bump when the checkpoint layout or the recipe mapping changes: old entries stop matching.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CompressedModel:
    """A compressed checkpoint (or, for method ``none``, the base checkpoint itself)."""

    path: Path
    key: str
    base_name: str
    base_fingerprint: str
    compression: CompressionSpec
    calibration: CalibrationSpec | None
    cache_hit: bool
    seconds: float


def layer_widths(model_path: Path) -> list[int]:
    """Input widths of the model's Linear layers (the axis quantisation groups run along)."""
    config = json.loads((model_path / "config.json").read_text())
    config = config.get("text_config", config)
    hidden = config["hidden_size"]
    heads = config.get("num_attention_heads")
    head_dim = config.get("head_dim") or (hidden // heads if heads else hidden)
    widths = {hidden, config.get("intermediate_size", hidden)}
    if heads:
        widths.add(heads * head_dim)
    return sorted(widths)


def cache_key(
    base_fingerprint: str,
    spec: CompressionSpec,
    calib: CalibrationSpec | None,
    source: CalibrationSource | None,
) -> str:
    """Content address of a compressed checkpoint (16 hex chars): names the cache entry only.
    Results are keyed by config ids (``trustray.identity``), which also cover evaluation."""
    body = {
        "format": FORMAT_VERSION,
        "base": base_fingerprint,
        "compression": spec.model_dump(mode="json"),
        "calibration": calib.model_dump(mode="json") if calib else None,
        "calibration_source": source.digest if source else None,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


def checkpoint_digest(path: str | Path) -> str:
    """sha256 over every file's name and bytes (the checkpoint's identity on disk)."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The specs recorded inside a checkpoint, or None if it is not a finished one."""
    try:
        return json.loads((Path(path) / RECORD_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _resolve(model: Any) -> Any:
    from trustray.models import ResolvedModel, resolve_model

    return model if isinstance(model, ResolvedModel) else resolve_model(model)


def compress_threads(threads: int | None = None) -> int:
    """Threads for a compression: ``threads``, else ``$TRUSTRAY_COMPRESS_THREADS``, else 1.

    A thread count fixes the reduction order, so the checkpoint bytes are the same run to run
    for the same count (the count is recorded in the checkpoint); one thread is the default
    because on a shared CPU it is often faster than OpenMP threads spinning against other
    processes. A sweep passes the CPUs its model replicas will hold, idle while it compresses.
    """
    return max(1, threads or int(os.environ.get("TRUSTRAY_COMPRESS_THREADS") or 1))


def _seed_everything(seed: int, threads: int) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("llmcompressor", "compressed-tensors", "torch", "transformers")}


def run_oneshot(base_path: Path, recipe: list[Any], calib_set: Any, output_dir: Path) -> None:
    """Load the base model and run llm-compressor's ``oneshot`` into ``output_dir``."""
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
    kwargs: dict[str, Any] = {}
    if calib_set is not None:
        n, seq_len = calib_set.input_ids.shape
        kwargs = dict(
            dataset=calib_set.dataloader(),
            num_calibration_samples=n,
            max_seq_length=seq_len,
            shuffle_calibration_samples=False,
        )
    with torch.no_grad(), cpu_workarounds():
        oneshot(model=model, tokenizer=tokenizer, recipe=recipe, output_dir=str(output_dir), **kwargs)


def compress(
    model: Any,
    spec: CompressionSpec,
    calib: CalibrationSpec | None = None,
    data_dir: str | Path | None = None,
    cache: str | Path | None = None,
    threads: int | None = None,
) -> CompressedModel:
    """Compress ``model`` (name, path or ResolvedModel) per ``spec``; cached by content.

    A second call with the same inputs returns the cached checkpoint without recompressing.
    ``calib`` defaults to ``CalibrationSpec()``; it is ignored (and left out of the key) for
    methods that read no data (``none``, ``magnitude``). ``threads``: torch threads of the
    compression (:func:`compress_threads`); recorded, not part of the key.
    """
    base = _resolve(model)
    spec = spec.resolved(layer_widths(base.path))
    calib = calib or CalibrationSpec()
    if spec.is_dense:
        key = cache_key(base.fingerprint, spec, None, None)
        return CompressedModel(base.path, key, base.name, base.fingerprint, spec, None, False, 0.0)

    uses_data = needs_calibration(spec)
    source = resolve_source(calib, data_dir) if uses_data else None
    calib_used = calib if uses_data else None
    key = cache_key(base.fingerprint, spec, calib_used, source)
    root = Path(cache) if cache is not None else cache_dir() / "compressed"
    out = root / f"{base.name}-{_safe(spec.label())}-{key}"

    record = read_record(out)
    if record is not None and record.get("key") == key:
        return CompressedModel(out, key, base.name, base.fingerprint, spec, calib_used, True, 0.0)

    root.mkdir(parents=True, exist_ok=True)
    # One process compresses a key at a time: a trial that needs a checkpoint the sweep's
    # background compression is making waits for it instead of making it a second time.
    with file_lock(root / f"{out.name}.lock"):
        record = read_record(out)
        if record is not None and record.get("key") == key:
            return CompressedModel(out, key, base.name, base.fingerprint, spec, calib_used, True, 0.0)
        _seed_everything(calib.seed, compress_threads(threads))
        return _compress_into(out, key, base, spec, calib, calib_used, source, data_dir)


def _compress_into(out: Path, key: str, base: Any, spec: CompressionSpec, calib: CalibrationSpec,
                   calib_used: CalibrationSpec | None, source: CalibrationSource | None,
                   data_dir: str | Path | None) -> CompressedModel:
    """Compress into a temp directory beside ``out``, write the record last, rename into place."""
    import torch

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    uses_data = calib_used is not None
    start = time.perf_counter()
    try:
        calib_set = None
        if uses_data:
            from transformers import AutoTokenizer

            calib_set = build_calibration(calib, AutoTokenizer.from_pretrained(base.path), data_dir)
        run_oneshot(base.path, build_recipe(spec), calib_set, tmp)
        record = {
            "format": FORMAT_VERSION,
            "key": key,
            "base": {"name": base.name, "fingerprint": base.fingerprint},
            "compression": spec.model_dump(mode="json"),
            "calibration": calib_used.model_dump(mode="json") if calib_used else None,
            "calibration_source": (
                {"kind": source.kind, "digest": source.digest} if source else None
            ),
            "calibration_tokens_sha256": calib_set.digest() if calib_set is not None else None,
            "versions": _versions(),
            "threads": torch.get_num_threads(),  # set by _seed_everything
        }
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        if out.exists():  # an unfinished leftover (no record): replace it
            shutil.rmtree(out)
        try:
            os.replace(tmp, out)
        except OSError:
            if read_record(out) is None:  # lost a race to a broken dir; not to a finished one
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    return CompressedModel(out, key, base.name, base.fingerprint, spec, calib_used, False, seconds)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)
