"""``--set FIELD=VALUE``: any spec field from the command line, typed by YAML, validated with the spec."""

from __future__ import annotations

import pytest
from test_cli_pipeline import TRUSTRAY, run

from trustray.cli.pipeline import _overrides
from trustray.config import SpecError, SweepSpec, TrialSpec, build_spec, parse_assignments, set_fields


def test_assignments_are_typed_by_yaml():
    got = parse_assignments(["compression.act_order=true", "calibration.seq_len=256", "eval.perspectives=[mmlu, ood]",
                             "resources.torch_threads=null", "name=a=b"])
    assert got == {"compression.act_order": True, "calibration.seq_len": 256, "eval.perspectives": ["mmlu", "ood"],
                   "resources.torch_threads": None, "name": "a=b"}
    for bad in ("eval.profile", "=smoke", "eval..profile=smoke"):
        with pytest.raises(SpecError, match="FIELD.PATH=VALUE"):
            parse_assignments([bad])


def test_set_fields_creates_sections_and_refuses_to_descend_into_values():
    data = {"model": {"name": "m"}}
    assert set_fields(data, {"calibration.seq_len": 64, "model.name": "n"}) == {
        "model": {"name": "n"}, "calibration": {"seq_len": 64}}
    assert data == {"model": {"name": "m"}}  # a copy
    with pytest.raises(SpecError, match="model.name is a value"):
        set_fields(data, {"model.name.x": 1})


def test_eval_flags_and_sets_make_one_validated_trial():
    flags = {"compression.method": "gptq", "compression.bits": 4, "compression.group_size": None}
    trial = build_spec(TrialSpec, {}, _overrides(["compression.act_order=true", "calibration.seq_len=256"], **flags))
    assert trial.compression.act_order and trial.compression.group_size is None
    assert trial.calibration is not None and trial.calibration.seq_len == 256
    assert trial.label() == "gptq-w4-act-seed0"
    with pytest.raises(SpecError, match="act_order: method 'none' takes no act_order"):
        build_spec(TrialSpec, {}, _overrides(["compression.act_order=true"], **{"compression.method": "none"}))
    with pytest.raises(SpecError, match="eval.toxicity_scorer: .*did you mean 'local'"):
        build_spec(TrialSpec, {}, {"eval.toxicity_scorer": "locall"})
    with pytest.raises(SpecError, match="eval.dt_template: .*unknown DecodingTrust template 'llama-3'"):
        build_spec(TrialSpec, {}, {"eval.dt_template": "llama-3"})
    assert build_spec(TrialSpec, {}, {"eval.toxicity_scorer": "hf:org/model"}).eval.toxicity_scorer == "hf:org/model"
    with pytest.raises(SpecError, match="eval.profil: Extra inputs are not permitted"):
        build_spec(TrialSpec, {}, {"eval.profil": "smoke"})


def test_sweep_sets_override_the_spec_file():
    spec = SweepSpec(name="s")
    got = build_spec(SweepSpec, spec.model_dump(mode="json"),
                     _overrides(["engine.dtype=float32", "resources.evaluators=3"], **{"eval.profile": "smoke",
                                                                                       "name": None}))
    assert (got.engine.dtype, got.resources.evaluators, got.eval.profile, got.name) == ("float32", 3, "smoke", "s")


def test_eval_cli_reports_a_bad_set_before_starting_anything(tmp_path):
    out = run([TRUSTRAY, "eval", "--set", "compression.act_order=true"], tmp_path)
    assert out.returncode == 2 and "act_order" in out.stderr and "Traceback" not in out.stderr
    out = run([TRUSTRAY, "eval", "--set", "eval.toxicity_scorer=nope", "--set", "engine.backend=hff"], tmp_path)
    assert out.returncode == 2 and "engine.backend" in out.stderr and "eval.toxicity_scorer" in out.stderr
    assert "Traceback" not in out.stderr


def test_eval_spec_is_a_one_trial_sweep():
    from trustray.config import one_trial_sweep

    spec, trial = one_trial_sweep({"compression.method": "gptq", "compression.bits": 4, "calibration.seed": 3,
                                   "calibration.num_samples": 16, "eval.profile": "smoke"}, name="e", storage_path="r")
    assert (spec.name, spec.storage_path, spec.seeds) == ("e", "r", (3,))
    assert trial == spec.trials()[0] and trial.calibration.seed == 3 and trial.calibration.num_samples == 16
    assert trial.compression.bits == 4 and trial.eval.profile == "smoke"
    _, dense = one_trial_sweep({"compression.method": "none", "calibration.seed": 0}, name="e", storage_path="r")
    assert dense.calibration is None and dense.label() == "dense"  # as in a sweep: no calibration to seed
    with pytest.raises(SpecError, match="compressions.0: .*act_order"):
        one_trial_sweep({"compression.method": "none", "compression.act_order": True}, name="e", storage_path="r")
    with pytest.raises(SpecError, match="name"):
        one_trial_sweep({}, name="a/b", storage_path="r")
    with pytest.raises(SpecError, match="eval.perplexity"):
        one_trial_sweep({"engine.backend": "simulated"}, name="e", storage_path="r")
