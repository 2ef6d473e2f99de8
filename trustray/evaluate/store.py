"""The results store: one Parquet file per shard, written atomically, never rewritten.

Layout: ``<run>/results/config=<id>/perspective=<p>/shard-<k>.parquet`` (hive-partitioned).
A shard is written to a dot-prefixed temp file in the same directory and renamed into
place, so readers (which ignore dot-files) never see a partial shard, and a shard that
exists is done.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from trustray.evaluate.plan import Shard
from trustray.rundir import RunDir
from trustray.schema import RESULT_SCHEMA, SCHEMA_VERSION


def shard_path(run_dir: Path | RunDir, shard: Shard) -> Path:
    return RunDir(run_dir).shard(shard.config_id, shard.perspective, shard.name)


def is_committed(run_dir: Path, shard: Shard) -> bool:
    return shard_path(run_dir, shard).exists()


def write_table_atomic(table: pa.Table, path: Path, *, replace: bool = False) -> bool:
    """Write ``table`` to ``path`` via a dot-prefixed temp file; False if ``path`` already exists
    (with ``replace``, it is written over: a reader sees the old file or the new one, never a part)."""
    if path.exists() and not replace:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with pq.ParquetWriter(tmp, table.schema) as writer:
            writer.write_table(table)
        if path.exists() and not replace:  # another attempt of the same shard committed first: keep it
            tmp.unlink()
            return False
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def write_shard(run_dir: Path, shard: Shard, rows: Sequence[dict[str, Any]]) -> bool:
    """Commit a shard's rows (validated against the result schema)."""
    table = pa.Table.from_pylist(list(rows), schema=RESULT_SCHEMA)
    return write_table_atomic(table, shard_path(run_dir, shard))


def read_config_rows(run_dir: Path, config_id: str, perspectives: Sequence[str] | None = None) -> pa.Table:
    """Every committed row of one config (optionally only some perspectives)."""
    files = [
        str(p) for p in RunDir(run_dir).shard_files(config_id)
        if perspectives is None or RunDir.perspective_of(p) in perspectives
    ]
    if not files:
        return RESULT_SCHEMA.empty_table()
    return ds.dataset(files, schema=RESULT_SCHEMA, format="parquet").to_table()


def stored_schema_versions(run_dir: Path) -> set[int]:
    """Schema versions of a run's committed shards (one shard read per config directory)."""
    versions: set[int] = set()
    run = RunDir(run_dir)
    for config_id in run.result_config_ids():
        shard = next(iter(run.shard_files(config_id)), None)
        if shard is None:
            continue
        meta = pq.read_schema(shard).metadata or {}
        versions.add(int(meta.get(b"trustray.schema_version", b"1")))
    return versions


def foreign_schema_message(run_dir: Path, versions: set[int]) -> str | None:
    """Why a run directory whose shards have other schema versions cannot be used, or None."""
    old = sorted(versions - {SCHEMA_VERSION})
    if not old:
        return None
    return (
        f"{run_dir} holds results of schema version {', '.join(map(str, old))}; this trustray writes and reads "
        f"version {SCHEMA_VERSION} (config and setting ids now cover every spec field). Re-run the sweep or "
        "eval into a new run directory (--name / --run), or report the old run with the trustray that wrote it"
    )


def committed_engines(run_dir: Path, config_id: str) -> set[tuple[str, str]]:
    """The distinct ``(engine_name, engine_version)`` of one config's committed rows."""
    files = [str(p) for p in RunDir(run_dir).shard_files(config_id)]
    if not files:
        return set()
    table = ds.dataset(files, schema=RESULT_SCHEMA, format="parquet").to_table(
        columns=["engine_name", "engine_version"]
    )
    return set(zip(table["engine_name"].to_pylist(), table["engine_version"].to_pylist(), strict=True))
