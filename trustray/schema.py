"""The versioned result schema: one row per (config, item, generation).

Unscored values are null, never NaN: ``correct`` is null where a perspective has no notion of
correctness (toxicity), ``score`` is null where no continuous score applies, and calibration
fields are null for the dense baseline. Nested values (item metadata, parse extras, sampling
parameters) are canonical JSON strings so every reader (pyarrow, DuckDB, Polars, pandas,
``ray.data``) sees the same flat table.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

RESULT_SCHEMA = pa.schema(
    [
        # provenance: what produced the row
        pa.field("schema_version", pa.int32(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("config_id", pa.string(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_fingerprint", pa.string(), nullable=False),
        pa.field("model_size_bytes", pa.int64()),
        pa.field("method", pa.string(), nullable=False),  # none | gptq | awq | sparsegpt | wanda | magnitude
        pa.field("bits", pa.int32()),
        pa.field("group_size", pa.int32()),
        pa.field("sparsity", pa.float64()),
        pa.field("structure", pa.string()),  # "2:4", "4:8" or null (unstructured)
        pa.field("calib_dataset", pa.string()),
        pa.field("calib_samples", pa.int32()),
        pa.field("calib_seed", pa.int32()),
        pa.field("profile", pa.string(), nullable=False),
        pa.field("render_mode", pa.string(), nullable=False),
        pa.field("data_source", pa.string()),
        pa.field("engine_name", pa.string(), nullable=False),
        pa.field("engine_version", pa.string(), nullable=False),
        # false: the engine may answer the same request differently in another run (vLLM's
        # batching); null in rows written before the column existed
        pa.field("engine_reproducible", pa.bool_()),
        # the item and its generation
        pa.field("perspective", pa.string(), nullable=False),
        pa.field("scenario", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("generation_index", pa.int32(), nullable=False),
        pa.field("prompt_hash", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("temperature", pa.float64(), nullable=False),
        pa.field("top_p", pa.float64(), nullable=False),
        pa.field("top_k", pa.int32(), nullable=False),
        pa.field("max_tokens", pa.int32(), nullable=False),
        pa.field("n", pa.int32(), nullable=False),
        pa.field("output_text", pa.string(), nullable=False),
        pa.field("finish_reason", pa.string()),
        pa.field("prompt_tokens", pa.int32()),
        pa.field("output_tokens", pa.int32()),
        pa.field("latency_s", pa.float64()),
        # parse and score
        pa.field("parsed_label", pa.string()),
        pa.field("gold", pa.string()),
        pa.field("correct", pa.bool_()),
        pa.field("refused", pa.bool_(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("scorer_name", pa.string()),
        pa.field("scorer_version", pa.string()),
        pa.field("item_meta", pa.string()),  # JSON
        pa.field("parsed_extra", pa.string()),  # JSON
    ],
    metadata={"trustray.schema_version": str(SCHEMA_VERSION)},
)

COLUMNS: tuple[str, ...] = tuple(RESULT_SCHEMA.names)
