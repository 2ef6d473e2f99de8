"""Where trustray keeps its cache and finds its data (no I/O at import time)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$TRUSTRAY_CACHE``, else ``~/.cache/trustray``."""
    return Path(os.environ.get("TRUSTRAY_CACHE") or Path.home() / ".cache" / "trustray").expanduser()


def default_data_dir() -> Path:
    """``$TRUSTRAY_DATA``, else ``<cache>/data``."""
    env = os.environ.get("TRUSTRAY_DATA")
    return Path(env).expanduser() if env else cache_dir() / "data"
