"""Reading a run's results store and its utility tables into pandas frames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from trustray.evaluate.store import foreign_schema_message, stored_schema_versions
from trustray.rundir import RunDir
from trustray.schema import RESULT_SCHEMA, SCHEMA_VERSION

ROW_KEY = ["config_id", "perspective", "item_id", "generation_index"]
#: ``engine_name`` of rows from the simulated engine (``trustray.engines.simulated``).
SIMULATED_ENGINE = "simulated"


class ReportError(ValueError):
    """A run directory that cannot be reported on; the message says what is wrong."""


def read_results(run_dir: str | Path) -> pd.DataFrame:
    """All result rows of a run, one per (config, item, generation), in a stable order.

    Raises ``ReportError`` when the directory or its shards are missing, or when a shard
    has another schema version. Exact duplicate rows (a shard re-committed under another
    name) are dropped; conflicting duplicates are an error.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise ReportError(f"run directory {run} does not exist")
    files = RunDir(run).shard_files()
    if not files:
        raise ReportError(
            f"no results in {run}: expected {RunDir(run).shard('<id>', '<p>', 'shard-<k>')}"
        )
    problem = foreign_schema_message(run, stored_schema_versions(run))
    if problem:
        raise ReportError(problem)
    try:
        table = ds.dataset([str(f) for f in files], schema=RESULT_SCHEMA, format="parquet").to_table()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ReportError(f"cannot read the results of {run}: {e}") from e
    versions = set(table.column("schema_version").unique().to_pylist())
    if versions - {SCHEMA_VERSION}:
        raise ReportError(
            f"results of {run} have schema version(s) {sorted(versions)}; this report reads {SCHEMA_VERSION}"
        )
    engines = set(table.column("engine_name").unique().to_pylist())
    if SIMULATED_ENGINE in engines and engines != {SIMULATED_ENGINE}:
        raise ReportError(
            f"results of {run} mix the simulated engine (scale tests, no model) with real engines "
            f"({', '.join(sorted(engines - {SIMULATED_ENGINE}))}); report them from separate run directories"
        )
    df = table.to_pandas()
    df = df.drop_duplicates().sort_values(ROW_KEY, kind="stable").reset_index(drop=True)
    dup = df.duplicated(ROW_KEY, keep=False)
    if dup.any():
        first = df.loc[dup, ROW_KEY].iloc[0].to_dict()
        raise ReportError(f"results of {run} hold conflicting rows for the same key, e.g. {first}")
    return df


def read_perplexity(run_dir: str | Path) -> pd.DataFrame:
    """Per-config WikiText-2 perplexity (``config_id, perplexity, tokens``); empty when absent."""
    files = RunDir(run_dir).perplexity_files()
    cols = ["config_id", "perplexity", "tokens"]
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(cols, ["object", "float64", "Int64"])})
    frames = [pd.read_parquet(f, columns=cols) for f in files]
    return pd.concat(frames, ignore_index=True)
