"""The DecodingTrust perspectives and MMLU; importing this package registers them all."""

from trustray.benchmarks import fairness, privacy, stereotype, toxicity
from trustray.benchmarks import adv_demonstration, advglue, machine_ethics, mmlu, ood
from trustray.benchmarks.base import (
    BENCHMARKS,
    Benchmark,
    EvalContext,
    Item,
    Parsed,
    PerspectiveScore,
    ScoredRow,
    item_seed,
    stratified_subset,
)

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "EvalContext",
    "Item",
    "Parsed",
    "PerspectiveScore",
    "ScoredRow",
    "adv_demonstration",
    "advglue",
    "fairness",
    "item_seed",
    "machine_ethics",
    "mmlu",
    "ood",
    "privacy",
    "stereotype",
    "stratified_subset",
    "toxicity",
]
