"""Offline validation of everything under cluster/: launcher YAMLs with Ray's own autoscaler
validation, KubeRay manifests against the vendored CRD schemas, the runtime-env YAML, and the
sweep files the manifests point at. Each check also runs on a deliberately broken copy."""

from __future__ import annotations

import copy
import importlib
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHER_FILES = ("aws-gpu.yaml", "gcp-gpu.yaml")
SCHEMA_FILE = CLUSTER / "schemas" / "ray.io_v1.openapiv3.subset.yaml"
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob-bits-sweep.yaml"
GPU_TYPES = {"A10G", "L4", "A100", "H100"}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# --- cluster launcher ------------------------------------------------------------------------


def validate_launcher(cfg: dict[str, Any]) -> dict[str, Any]:
    """Ray's own validation plus the project's rules for a GPU launcher config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    if head["resources"].get("CPU") != 0 or head["resources"].get("GPU", 0) != 0:
        raise ValueError("the head must advertise CPU: 0 and no GPU so no work lands on it")
    if head["resources"].get("driver") != 1:
        raise ValueError("the head must carry the `driver` resource for job entrypoints")
    workers = {name: t for name, t in types.items() if name != prepared["head_node_type"]}
    accelerators: set[str] = set()
    for name, node in workers.items():
        res = node["resources"]
        labels = [k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")]
        if res.get("GPU", 0) < 1 or len(labels) != 1:
            raise ValueError(f"worker type {name} needs GPU >= 1 and one accelerator_type:* label")
        if node.get("min_workers", 0) != 0 or node.get("max_workers", 0) < 1:
            raise ValueError(f"worker type {name} must autoscale from zero (min 0, max >= 1)")
        accelerators.update(labels)
    if not ({"A10G", "L4"} & accelerators and {"A100", "H100"} & accelerators):
        raise ValueError(f"need a small (L4/A10G) and a large (A100/H100) GPU type, have {accelerators}")
    if not prepared.get("idle_timeout_minutes"):
        raise ValueError("idle_timeout_minutes must be set")
    docker = prepared.get("docker") or {}
    if "trustray" not in docker.get("image", ""):
        raise ValueError("docker.image must be the trustray GPU image")
    options = " ".join(docker.get("run_options", []))
    storage = re.search(r"--env TRUSTRAY_STORAGE=(\S+)", options)
    if not storage or not storage.group(1).startswith(("s3://", "gs://")):
        raise ValueError("TRUSTRAY_STORAGE must be passed to the containers as an s3:// or gs:// URI")
    if prepared.get("setup_commands"):
        raise ValueError("setup_commands must stay empty: the image carries everything")
    return prepared


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_config_is_valid(name):
    prepared = validate_launcher(_load(CLUSTER / name))
    from ray.util.accelerators import accelerators

    known = {v for k, v in vars(accelerators).items() if k.isupper() and isinstance(v, str)}
    labels = {
        key.split(":", 1)[1]
        for node in prepared["available_node_types"].values()
        for key in node["resources"]
        if key.startswith("accelerator_type:")
    }
    assert labels <= known and labels <= GPU_TYPES | known


def _drop(key: str) -> Callable[[dict], None]:
    return lambda cfg: cfg.pop(key)


LAUNCHER_BREAKS: dict[str, Callable[[dict], None]] = {
    "unknown top-level key": lambda c: c.update(idle_timeout_minuets=5),
    "head type missing": lambda c: c.update(head_node_type="ray_head_default"),
    "non-integer resource": lambda c: c["available_node_types"][c["head_node_type"]]["resources"].update(
        CPU="zero"
    ),
    "min workers exceed max": lambda c: c.update(max_workers=0)
    or next(t for n, t in c["available_node_types"].items() if n != c["head_node_type"]).update(
        min_workers=1
    ),
    "head does work": lambda c: c["available_node_types"][c["head_node_type"]]["resources"].update(CPU=8),
    "GPU type without label": lambda c: [
        t["resources"].pop(k)
        for n, t in c["available_node_types"].items()
        if n != c["head_node_type"]
        for k in list(t["resources"])
        if k.startswith("accelerator_type:")
    ],
    "no storage variable": lambda c: c["docker"].update(
        run_options=[o for o in c["docker"]["run_options"] if "TRUSTRAY_STORAGE" not in o]
    ),
    "no docker image": lambda c: c["docker"].update(image="rayproject/ray:2.60.0-gpu"),
    "setup commands fall back to defaults": _drop("setup_commands"),
}


@pytest.mark.parametrize("name", LAUNCHER_FILES)
@pytest.mark.parametrize("breakage", sorted(LAUNCHER_BREAKS))
def test_launcher_config_broken_copy_fails(name, breakage):
    cfg = _load(CLUSTER / name)
    LAUNCHER_BREAKS[breakage](cfg)
    with pytest.raises((ValueError, RuntimeError, KeyError, jsonschema.ValidationError)):
        validate_launcher(cfg)


def test_launcher_broken_file_text_fails(tmp_path):
    """A broken copy of the file itself (as a user might save it) is caught too."""
    text = (CLUSTER / "aws-gpu.yaml").read_text().replace("max_workers: 16", "max_workers: sixteen")
    broken = tmp_path / "aws-gpu.yaml"
    broken.write_text(text)
    with pytest.raises(jsonschema.ValidationError):
        validate_launcher(_load(broken))


# --- KubeRay ---------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """Close objects the way `kubectl apply --validate=strict` does: unknown fields are errors."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def crd_schemas() -> dict[str, Any]:
    raw = _load(SCHEMA_FILE)
    return {kind: _strict(raw[kind]) for kind in ("RayCluster", "RayJob")}


def validate_manifest(doc: dict[str, Any], schemas: dict[str, Any]) -> None:
    if doc.get("apiVersion") != "ray.io/v1":
        raise ValueError(f"apiVersion must be ray.io/v1, got {doc.get('apiVersion')!r}")
    kind = doc.get("kind")
    if kind not in schemas:
        raise ValueError(f"unknown kind {kind!r}")
    jsonschema.validate(doc, schemas[kind])
    spec = doc["spec"]["rayClusterSpec"] if kind == "RayJob" else doc["spec"]
    if not spec.get("enableInTreeAutoscaling") or spec.get("autoscalerOptions", {}).get("version") != "v2":
        raise ValueError("the in-tree autoscaler v2 must be enabled")
    if spec["headGroupSpec"]["rayStartParams"].get("num-cpus") != "0":
        raise ValueError("the head must start with num-cpus 0")
    for group in spec.get("workerGroupSpecs", []):
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        if int(limits.get("nvidia.com/gpu", 0)) < 1:
            raise ValueError(f"worker group {group['groupName']} has no GPU limit")
        if "accelerator_type:" not in group["rayStartParams"].get("resources", ""):
            raise ValueError(f"worker group {group['groupName']} lacks an accelerator_type resource")
    if kind == "RayJob":
        if not doc["spec"].get("entrypointResources"):
            raise ValueError("entrypointResources must be set (the head has no CPU)")
        validate_runtime_env(yaml.safe_load(doc["spec"]["runtimeEnvYAML"]))


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
def test_kuberay_manifest_is_valid(path, crd_schemas):
    validate_manifest(_load(path), crd_schemas)


def test_rayjob_cluster_matches_raycluster():
    assert _load(RAYJOB)["spec"]["rayClusterSpec"] == _load(RAYCLUSTER)["spec"]


def test_rayjob_runtime_env_matches_the_file():
    embedded = yaml.safe_load(_load(RAYJOB)["spec"]["runtimeEnvYAML"])
    assert embedded == _load(CLUSTER / "runtime_env.yaml")


def test_rayjob_entrypoint_resources_exist_on_the_head():
    import json

    spec = _load(RAYJOB)["spec"]
    wanted = json.loads(spec["entrypointResources"])
    head_params = spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
    # KubeRay's rayStartParams form: a JSON string literal whose content is the JSON object.
    offered = json.loads(json.loads(head_params["resources"]))
    for name, amount in wanted.items():
        assert offered.get(name, 0) >= amount


def _worker(doc):
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    return spec["workerGroupSpecs"][0]


MANIFEST_BREAKS: dict[str, Callable[[dict], None]] = {
    "misspelt field": lambda d: _worker(d).update(maxReplica=4),
    "wrong type": lambda d: _worker(d).update(maxReplicas="eight"),
    "missing required field": lambda d: _worker(d).pop("groupName"),
    "bad enum": lambda d: (
        d["spec"]["rayClusterSpec"] if d["kind"] == "RayJob" else d["spec"]
    )["autoscalerOptions"].update(version="v3"),
    "container without name": lambda d: _worker(d)["template"]["spec"]["containers"][0].pop("name"),
    "bad quantity": lambda d: _worker(d)["template"]["spec"]["containers"][0]["resources"][
        "limits"
    ].update(memory="lots"),
    "wrong apiVersion": lambda d: d.update(apiVersion="ray.io/v1alpha1"),
    "autoscaler off": lambda d: (
        d["spec"]["rayClusterSpec"] if d["kind"] == "RayJob" else d["spec"]
    ).update(enableInTreeAutoscaling=False),
    "GPU group without GPU": lambda d: _worker(d)["template"]["spec"]["containers"][0]["resources"][
        "limits"
    ].pop("nvidia.com/gpu"),
}


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=lambda p: p.name)
@pytest.mark.parametrize("breakage", sorted(MANIFEST_BREAKS))
def test_kuberay_manifest_broken_copy_fails(path, breakage, crd_schemas):
    doc = _load(path)
    MANIFEST_BREAKS[breakage](doc)
    with pytest.raises((ValueError, jsonschema.ValidationError)):
        validate_manifest(doc, crd_schemas)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(entrypointNumCPUs=1),
        lambda s: s.update(shutdownAfterJobFinishes="yes"),
        lambda s: s.pop("entrypointResources"),
        lambda s: s.update(runtimeEnvYAML="env_vars: [not, a, dict]"),
        lambda s: s.update(runtimeEnvYAML="pip_packages: [vllm]"),
    ],
    ids=["misspelt", "wrong-type", "no-entrypoint-resources", "bad-env-vars", "unknown-runtime-env-field"],
)
def test_rayjob_spec_broken_copy_fails(mutate, crd_schemas):
    doc = _load(RAYJOB)
    mutate(doc["spec"])
    with pytest.raises((ValueError, TypeError, jsonschema.ValidationError)):
        validate_manifest(doc, crd_schemas)


def test_schema_subset_states_its_source():
    head = SCHEMA_FILE.read_text().splitlines()[:4]
    assert any("ray-project/kuberay" in line for line in head)
    assert re.search(r"[0-9a-f]{40}", " ".join(head))


# --- runtime env -----------------------------------------------------------------------------


def validate_runtime_env(env: Any) -> None:
    """Ray's RuntimeEnv validation, plus: the compression interpreter comes from the env var."""
    from ray.runtime_env import RuntimeEnv

    if not isinstance(env, dict):
        raise ValueError("a runtime env must be a mapping")
    # RuntimeEnv accepts unknown keys as plugin fields; this project uses none, so a stray key is a typo.
    unknown = set(env) - set(RuntimeEnv.known_fields)
    if unknown:
        raise ValueError(f"unknown runtime_env fields {sorted(unknown)}")
    RuntimeEnv(**env)
    env_vars = env.get("env_vars", {})
    if not str(env_vars.get("TRUSTRAY_COMPRESS_PYTHON", "")).startswith("/"):
        raise ValueError("env_vars.TRUSTRAY_COMPRESS_PYTHON must name the compression venv's python")


def test_runtime_env_file_is_valid():
    validate_runtime_env(_load(CLUSTER / "runtime_env.yaml"))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(env_vars={"TRUSTRAY_CACHE": 3}),
        lambda e: e.update(workdir="/app"),
        lambda e: e["env_vars"].pop("TRUSTRAY_COMPRESS_PYTHON"),
    ],
    ids=["non-string-env-var", "unknown-field", "no-compress-python"],
)
def test_runtime_env_broken_copy_fails(mutate):
    env = _load(CLUSTER / "runtime_env.yaml")
    mutate(env)
    with pytest.raises((ValueError, TypeError)):
        validate_runtime_env(env)


# --- sweep files referenced by the manifests ---------------------------------------------------


def referenced_sweep_files(entrypoint: str) -> list[str]:
    """Repository-relative files an entrypoint runs or reads (``sweeps/...``)."""
    return [tok for tok in shlex.split(entrypoint) if tok.startswith("sweeps/")]


def test_entrypoint_references_the_bits_sweep():
    refs = referenced_sweep_files(_load(RAYJOB)["spec"]["entrypoint"])
    assert "sweeps/bits_sweep.py" in refs and "sweeps/bits.yaml" in refs


def test_referenced_sweep_files_exist_and_load():
    refs = referenced_sweep_files(_load(RAYJOB)["spec"]["entrypoint"])
    missing = [ref for ref in refs if not (REPO / ref).is_file()]
    assert not missing, f"the RayJob entrypoint names files that do not exist: {missing}"
    try:
        sweep = importlib.import_module("trustray.sweep")
    except ModuleNotFoundError:
        pytest.skip("trustray.sweep is not available yet; spec files exist but were not loaded")
    if not hasattr(sweep, "load_sweep_spec"):
        pytest.skip("trustray.sweep.load_sweep_spec is not available yet")
    for ref in refs:
        if ref.endswith((".yaml", ".yml")):
            assert sweep.load_sweep_spec(REPO / ref) is not None


def test_missing_sweep_file_is_detected(tmp_path):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "bits_sweep.py").write_text("")
    refs = referenced_sweep_files("cd /app && python sweeps/bits_sweep.py --spec sweeps/nope.yaml")
    assert [ref for ref in refs if not (tmp_path / ref).is_file()] == ["sweeps/nope.yaml"]
