"""A persistent score cache keyed by (scorer name, scorer version, sha256 of the text)."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

from trustray.paths import cache_dir
from trustray.scorers.base import Scorer


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CachedScorer:
    """Wraps a scorer; texts already scored by the same scorer name and version are not re-sent.

    The cache is one sqlite file (default ``<cache>/scores.sqlite``) that several processes
    may share.
    """

    def __init__(self, inner: Scorer, path: str | Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.version = inner.version
        self.path = Path(path) if path is not None else cache_dir() / "scores.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS scores (scorer TEXT, version TEXT, text_sha256 TEXT, score REAL,"
                " PRIMARY KEY (scorer, version, text_sha256))"
            )
        self.hits = 0
        self.misses = 0

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def score(self, texts: list[str]) -> list[float]:
        hashes = [text_hash(t) for t in texts]
        known: dict[str, float] = {}
        with self._lock, self._connect() as db:
            unique = list(dict.fromkeys(hashes))
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                q = ",".join("?" * len(chunk))
                for h, s in db.execute(
                    f"SELECT text_sha256, score FROM scores WHERE scorer=? AND version=? AND text_sha256 IN ({q})",
                    [self.name, self.version, *chunk],
                ):
                    known[h] = s
        todo: dict[str, str] = {}
        for h, t in zip(hashes, texts):
            if h not in known:
                todo.setdefault(h, t)
        self.hits += sum(h in known for h in hashes)
        self.misses += len(todo)
        if todo:
            fresh = self.inner.score(list(todo.values()))
            new = dict(zip(todo, fresh))
            with self._lock, self._connect() as db:
                db.executemany(
                    "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                    [(self.name, self.version, h, s) for h, s in new.items()],
                )
            known.update(new)
        return [known[h] for h in hashes]
