"""Bad input to `trustray sweep` / `trustray eval` / the sweep scripts: one clear line, exit != 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
TRUSTRAY = str(Path(sys.executable).with_name("trustray"))


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    e = {**os.environ, "TRUSTRAY_DATA": str(SHARED_DATA), **env}
    return subprocess.run(args, cwd=tmp_path, env=e, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("yaml", "needle"),
    [
        ("name: t\nunknown_field: 1\n", "unknown_field: Extra inputs are not permitted"),
        ("eval: {perspectives: [toxicty]}\n", "did you mean 'toxicity'"),
        ("compressions: [{method: gpt, bits: 4}]\n", "compressions.0.method"),
        ("name: [broken\n", "not valid YAML"),
    ],
)
def test_bad_specs_fail_before_anything_runs(tmp_path, yaml, needle):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml)
    out = run([TRUSTRAY, "sweep", str(spec), "--storage-path", str(tmp_path / "runs")], tmp_path)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_sweep_whose_trial_cannot_fit_the_local_ray_fails_before_writing(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: big\nresources: {model_replicas: 64}\n")
    out = run([TRUSTRAY, "sweep", str(spec), "--storage-path", str(tmp_path / "runs")], tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "64 model replicas" in out.stderr and "lower resources.model_replicas" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "runs" / "big").exists()


def test_sweep_script_with_unknown_perspective_and_missing_spec(tmp_path):
    script = str(REPO / "sweeps" / "bits_sweep.py")
    out = run([sys.executable, script, "--perspectives", "mmlu,nope"], tmp_path)
    assert out.returncode == 2 and "unknown perspective 'nope'" in out.stderr
    out = run([sys.executable, script, "--spec", str(tmp_path / "missing.yaml")], tmp_path)
    assert out.returncode == 2 and "not found" in out.stderr


def test_eval_rejects_unknown_method_missing_model_and_missing_data(tmp_path):
    out = run([TRUSTRAY, "eval", "--method", "gptqq"], tmp_path)
    assert out.returncode == 2 and "method" in out.stderr and "Traceback" not in out.stderr
    out = run([TRUSTRAY, "eval", "--model", str(tmp_path / "no-such-model")], tmp_path)
    assert out.returncode == 2 and "no-such-model" in out.stderr
    out = run([TRUSTRAY, "eval"], tmp_path, TRUSTRAY_DATA=str(tmp_path / "nodata"))
    assert out.returncode == 2 and "no benchmark data" in out.stderr


@pytest.mark.slow
def test_unreachable_cluster_address_fails_clearly(tmp_path):
    spec = REPO / "tests" / "specs" / "tiny_sweep.yaml"
    out = run([TRUSTRAY, "sweep", str(spec), "--storage-path", str(tmp_path / "runs"),
               "--address", "127.0.0.1:9"], tmp_path, RAY_AUTH_MODE="disabled")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "cannot connect to the Ray cluster at 127.0.0.1:9" in out.stderr


def test_score_table_is_printed_whole_when_output_is_not_a_terminal(capsys):
    from trustray.cli.pipeline import _print_metrics

    perspectives = ("toxicity", "adv_demonstration", "machine_ethics", "fairness", "privacy", "stereotype",
                    "advglue", "ood", "mmlu")
    metrics = [{"config_id": "8f2a9f325076", "label": "gptq-w4-seed0", "perplexity": 22.31,
                **{f"{p}/score": 50.0 + i for i, p in enumerate(perspectives)}}]
    _print_metrics(metrics, perspectives)
    out = capsys.readouterr().out
    assert "8f2a9f325076" in out and "gptq-w4-seed0" in out and "adv_demonstration" in out
    assert "58.0" in out and "22.3" in out and "…" not in out
