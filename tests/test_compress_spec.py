"""Fast, pure tests of the compression/calibration specs, recipes mapping and CLI errors."""

from __future__ import annotations

import json
import random

import pytest
from pydantic import ValidationError

from trustray.compress import CalibrationSpec, CompressionSpec, default_group_size, parse_structure
from trustray.compress.calibration import draw_windows, resolve_source
from trustray.compress.run import cache_key, layer_widths
from trustray.data import DataError

SMOLLM_DIMS = [576, 1536]


def _field_of(exc: ValidationError) -> str:
    """The field an error names: its location, else the prefix of a model-level message."""
    err = exc.errors()[0]
    if err["loc"]:
        return str(err["loc"][0])
    return err["msg"].removeprefix("Value error, ").split(":")[0]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"method": "awq", "bits": 2}, "bits"),
        ({"method": "gptq", "bits": 16}, "bits"),
        ({"method": "gptq"}, "bits"),
        ({"method": "wanda", "sparsity": 1.0}, "sparsity"),
        ({"method": "wanda", "sparsity": -0.1}, "sparsity"),
        ({"method": "sparsegpt", "structure": "3:2"}, "structure"),
        ({"method": "sparsegpt", "structure": "2-4"}, "structure"),
        ({"method": "magnitude", "structure": "0:4"}, "structure"),
        ({"method": "awq", "bits": 4, "act_order": True}, "act_order"),
        ({"method": "wanda", "bits": 4, "sparsity": 0.5}, "bits"),
        ({"method": "wanda", "sparsity": 0.5, "structure": "2:4"}, "sparsity/structure"),
        ({"method": "magnitude"}, "sparsity/structure"),
        ({"method": "gptq", "bits": 4, "sparsity": 0.5}, "sparsity/structure"),
        ({"method": "none", "bits": 4}, "bits"),
        ({"method": "gptq", "bits": 4, "group_size": 0}, "group_size"),
        ({"method": "quip", "bits": 4}, "method"),
        ({"method": "gptq", "bits": 4, "groupsize": 64}, "groupsize"),
    ],
)
def test_invalid_specs_name_their_field(fields: dict, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        CompressionSpec(**fields)
    assert _field_of(e.value) == field


def test_group_size_must_divide_every_layer() -> None:
    with pytest.raises(ValidationError) as e:
        CompressionSpec.for_model(SMOLLM_DIMS, method="gptq", bits=4, group_size=128)  # 576 % 128 != 0
    assert _field_of(e.value) == "group_size"
    assert "576" in str(e.value)
    assert CompressionSpec.for_model(SMOLLM_DIMS, method="gptq", bits=4, group_size=32).group_size == 32


def test_default_group_size_is_largest_fitting() -> None:
    assert default_group_size([576, 1536]) == 64
    assert default_group_size([4096, 11008]) == 128
    assert default_group_size([96, 160]) == 32
    with pytest.raises(ValueError):
        default_group_size([100])
    assert CompressionSpec(method="awq", bits=3).resolved(SMOLLM_DIMS).group_size == 64
    # pruning specs are untouched by resolution
    assert CompressionSpec(method="wanda", sparsity=0.5).resolved(SMOLLM_DIMS).group_size is None


def test_structure_parsing_and_target_sparsity() -> None:
    assert parse_structure("2:4") == (2, 4)
    assert CompressionSpec(method="wanda", structure=" 4:8").structure == "4:8"
    assert CompressionSpec(method="wanda", structure="2:4").target_sparsity == 0.5
    assert CompressionSpec(method="wanda", structure="1:4").target_sparsity == 0.75
    assert CompressionSpec(method="magnitude", sparsity=0.3).target_sparsity == 0.3


def test_specs_are_frozen_and_hash_canonically() -> None:
    a = CompressionSpec(method="gptq", bits=4, group_size=64)
    b = CompressionSpec.model_validate(json.loads(a.canonical()))
    assert a == b and a.spec_hash() == b.spec_hash()
    assert a.spec_hash() != CompressionSpec(method="gptq", bits=3, group_size=64).spec_hash()
    assert a.canonical() == json.dumps(a.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    with pytest.raises(ValidationError):
        a.bits = 8  # type: ignore[misc]
    c = CalibrationSpec(seed=1)
    assert c.spec_hash() != CalibrationSpec(seed=2).spec_hash()
    with pytest.raises(ValidationError):
        CalibrationSpec(num_samples=0)
    with pytest.raises(ValidationError):
        CalibrationSpec(seed=-1)


def test_labels() -> None:
    assert CompressionSpec(method="gptq", bits=4, group_size=64, act_order=True).label() == "gptq-w4-g64-act"
    assert CompressionSpec(method="wanda", structure="2:4").label() == "wanda-2:4"
    assert CompressionSpec(method="sparsegpt", sparsity=0.5).label() == "sparsegpt-s0.5"
    assert CompressionSpec(method="none").label() == "dense"


def test_methods_carry_their_family() -> None:
    from typing import get_args

    from trustray.compress.recipes import METHODS, needs_calibration
    from trustray.compress.spec import METHOD_FAMILIES, Method, family_of

    assert set(METHOD_FAMILIES) == set(get_args(Method))
    assert set(METHODS.names()) == {m for m, f in METHOD_FAMILIES.items() if f != "none"}  # every recipe has a family
    dense = CompressionSpec(method="none")
    assert dense.family == "none" and dense.is_dense and not needs_calibration(dense)
    gptq = CompressionSpec(method="gptq", bits=4)
    assert gptq.family == "quantisation" and gptq.is_quantization and not gptq.is_dense
    wanda = CompressionSpec(method="wanda", sparsity=0.5)
    assert wanda.family == "pruning" and wanda.is_pruning
    assert family_of("awq") == "quantisation" and family_of("magnitude") == "pruning" and family_of("qat") is None


def test_seed_alone_decides_windows() -> None:
    spec = CalibrationSpec(num_samples=16, seq_len=64, seed=3)
    first = draw_windows(10_000, spec)
    assert first == draw_windows(10_000, spec)
    assert first != draw_windows(10_000, spec.model_copy(update={"seed": 4}))
    assert len(first) == 16 and all(0 <= s < 10_000 - 64 for s in first)
    # order matters too: a permutation is a different calibration set
    shuffled = first[:]
    random.Random(0).shuffle(shuffled)
    assert shuffled != first
    with pytest.raises(DataError):
        draw_windows(64, spec)


def test_calibration_sources(tmp_path, data_dir) -> None:
    wiki = resolve_source(CalibrationSpec(), data_dir.root)
    assert wiki.kind == "wikitext2" and wiki.location.endswith("valid.txt") and len(wiki.digest) == 64
    f = tmp_path / "calib.jsonl"
    f.write_text('{"text": "hello"}\n')
    local = resolve_source(CalibrationSpec(dataset=str(f)))
    assert local.kind == "file"
    f.write_text('{"text": "changed"}\n')
    assert resolve_source(CalibrationSpec(dataset=str(f))).digest != local.digest
    with pytest.raises(DataError):
        resolve_source(CalibrationSpec(dataset=str(tmp_path / "missing.txt")))
    assert resolve_source(CalibrationSpec(dataset="c4")).kind == "hub"


def test_cache_key_covers_every_input() -> None:
    spec = CompressionSpec(method="gptq", bits=4, group_size=64)
    calib = CalibrationSpec(num_samples=8, seq_len=64)
    from trustray.compress.calibration import CalibrationSource

    s = CalibrationSource("wikitext2", "x", "d1")
    k = cache_key("fp", spec, calib, s)
    assert k == cache_key("fp", spec, calib, s)
    assert len({
        k,
        cache_key("fp2", spec, calib, s),
        cache_key("fp", spec.model_copy(update={"bits": 3}), calib, s),
        cache_key("fp", spec, calib.model_copy(update={"seed": 1}), s),
        cache_key("fp", spec, calib, CalibrationSource("wikitext2", "x", "d2")),
    }) == 5


def test_layer_widths_from_config(tmp_path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "head_dim": 64})
    )
    assert layer_widths(tmp_path) == [576, 1536]


def test_recipes_map_methods_to_modifiers() -> None:
    from trustray.compress import METHODS, build_recipe

    assert set(METHODS.names()) == {"gptq", "awq", "sparsegpt", "wanda", "magnitude"}
    (gptq,) = build_recipe(CompressionSpec(method="gptq", bits=3, group_size=64, act_order=True))
    assert type(gptq).__name__ == "GPTQModifier"
    w = gptq.config_groups["group_0"].weights
    assert (w.num_bits, w.group_size, w.symmetric, str(getattr(w.strategy, "value", w.strategy))) == (3, 64, True, "group")
    assert str(getattr(gptq.actorder, "value", gptq.actorder)) == "group"
    (plain,) = build_recipe(CompressionSpec(method="gptq", bits=4, group_size=64))
    assert plain.actorder is None
    awq = build_recipe(CompressionSpec(method="awq", bits=4, group_size=32))
    assert [type(m).__name__ for m in awq] == ["AWQModifier", "QuantizationModifier"]
    (wanda,) = build_recipe(CompressionSpec(method="wanda", structure="1:4"))
    # llm-compressor counts pruned weights per block: keep 1 of 4 = prune 3 of 4
    assert wanda.mask_structure == "3:4" and wanda.sparsity == 0.75
    (sgpt,) = build_recipe(CompressionSpec(method="sparsegpt", sparsity=0.3))
    assert sgpt.mask_structure == "0:0" and sgpt.sparsity == 0.3
    with pytest.raises(ValueError, match="group_size"):
        build_recipe(CompressionSpec(method="gptq", bits=4))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "awq", "--bits", "2"], "bits"),
        (["--method", "wanda", "--structure", "3:2"], "structure"),
        (["--method", "sparsegpt", "--sparsity", "1.5"], "sparsity"),
        (["--method", "prune", "--sparsity", "0.5"], "method"),
    ],
)
def test_cli_bad_specs_fail_in_one_line(args: list[str], needle: str, tmp_path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "from trustray.cli import main; main()", "compress", "--cache", str(tmp_path), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not any(tmp_path.iterdir())
