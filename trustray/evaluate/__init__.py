"""Evaluation: shard planning, stateless evaluators, the Parquet results store."""

from trustray.evaluate.evaluator import Evaluator, ShardResult
from trustray.evaluate.plan import Shard, plan_shards
from trustray.evaluate.store import is_committed, read_config_rows, shard_path, write_shard

__all__ = [
    "Evaluator", "Shard", "ShardResult", "is_committed", "plan_shards", "read_config_rows", "shard_path",
    "write_shard",
]
