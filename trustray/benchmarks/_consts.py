"""Lazy access to the prompts.json constants a perspective's ``parse`` needs.

``items(data, ...)`` binds the data directory it was given; a process that only parses
(an evaluator that received items from elsewhere) falls back to the default data directory.
"""

from __future__ import annotations

from typing import Any

from trustray.data import DataDir


class Constants:
    """Named constants of one perspective, loaded once from a data directory."""

    def __init__(self, perspective: str, names: tuple[str, ...]) -> None:
        self.perspective = perspective
        self.names = names
        self._values: dict[str, Any] | None = None

    def bind(self, data: DataDir) -> None:
        self._values = {n: data.constant(self.perspective, n) for n in self.names}

    def __getitem__(self, name: str) -> Any:
        if self._values is None:
            self.bind(DataDir())
        assert self._values is not None
        return self._values[name]
