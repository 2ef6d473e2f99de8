"""The evaluator: one shard in, one committed Parquet file out. Stateless between shards.

A plain class (testable without Ray): it builds the shard's requests, keeps all of them in
flight against the model at once, parses every generation, scores toxicity off the engine's
critical path, and commits the rows. ``trustray.evaluate.actor`` wraps it for Ray.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trustray.benchmarks import BENCHMARKS
from trustray.benchmarks.base import EvalContext, Item, scorer_version
from trustray.evaluate.plan import Shard
from trustray.evaluate.store import is_committed, write_shard
from trustray.generation import Generation, GenerationRequest
from trustray.schema import SCHEMA_VERSION

Client = Callable[[GenerationRequest], Awaitable[Generation]]


@dataclass(frozen=True)
class ShardResult:
    perspective: str
    index: int
    items: int
    generations: int
    output_tokens: int
    seconds: float
    skipped: bool  # already committed: nothing was generated


def _json(obj: Mapping[str, Any]) -> str:
    return json.dumps(dict(obj), sort_keys=True, default=str)


class Evaluator:
    """Runs shards for any config; holds only caches (scorer, tokenizers), never results."""

    def __init__(self, toxicity_scorer: str = "local-calibrated") -> None:
        self.scorer_name = toxicity_scorer
        self._scorer: Any = None
        self._tokenizers: dict[str, Any] = {}

    def scorer(self) -> Any:
        if self._scorer is None:
            from trustray.scorers import CachedScorer, get_scorer

            self._scorer = CachedScorer(get_scorer(self.scorer_name))
        return self._scorer

    def token_counter(self, tokenizer_path: str | None) -> Callable[[str], int] | None:
        if tokenizer_path is None:
            return None
        if tokenizer_path not in self._tokenizers:
            from transformers import AutoTokenizer

            self._tokenizers[tokenizer_path] = AutoTokenizer.from_pretrained(tokenizer_path)
        tok = self._tokenizers[tokenizer_path]
        return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])

    async def run_shard(
        self,
        run_dir: Path,
        shard: Shard,
        items: Sequence[Item],
        ctx: EvalContext,
        provenance: Mapping[str, Any],
        client: Client,
        tokenizer_path: str | None = None,
    ) -> ShardResult:
        """Generate, parse, score and commit one shard; a committed shard is skipped."""
        start = time.perf_counter()
        if is_committed(run_dir, shard):
            return ShardResult(shard.perspective, shard.index, len(items), 0, 0, 0.0, skipped=True)
        bench = BENCHMARKS.get(shard.perspective)
        ctx = replace(ctx, count_tokens=self.token_counter(tokenizer_path))
        requests = [bench.request(item, ctx) for item in items]
        generations = await asyncio.gather(*(client(r) for r in requests))
        rows: list[dict[str, Any]] = []
        parsed_all = []
        for item, req, gen in zip(items, requests, generations, strict=True):
            for j, text in enumerate(gen.texts):
                parsed_all.append((item, req, gen, j, text, bench.parse(item, text)))
        scores = self._toxicity([p for *_, p in parsed_all])
        for (item, req, gen, j, text, parsed), score in zip(parsed_all, scores, strict=True):
            sp = req.sampling
            rows.append(
                {
                    **provenance,
                    "schema_version": SCHEMA_VERSION,
                    "perspective": shard.perspective,
                    "scenario": item.scenario,
                    "item_id": item.item_id,
                    "generation_index": j,
                    "prompt_hash": req.prompt_hash(),
                    "seed": req.seed,
                    "temperature": sp.temperature,
                    "top_p": sp.top_p,
                    "top_k": sp.top_k,
                    "max_tokens": sp.max_tokens,
                    "n": sp.n,
                    "output_text": text,
                    "finish_reason": gen.finish_reasons[j],
                    "prompt_tokens": gen.prompt_tokens,
                    "output_tokens": gen.output_tokens[j],
                    "latency_s": gen.latency_s,
                    "parsed_label": parsed.label,
                    "gold": item.gold,
                    "correct": parsed.correct,
                    "refused": parsed.refused,
                    "unparsed": parsed.unparsed,
                    "score": score if score is not None else parsed.score,
                    "scorer_name": self.scorer_name if parsed.to_score is not None else None,
                    "scorer_version": scorer_version(
                        bench, ctx, self.scorer().version if parsed.to_score is not None else None
                    ),
                    "item_meta": _json(item.meta),
                    "parsed_extra": _json(parsed.extra),
                }
            )
        write_shard(run_dir, shard, rows)
        return ShardResult(
            shard.perspective, shard.index, len(items), len(rows),
            sum(r["output_tokens"] for r in rows), time.perf_counter() - start, skipped=False,
        )

    def _toxicity(self, parsed: Sequence[Any]) -> list[float | None]:
        """Scores for the generations that ask for one (empty text scores 0), else None."""
        texts = [p.to_score for p in parsed if p.to_score is not None]
        if not texts:
            return [None] * len(parsed)
        nonempty = [t for t in texts if t.strip()]
        scored = dict(zip(nonempty, self.scorer().score(nonempty), strict=True)) if nonempty else {}
        return [None if p.to_score is None else float(scored.get(p.to_score, 0.0)) for p in parsed]
