"""The DecodingTrust perspectives and MMLU; importing this package registers them all."""

from trustray.benchmarks import adv_demonstration
from trustray.benchmarks import advglue
from trustray.benchmarks import fairness
from trustray.benchmarks import machine_ethics
from trustray.benchmarks import mmlu
from trustray.benchmarks import ood
from trustray.benchmarks import privacy
from trustray.benchmarks import stereotype
from trustray.benchmarks import toxicity
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
