"""Shared fixtures. Tests read the benchmark data from the shared bundle, never a copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trustray.data import DataDir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TRUSTRAY_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> DataDir:
    if not (SHARED_DATA / "MANIFEST.json").exists():
        pytest.fail(f"benchmark data not found at {SHARED_DATA} (set TRUSTRAY_TEST_DATA)")
    return DataDir(SHARED_DATA)


@pytest.fixture(scope="session")
def embedded_model():
    """The embedded default model, prepared into the cache once per machine."""
    from trustray.models import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random Llama checkpoint (fast to write and hash) for model-handling tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
    )
    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path
