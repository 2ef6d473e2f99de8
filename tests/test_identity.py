"""Config and setting identities come from the specs: settings that differ in any spec field stay
apart, seeds of one setting pool, old runs are refused, and a run directory keeps to one spec."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_report_fixtures import config, row, write_run

from trustray import identity
from trustray.config import CalibrationSpec, CompressionSpec, EngineSpec, EvalSpec, ModelSpec, SpecError, TrialSpec
from trustray.registry import Registry
from trustray.report import BootstrapSpec, ReportError, build_tables, read_results
from trustray.schema import COLUMNS, RESULT_SCHEMA, SCHEMA_VERSION

SPEC = BootstrapSpec(n_resamples=200, item_resamples=200)


def _ident(**calib: object) -> dict:
    return identity.config_identity(
        ModelSpec(), "fp0", CompressionSpec(method="gptq", bits=4, group_size=64),
        CalibrationSpec(**calib), EvalSpec(profile="smoke"), EngineSpec(),
    )


def test_ids_are_one_length_and_the_setting_ignores_only_the_seed():
    a, b = _ident(seed=0), _ident(seed=1)
    assert len(identity.config_id(a)) == identity.ID_LENGTH == 16
    assert identity.config_id(a) != identity.config_id(b)
    assert identity.setting_id(a) == identity.setting_id(b)
    assert identity.setting_id(_ident(seq_len=256)) != identity.setting_id(a)
    # selection fields (which perspectives, perplexity or not) do not change what a row measures
    other = identity.config_identity(ModelSpec(), "fp0", CompressionSpec(method="gptq", bits=4, group_size=64),
                                     CalibrationSpec(), EvalSpec(profile="smoke", perspectives="mmlu",
                                                                 perplexity=False), EngineSpec())
    assert identity.config_id(other) == identity.config_id(a)
    prof = identity.config_identity(ModelSpec(), "fp0", CompressionSpec(method="gptq", bits=4, group_size=64),
                                    CalibrationSpec(), EvalSpec(profile="quick"), EngineSpec())
    assert identity.config_id(prof) != identity.config_id(a)


def test_spec_columns_carry_every_spec_field_and_round_trip():
    ident = _ident(seed=3, seq_len=128)
    cols = identity.spec_columns(ident)
    assert set(cols) <= set(COLUMNS)
    assert identity.identity_from_row(cols) == ident
    for name, spec in (("compression", CompressionSpec), ("calibration", CalibrationSpec), ("engine", EngineSpec)):
        assert set(json.loads(cols[f"{name}_spec"])) == set(spec.model_fields)
    assert set(json.loads(cols["eval_spec"])) == set(EvalSpec.model_fields) - {"perspectives", "perplexity"}


def test_every_compression_and_calibration_field_has_a_flat_column():
    from trustray.compress.run import CompressedModel
    from trustray.pipeline import flat_columns

    comp = CompressionSpec(method="gptq", bits=4, group_size=64, act_order=True)
    cm = CompressedModel(Path("."), "k", "m", "fp", comp, CalibrationSpec(seq_len=256, seed=2), False, 0.0)
    flat = flat_columns(cm)
    assert set(flat) <= set(COLUMNS)
    assert flat["act_order"] is True and flat["calib_seq_len"] == 256 and flat["calib_seed"] == 2
    assert len(flat) == len(CompressionSpec.model_fields) + len(CalibrationSpec.model_fields)


def _rows(cfgs: dict[str, dict]) -> list[dict]:
    return [row(c, "mmlu", f"mmlu/s/f/{i}", correct=(i + k) % 3 != 0)
            for k, c in enumerate(cfgs.values()) for i in range(6)]


def test_settings_differing_only_in_act_order_or_seq_len_stay_apart(tmp_path):
    cfgs = {
        "a0": config("a0", "gptq", bits=4, group_size=64, seed=0),
        "a1": config("a1", "gptq", bits=4, group_size=64, seed=1),
        "b0": config("b0", "gptq", bits=4, group_size=64, seed=0, act_order=True),
        "c0": config("c0", "gptq", bits=4, group_size=64, seed=0, seq_len=256),
        "c1": config("c1", "gptq", bits=4, group_size=64, seed=1, seq_len=256),
    }
    write_run(tmp_path, _rows(cfgs))
    t = build_tables(read_results(tmp_path), Registry("p"), spec=SPEC)
    s = t.summary.set_index("setting")
    assert len(s) == 3 and s["setting_id"].nunique() == 3
    groups = {frozenset(ids.split(",")) for ids in s["config_ids"]}
    assert groups == {frozenset({"a0", "a1"}), frozenset({"b0"}), frozenset({"c0", "c1"})}
    assert "gptq w4g64 act-order" in s.index
    seq = [x for x in s.index if "seq_len" in x]
    assert sorted(seq) == ["gptq w4g64 (seq_len=256)", "gptq w4g64 (seq_len=512)"]
    assert s.loc["gptq w4g64 (seq_len=256)", "calib_seeds"] == 2


def test_results_of_an_older_schema_are_refused_with_what_to_do(tmp_path):
    from trustray.sweep import check_schema

    old = pa.schema([pa.field("schema_version", pa.int32()), pa.field("config_id", pa.string())],
                    metadata={"trustray.schema_version": "1"})
    d = tmp_path / "results" / "config=abc" / "perspective=mmlu"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"schema_version": [1], "config_id": ["abc"]}, schema=old), d / "shard-00000.parquet")
    with pytest.raises(ReportError, match=r"schema version 1; this trustray writes and reads version 2.*new run"):
        read_results(tmp_path)
    with pytest.raises(SpecError, match="schema version 1"):
        check_schema(tmp_path)
    assert SCHEMA_VERSION == 2 and RESULT_SCHEMA.metadata[b"trustray.schema_version"] == b"2"


def test_eval_records_its_spec_and_refuses_another(tmp_path):
    from trustray.sweep import check_or_record_eval

    run = tmp_path / "eval"
    quick = TrialSpec(eval=EvalSpec(profile="quick"))
    check_or_record_eval(run, quick)
    assert json.loads((run / "eval.json").read_text())["eval"]["profile"] == "quick"
    check_or_record_eval(run, quick)  # the same spec again: fine
    # another compression config or another perspective selection: fine
    check_or_record_eval(run, TrialSpec(compression=CompressionSpec(method="gptq", bits=4),
                                        eval=EvalSpec(profile="quick", perspectives="mmlu")))
    with pytest.raises(SpecError, match=r"eval\.profile differ.*--run"):
        check_or_record_eval(run, TrialSpec(eval=EvalSpec(profile="smoke")))
    with pytest.raises(SpecError, match=r"engine\.batch_size"):
        check_or_record_eval(run, TrialSpec(eval=EvalSpec(profile="quick"), engine=EngineSpec(batch_size=8)))


def test_a_config_record_with_another_identity_is_refused(tmp_path):
    from trustray.compress.run import CompressedModel
    from trustray.pipeline import _write_config_record

    comp = CompressionSpec(method="none")
    cm = CompressedModel(tmp_path, "k", "m", "fp", comp, None, False, 0.0)
    trial = TrialSpec(eval=EvalSpec(profile="smoke"))
    _write_config_record(tmp_path, "cfg", trial, cm)
    _write_config_record(tmp_path, "cfg", trial, cm)
    with pytest.raises(SpecError, match="made by another spec"):
        _write_config_record(tmp_path, "cfg", TrialSpec(eval=EvalSpec(profile="quick")), cm)
