"""Builders for results stores with known values, shared by the report tests (no tests here)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from trustray import identity
from trustray.columns import flat_values
from trustray.compress.size import precision_label
from trustray.config import CalibrationSpec, CompressionSpec, EngineSpec, EvalSpec, ModelSpec
from trustray.schema import RESULT_SCHEMA, SCHEMA_VERSION

RUN_ID = "run-test"


def config(
    config_id: str, method: str, *, bits: int | None = None, sparsity: float | None = None,
    structure: str | None = None, seed: int | None = None, size: int = 1_000_000, group_size: int | None = None,
    act_order: bool = False, seq_len: int = 512, weight_bytes: int | None = None,
) -> dict[str, Any]:
    """The provenance fields of one compression config (one calibration seed), built from specs
    the way the pipeline builds them; ``config_id`` is given (short, readable), ``setting_id`` derived."""
    comp = CompressionSpec(method=method, bits=bits, group_size=group_size, sparsity=sparsity,
                           structure=structure, act_order=act_order)
    calib = None if method in ("none", "magnitude") else CalibrationSpec(num_samples=16, seq_len=seq_len,
                                                                         seed=seed or 0)
    ident = identity.config_identity(ModelSpec(), "fp0", comp, calib, EvalSpec(profile="smoke"), EngineSpec())
    return {
        "config_id": config_id, "setting_id": identity.setting_id(ident), **flat_values(comp, calib),
        "model_size_bytes": size, "weight_bytes": weight_bytes if weight_bytes is not None else size // 2,
        "precision": precision_label(comp, "bfloat16"), "served_dtype": "bfloat16",
        **identity.spec_columns(ident),
    }


def provenance(config_id: str = "cfg0", method: str = "none", **overrides: Any) -> dict[str, Any]:
    """The provenance an evaluator stamps on every row of one config (``run_shard``'s ``provenance``)."""
    return {"run_id": RUN_ID, "model_name": "smollm2-135m", "model_fingerprint": "fp0", "profile": "smoke",
            "render_mode": "chat_template", "data_source": "shared", "engine_name": "test", "engine_version": "0",
            **config(config_id, method), **overrides}


def row(cfg: dict[str, Any], perspective: str, item_id: str, gen: int = 0, *, correct: bool | None = None,
        score: float | None = None, refused: bool = False, text: str = "ok", scenario: str = "s",
        gold: str | None = None, label: str | None = None, meta: dict | None = None,
        extra: dict | None = None, profile: str = "smoke", unparsed: bool = False,
        scorer_version: str | None = None) -> dict[str, Any]:
    """One full result row; every schema field is set."""
    return {
        "schema_version": SCHEMA_VERSION, "run_id": RUN_ID, "model_name": "smollm2-135m",
        "model_fingerprint": "fp0", "profile": profile, "render_mode": "chat_template",
        "data_source": "shared", "engine_name": "hf", "engine_version": "0",
        **cfg,
        "perspective": perspective, "scenario": scenario, "item_id": item_id, "generation_index": gen,
        "prompt_hash": "h", "seed": 1, "temperature": 0.0, "top_p": 1.0, "top_k": 50, "max_tokens": 16,
        "n": 1, "output_text": text, "finish_reason": "stop", "prompt_tokens": 3, "output_tokens": 2,
        "latency_s": 0.01, "parsed_label": label, "gold": gold, "correct": correct, "refused": refused,
        "unparsed": unparsed, "score": score, "scorer_name": "local" if score is not None else None,
        "scorer_version": scorer_version or ("1" if score is not None else None),
        "item_meta": json.dumps(meta or {}, sort_keys=True), "parsed_extra": json.dumps(extra or {}, sort_keys=True),
    }


def write_run(run_dir: Path, rows: Iterable[dict[str, Any]], shard_rows: int = 7) -> Path:
    """Write rows as committed shards ``results/config=<id>/perspective=<p>/shard-<k>.parquet``,
    plus an uncommitted dot-prefixed temp file holding garbage that readers must ignore."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["config_id"], r["perspective"]), []).append(r)
    for (cid, p), rs in groups.items():
        d = run_dir / "results" / f"config={cid}" / f"perspective={p}"
        d.mkdir(parents=True, exist_ok=True)
        for k in range(0, len(rs), shard_rows):
            pq.write_table(pa.Table.from_pylist(rs[k : k + shard_rows], schema=RESULT_SCHEMA), d / f"shard-{k // shard_rows}.parquet")
        (d / ".shard-99.parquet.tmp").write_bytes(b"not parquet")
    return run_dir


def write_perplexity(run_dir: Path, values: dict[str, float]) -> None:
    for cid, ppl in values.items():
        d = run_dir / "utility" / f"config={cid}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"config_id": [cid], "perplexity": [ppl], "tokens": [1000]}), d / "perplexity.parquet")


def flatten(rows: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for rs in rows for r in rs]
