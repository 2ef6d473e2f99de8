"""Where trustray keeps its cache and finds its data (no I/O at import time)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """``$TRUSTRAY_CACHE``, else ``~/.cache/trustray``."""
    return Path(os.environ.get("TRUSTRAY_CACHE") or Path.home() / ".cache" / "trustray").expanduser()


def default_data_dir() -> Path:
    """``$TRUSTRAY_DATA``, else ``<cache>/data``."""
    env = os.environ.get("TRUSTRAY_DATA")
    return Path(env).expanduser() if env else cache_dir() / "data"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (released when the holder exits, even by a crash)."""
    import fcntl

    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
