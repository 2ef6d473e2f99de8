"""Ray wrapper of the evaluator: an async actor that calls the model through its Serve handle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray

from trustray.benchmarks.base import EvalContext, Item
from trustray.evaluate.evaluator import Evaluator, ShardResult
from trustray.evaluate.plan import Shard


@ray.remote(max_restarts=2, max_task_retries=2)
class EvaluatorActor:
    """Stateless between shards: a killed actor restarts and its shard is simply run again."""

    def __init__(self, toxicity_scorer: str = "local-calibrated") -> None:
        # Items carry the prompt constants their parse needs: no data directory here.
        self.evaluator = Evaluator(toxicity_scorer)
        self._handles: dict[str, Any] = {}

    def warm(self, tokenizer_path: str) -> None:
        """Load the tokenizer the shards will count prompt tokens with, ahead of the first shard."""
        self.evaluator.token_counter(tokenizer_path)

    def _client(self, app_name: str):
        if app_name not in self._handles:
            from trustray.serve import model_handle

            self._handles[app_name] = model_handle(app_name)
        handle = self._handles[app_name]
        return lambda request: handle.generate.remote(request)

    async def run_shard(
        self,
        run_dir: str,
        shard: Shard,
        items: Sequence[Item],
        ctx: EvalContext,
        provenance: Mapping[str, Any],
        app_name: str,
        tokenizer_path: str | None = None,
    ) -> ShardResult:
        return await self.evaluator.run_shard(
            Path(run_dir), shard, items, ctx, provenance, self._client(app_name), tokenizer_path
        )

    def pid(self) -> int:
        import os

        return os.getpid()
