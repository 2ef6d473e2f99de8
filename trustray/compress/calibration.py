"""The calibration token set: text source → tokens → ``num_samples`` windows drawn by seed.

The seed alone decides which windows are drawn and their order (Python's ``random.Random``,
whose sequence is fixed across platforms and versions), so the same spec and tokenizer give
the same tokens everywhere.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustray.compress.spec import CalibrationSpec
from trustray.data import DataDir, DataError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

WIKITEXT2 = "wikitext2"
# The bundle has WikiText-2 valid and test only; test is kept for perplexity, so calibration
# draws from valid.
WIKITEXT2_FILE = "wikitext-2/valid.txt"
LOCAL_SUFFIXES = (".txt", ".jsonl", ".json")
# Hub aliases: name → (path, load_dataset kwargs).
HUB_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "c4": ("allenai/c4", {"data_files": "en/c4-train.00000-of-01024.json.gz", "split": "train"}),
}


@dataclass(frozen=True)
class CalibrationSource:
    """Where the calibration text comes from and a digest of its content (or its name)."""

    kind: str  # "wikitext2" | "file" | "hub"
    location: str
    digest: str


@dataclass(frozen=True)
class CalibrationSet:
    """``input_ids`` of shape ``[num_samples, seq_len]``, in draw order."""

    input_ids: torch.Tensor
    source: CalibrationSource

    def dataloader(self) -> DataLoader:
        """One sample per batch, in draw order, as llm-compressor's pipelines expect."""
        import torch
        from torch.utils.data import DataLoader

        rows = [
            {"input_ids": row.unsqueeze(0), "attention_mask": torch.ones(1, row.numel(), dtype=torch.long)}
            for row in self.input_ids
        ]
        return DataLoader(rows, batch_size=None, shuffle=False)

    def digest(self) -> str:
        """sha256 of the token ids (identifies the exact calibration data)."""
        return hashlib.sha256(self.input_ids.numpy().astype("<i8").tobytes()).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_source(spec: CalibrationSpec, data_dir: str | Path | None = None) -> CalibrationSource:
    """Locate the calibration text without reading it in full (cheap; used in cache keys)."""
    name = spec.dataset
    if name == WIKITEXT2:
        path = DataDir(data_dir).path(WIKITEXT2_FILE)
        return CalibrationSource(WIKITEXT2, str(path), _file_digest(path))
    local = Path(name).expanduser()
    if local.exists() or name.endswith(LOCAL_SUFFIXES) or name.startswith((".", "/", "~")):
        if not local.is_file():
            raise DataError(f"calibration file {name!r} not found")
        return CalibrationSource("file", str(local.resolve()), _file_digest(local))
    return CalibrationSource("hub", name, "hub:" + name)


def _records_text(records: list[Any], where: str) -> str:
    out = []
    for i, rec in enumerate(records):
        if isinstance(rec, str):
            out.append(rec)
        elif isinstance(rec, dict) and isinstance(rec.get("text"), str):
            out.append(rec["text"])
        else:
            raise DataError(f"{where}: record {i} has no 'text' string")
    return "\n\n".join(out)


def load_text(source: CalibrationSource) -> str:
    """The full calibration text of ``source``."""
    if source.kind == "hub":
        return _hub_text(source.location)
    path = Path(source.location)
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        try:
            records = [json.loads(line) for line in raw.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: corrupt JSON line ({e})") from e
        return _records_text(records, str(path))
    if path.suffix == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of strings or {{'text': ...}} records")
        return _records_text(data, str(path))
    return raw


def _hub_text(name: str, max_records: int = 20000) -> str:
    path, kwargs = HUB_ALIASES.get(name, (name, {"split": "train"}))
    try:
        from datasets import load_dataset

        ds = load_dataset(path, **kwargs)
        column = "text" if "text" in ds.column_names else ds.column_names[0]
        return "\n\n".join(str(t) for t in ds.select(range(min(len(ds), max_records)))[column])
    except Exception as e:  # noqa: BLE001 - offline, missing, or gated all mean the same here
        raise DataError(
            f"calibration dataset {name!r} is not reachable on the Hugging Face hub ({type(e).__name__}); "
            f"use 'wikitext2' or a local .txt/.jsonl file"
        ) from None


def draw_windows(n_tokens: int, spec: CalibrationSpec) -> list[int]:
    """Start offsets of the ``num_samples`` windows, decided by ``spec.seed`` alone."""
    span = n_tokens - spec.seq_len
    if span < 1:
        raise DataError(
            f"calibration text has {n_tokens} tokens, fewer than seq_len={spec.seq_len} + 1"
        )
    rng = random.Random(spec.seed)
    return [rng.randrange(span) for _ in range(spec.num_samples)]


def build_calibration(
    spec: CalibrationSpec, tokenizer: Any, data_dir: str | Path | None = None
) -> CalibrationSet:
    """Tokenise the source once and cut ``num_samples`` windows of ``seq_len`` tokens."""
    import torch

    source = resolve_source(spec, data_dir)
    text = load_text(source)
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    tokens = torch.tensor(ids, dtype=torch.long)
    starts = draw_windows(tokens.numel(), spec)
    windows = torch.stack([tokens[s : s + spec.seq_len] for s in starts])
    return CalibrationSet(input_ids=windows, source=source)
