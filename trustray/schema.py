"""The versioned result schema: one row per (config, item, generation).

Unscored values are null, never NaN: ``correct`` is null where a perspective has no notion of
correctness (toxicity), ``score`` is null where no continuous score applies, and calibration
fields are null for methods that read no calibration data. ``scorer_version`` names the
perspective's scoring rules and the DecodingTrust reference (``machine_ethics/2;dt=fork``), plus
the toxicity scorer's version on toxicity rows.

Identity (version 2): ``config_id`` and ``setting_id`` (``trustray.identity``) are hashes of
the specs in the ``*_spec`` columns, which hold each spec as canonical JSON, so every spec
field reaches every row. The flat columns beside them (method, bits, ..., calib_seed) are a
query convenience derived from those specs (``trustray.columns``). Version 1 rows lack the spec columns and had
config ids that pooled settings; they are refused with instructions. Nested values (item metadata, parse extras, sampling
parameters) are canonical JSON strings so every reader (pyarrow, DuckDB, Polars, pandas,
``ray.data``) sees the same flat table.
"""

from __future__ import annotations

import pyarrow as pa

from trustray.columns import spec_columns

SCHEMA_VERSION = 2

RESULT_SCHEMA = pa.schema(
    [
        # provenance: what produced the row
        pa.field("schema_version", pa.int32(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("config_id", pa.string(), nullable=False),
        pa.field("setting_id", pa.string(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_fingerprint", pa.string(), nullable=False),
        pa.field("model_size_bytes", pa.int64()),  # the checkpoint's files on disk
        pa.field("precision", pa.string()),  # as served: "bf16", "W4A16", "bf16 2:4-sparse", ...
        pa.field("served_dtype", pa.string()),  # the engine's compute dtype, e.g. "bfloat16"
        pa.field("weight_bytes", pa.int64()),  # bytes the weights need at that precision
        # every compression and calibration spec field (method, bits, ..., calib_seed)
        *(c.arrow_field() for c in spec_columns()),
        # every spec as canonical JSON (trustray.identity.spec_columns); calibration null without one
        pa.field("model_spec", pa.string(), nullable=False),
        pa.field("compression_spec", pa.string(), nullable=False),
        pa.field("calibration_spec", pa.string()),
        pa.field("eval_spec", pa.string(), nullable=False),
        pa.field("engine_spec", pa.string(), nullable=False),
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
        pa.field("refused", pa.bool_(), nullable=False),  # an explicit refusal
        pa.field("unparsed", pa.bool_(), nullable=False),  # no valid label, and not an explicit refusal
        pa.field("score", pa.float64()),
        pa.field("scorer_name", pa.string()),
        pa.field("scorer_version", pa.string()),
        pa.field("item_meta", pa.string()),  # JSON
        pa.field("parsed_extra", pa.string()),  # JSON
    ],
    metadata={"trustray.schema_version": str(SCHEMA_VERSION)},
)

COLUMNS: tuple[str, ...] = tuple(RESULT_SCHEMA.names)
