"""Flat spec columns come from the spec models: a new field reaches the result schema, the rows'
provenance and the report's tables without being listed anywhere."""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field
from test_report_fixtures import config, row

from trustray.columns import flat_values, spec_columns
from trustray.compress.spec import CalibrationSpec, CompressionSpec
from trustray.registry import Registry
from trustray.report import build_tables
from trustray.report.summary import SETTING_COLS
from trustray.schema import RESULT_SCHEMA


class _WithDamping(CompressionSpec):
    damping: float | None = Field(default=None, ge=0)
    tag: str = "x"


def test_a_new_spec_field_gets_a_typed_column():
    cols = {c.name: c for c in spec_columns(_WithDamping)}
    assert cols["damping"].arrow_field() == pa.field("damping", pa.float64())
    assert cols["tag"].arrow_type == pa.string() and cols["tag"].spec == "compression"
    assert cols["calib_samples"].field == "num_samples"
    spec = _WithDamping(method="gptq", bits=4, damping=0.1)
    flat = flat_values(spec, CalibrationSpec(seed=3))
    assert flat["damping"] == 0.1 and flat["tag"] == "x" and flat["calib_seed"] == 3


def test_schema_has_every_spec_field_with_its_type():
    for c in spec_columns():
        assert RESULT_SCHEMA.field(c.name) == c.arrow_field()
    assert not RESULT_SCHEMA.field("method").nullable and RESULT_SCHEMA.field("calib_dataset").nullable
    assert RESULT_SCHEMA.field("bits").type == pa.int32() and RESULT_SCHEMA.field("act_order").type == pa.bool_()


def test_every_spec_field_has_a_column_in_the_report_tables():
    import pandas as pd

    cfgs = [config("d0", "none"), config("g0", "gptq", bits=4, group_size=64, seed=0),
            config("g1", "gptq", bits=4, group_size=64, seed=1)]
    rows = pd.DataFrame([row(c, "mmlu", f"mmlu/s/f/{i}", correct=i % 2 == 0) for c in cfgs for i in range(4)])
    tables = build_tables(rows, Registry("perspective"))
    fields = {c.name for c in spec_columns()}
    assert fields <= set(tables.configs.columns)
    assert fields - {"calib_seed"} <= set(SETTING_COLS) <= set(tables.summary.columns)
    g = tables.summary.set_index("setting").loc["gptq w4g64"]
    assert g["calib_samples"] == 16 and g["calib_seeds"] == 2
