"""Reports on a run's results: trust tables, calibration-seed statistics, paired deltas against
the dense model, plots and an offline HTML page."""

from trustray.report.build import ReportFiles, write_report
from trustray.scoring.outcomes import item_outcomes
from trustray.scoring.scores import perspective_score, scored_rows
from trustray.report.stats import BootstrapSpec
from trustray.report.store import ReportError, read_perplexity, read_results
from trustray.report.summary import Tables, build_tables

__all__ = [
    "BootstrapSpec",
    "ReportError",
    "ReportFiles",
    "Tables",
    "build_tables",
    "item_outcomes",
    "perspective_score",
    "read_perplexity",
    "read_results",
    "scored_rows",
    "write_report",
]
