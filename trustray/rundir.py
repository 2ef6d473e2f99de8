"""The run directory's layout, in one place.

::

    <run>/
      sweep.json                      the sweep spec a sweep run was made by
      eval.json                       the eval/engine specs of a run made by ``trustray eval``
      configs/<config_id>.json        each config's identity, spec and checkpoint
      results/config=<id>/perspective=<p>/
        shard-<k>.parquet             committed result rows (hive-partitioned)
        _plan.json                    the shard plan ("_" files are invisible to Parquet readers)
      utility/config=<id>/perplexity.parquet
      tune/                           Ray Tune's experiment state (resume)
      report/                         the report's outputs (see :class:`ReportFiles`)

Every module that reads or writes a run goes through :class:`RunDir`; the layout must stay
as it is, so that old runs keep reading and resuming.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RESULTS = "results"
UTILITY = "utility"
CONFIGS = "configs"
TUNE = "tune"
REPORT = "report"
SWEEP_RECORD = "sweep.json"
EVAL_RECORD = "eval.json"
PLAN_FILE = "_plan.json"
PERPLEXITY_FILE = "perplexity.parquet"
SHARD_GLOB = "perspective=*/shard-*.parquet"


@dataclass(frozen=True)
class ReportFiles:
    """The files a report writes into its output directory."""

    out_dir: Path
    summary_parquet: Path
    summary_csv: Path
    summary_md: Path
    html: Path
    paired_csv: Path
    seed_variance_csv: Path
    scores_long: Path

    @classmethod
    def under(cls, out_dir: str | os.PathLike[str]) -> ReportFiles:
        """The report's files in ``out_dir``."""
        out = Path(out_dir)
        return cls(
            out_dir=out, summary_parquet=out / "summary.parquet", summary_csv=out / "summary.csv",
            summary_md=out / "summary.md", html=out / "report.html", paired_csv=out / "paired.csv",
            seed_variance_csv=out / "seed_variance.csv", scores_long=out / "scores_long.parquet",
        )


@dataclass(frozen=True)
class RunDir:
    """One run directory; every path of the run layout comes from here."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # a str, a Path or another RunDir

    @classmethod
    def under(cls, storage_path: str | os.PathLike[str], name: str) -> RunDir:
        """The run ``name`` in the storage directory (runs go to ``<storage>/<name>``)."""
        return cls(Path(storage_path).expanduser().resolve() / name)

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    # -- records ----------------------------------------------------------------------------

    @property
    def sweep_record(self) -> Path:
        return self.root / SWEEP_RECORD

    @property
    def eval_record(self) -> Path:
        return self.root / EVAL_RECORD

    @property
    def configs(self) -> Path:
        return self.root / CONFIGS

    def config_record(self, config_id: str) -> Path:
        """``configs/<config_id>.json``."""
        return self.configs / f"{config_id}.json"

    def config_records(self) -> list[Path]:
        """Every config record of the run, sorted."""
        return sorted(self.configs.glob("*.json"))

    # -- results ----------------------------------------------------------------------------

    @property
    def results(self) -> Path:
        return self.root / RESULTS

    def config_results(self, config_id: str) -> Path:
        """``results/config=<id>``."""
        return self.results / f"config={config_id}"

    def perspective_results(self, config_id: str, perspective: str) -> Path:
        """``results/config=<id>/perspective=<p>``: one perspective's shards and plan."""
        return self.config_results(config_id) / f"perspective={perspective}"

    def shard(self, config_id: str, perspective: str, name: str) -> Path:
        """The Parquet file of shard ``name`` (``shard-<k>``)."""
        return self.perspective_results(config_id, perspective) / f"{name}.parquet"

    def plan(self, config_id: str, perspective: str) -> Path:
        """The shard plan recorded for one config and perspective."""
        return self.perspective_results(config_id, perspective) / PLAN_FILE

    def result_config_ids(self) -> list[str]:
        """Ids of the configs with a results directory, sorted."""
        return sorted(p.name.removeprefix("config=") for p in self.results.glob("config=*"))

    def shard_files(self, config_id: str | None = None) -> list[Path]:
        """Committed shards of one config, or of every config. Dot-prefixed temp files never match."""
        if config_id is not None:
            return sorted(self.config_results(config_id).glob(SHARD_GLOB))
        return sorted(self.results.glob(f"config=*/{SHARD_GLOB}"))

    @staticmethod
    def perspective_of(shard_file: Path) -> str:
        """The perspective a shard file belongs to (its partition directory)."""
        return shard_file.parent.name.removeprefix("perspective=")

    # -- utility, tune, report --------------------------------------------------------------

    @property
    def utility(self) -> Path:
        return self.root / UTILITY

    def perplexity(self, config_id: str) -> Path:
        """``utility/config=<id>/perplexity.parquet``."""
        return self.utility / f"config={config_id}" / PERPLEXITY_FILE

    def perplexity_files(self) -> list[Path]:
        return sorted(self.utility.glob(f"config=*/{PERPLEXITY_FILE}"))

    @property
    def tune(self) -> Path:
        return self.root / TUNE

    def report_files(self, out_dir: str | os.PathLike[str] | None = None) -> ReportFiles:
        """The report's files, in ``out_dir`` (default ``<run>/report``)."""
        return ReportFiles.under(out_dir if out_dir is not None else self.root / REPORT)
