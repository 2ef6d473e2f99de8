"""Model resolution, embedded-model preparation and fingerprints."""

from __future__ import annotations

import json
import shutil

import pytest

from trustray.models import ModelError, fingerprint, prepare, resolve_model


@pytest.mark.slow
def test_embedded_model_is_prepared_once(embedded_model):
    weights = embedded_model.path / "model.safetensors"
    before = weights.stat()
    again = prepare("smollm2-135m")  # cached: must not rewrite the checkpoint
    after = weights.stat()
    assert again == embedded_model.path
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    config = json.loads((embedded_model.path / "config.json").read_text())
    assert config["model_type"] == "llama" and config["hidden_size"] == 576
    assert "quantization_config" not in config
    # no leftover temp directory (the per-model lock file stays: it is how preparations take turns)
    assert not [p for p in embedded_model.path.parent.iterdir()
                if p.name.startswith(".") and not (p.is_file() and p.suffix == ".lock")]


def test_fingerprint_is_stable_and_tracks_weights_and_config(tiny_checkpoint, tmp_path):
    fp = fingerprint(tiny_checkpoint)
    assert fp == fingerprint(tiny_checkpoint) == resolve_model(tiny_checkpoint).fingerprint
    assert len(fp) == 16

    copy = tmp_path / "copy"
    shutil.copytree(tiny_checkpoint, copy)
    assert fingerprint(copy) == fp  # same content elsewhere: same model

    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # flip the last byte of the last tensor
    weights.write_bytes(bytes(data))
    assert fingerprint(copy) != fp

    shutil.rmtree(copy)
    shutil.copytree(tiny_checkpoint, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-3
    (copy / "config.json").write_text(json.dumps(cfg))
    assert fingerprint(copy) != fp


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ModelError, match="did you mean 'smollm2-135m'"):
        resolve_model("smollm2-135")


@pytest.mark.parametrize("kind", ["empty-dir", "file", "bad-config"])
def test_unreadable_checkpoints_fail_clearly(tmp_path, tiny_checkpoint, kind):
    if kind == "empty-dir":
        target = tmp_path / "empty"
        target.mkdir()
    elif kind == "file":
        target = tmp_path / "weights.bin"
        target.write_bytes(b"x")
    else:
        target = tmp_path / "bad"
        shutil.copytree(tiny_checkpoint, target)
        (target / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=str(target.name)):
        resolve_model(target)
