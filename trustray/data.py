"""The benchmark data directory: resolution, typed readers and the prompt constants.

Layout and MANIFEST.json are those of the shared data bundle (see the project README).
Nothing here unpickles anything.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from trustray.paths import default_data_dir


class DataError(RuntimeError):
    """A data file is missing, unreadable or does not match its manifest entry."""


class DataDir:
    """A benchmark data directory laid out like the shared bundle."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_data_dir()

    def __repr__(self) -> str:
        return f"DataDir({str(self.root)!r})"

    def path(self, rel: str) -> Path:
        """Absolute path of ``rel``; raises DataError naming the file when it is absent."""
        p = self.root / rel
        if not p.exists():
            raise DataError(
                f"data file {rel!r} not found under {self.root} "
                "(set --data-dir or $TRUSTRAY_DATA, or run `trustray data fetch --from ...`)"
            )
        return p

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def read_json(self, rel: str) -> Any:
        p = self.path(rel)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{rel}: not valid JSON ({e})") from e

    def iter_jsonl(self, rel: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(line_number, record)`` (1-based) for every non-blank line."""
        p = self.path(rel)
        with p.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{rel}:{lineno}: corrupt JSON line ({e})") from e

    def read_csv(self, rel: str, header: bool = True) -> list[dict[str, str]] | list[list[str]]:
        p = self.path(rel)
        with p.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f)) if header else list(csv.reader(f))

    @cached_property
    def _prompts(self) -> dict[str, Any]:
        return self.read_json("decodingtrust/prompts.json")

    def constant(self, perspective: str, name: str) -> Any:
        """The value of a benchmark constant from ``decodingtrust/prompts.json``."""
        try:
            return self._prompts["perspectives"][perspective][name]["value"]
        except KeyError:
            raise DataError(f"prompts.json has no constant {perspective}.{name}") from None

    @property
    def prompts_source(self) -> str:
        """``repo@commit`` the constants were taken from (recorded with results)."""
        return f"{self._prompts['source_repo']}@{self._prompts['source_commit']}"
