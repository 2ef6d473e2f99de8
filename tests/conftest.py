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
