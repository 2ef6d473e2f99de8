"""Identities of what a result row measures, derived from the specs themselves.

A **config** is everything that decides a row's numbers: the base model (name and weights
fingerprint), the resolved compression spec, the calibration spec, the evaluation spec and the
engine spec. A **setting** is a config without its calibration seed; the seeds of one setting
are the samples its seed statistics are taken over. Both ids are short hashes of canonical JSON
of the specs' own dumps, so a field added to any spec changes the ids and reaches every row
without being listed here.

Fields that only select *what* to compute (which perspectives, whether to run perplexity) are
left out: adding a perspective to a finished config evaluates only that perspective.

No Ray or torch here.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import BaseModel

from trustray.compress.spec import canonical_json, short_hash

ID_LENGTH = 16
# spec name → fields that select work rather than change results (kept out of ids and rows)
SELECTION_FIELDS: dict[str, frozenset[str]] = {"eval": frozenset({"perspectives", "perplexity"})}
SPEC_NAMES: tuple[str, ...] = ("model", "compression", "calibration", "eval", "engine")
SEED_FIELD = ("calibration", "seed")


def _dump(spec: BaseModel | None, name: str) -> dict[str, Any] | None:
    if spec is None:
        return None
    body = spec.model_dump(mode="json")
    for f in SELECTION_FIELDS.get(name, ()):
        body.pop(f, None)
    return body


def config_identity(
    model: BaseModel, fingerprint: str, compression: BaseModel, calibration: BaseModel | None,
    eval: BaseModel, engine: BaseModel,
) -> dict[str, Any]:
    """The canonical description of a config: every spec's dump (``calibration`` is None for
    methods that read no calibration data), plus the base model's weights fingerprint."""
    ident = {
        "model": {**(_dump(model, "model") or {}), "fingerprint": fingerprint},
        "compression": _dump(compression, "compression"),
        "calibration": _dump(calibration, "calibration"),
        "eval": _dump(eval, "eval"),
        "engine": _dump(engine, "engine"),
    }
    return ident


def run_identity(eval: BaseModel, engine: BaseModel) -> dict[str, Any]:
    """The evaluation and engine parts of an identity (what a run directory of evals shares)."""
    return {"eval": _dump(eval, "eval"), "engine": _dump(engine, "engine")}


def setting_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """``identity`` without the calibration seed."""
    out = copy.deepcopy(identity)
    spec, field = SEED_FIELD
    if out.get(spec) is not None:
        out[spec].pop(field, None)
    return out


def make_id(identity: dict[str, Any]) -> str:
    """The one id function: ``ID_LENGTH`` hex chars of sha256 over the canonical JSON."""
    return short_hash(canonical_json(identity), ID_LENGTH)


def config_id(identity: dict[str, Any]) -> str:
    return make_id(identity)


def setting_id(identity: dict[str, Any]) -> str:
    return make_id(setting_identity(identity))


def spec_columns(identity: dict[str, Any]) -> dict[str, str | None]:
    """``<spec>_spec`` columns: each spec as canonical JSON (null where the spec is absent)."""
    return {f"{name}_spec": None if identity[name] is None else canonical_json(identity[name]) for name in SPEC_NAMES}


def identity_from_row(row: Any) -> dict[str, Any]:
    """The identity recorded in a result row's ``<spec>_spec`` columns."""
    out: dict[str, Any] = {}
    for name in SPEC_NAMES:
        text = row[f"{name}_spec"]
        out[name] = json.loads(text) if isinstance(text, str) and text else None
    return out


def flat_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """``{"compression.bits": 4, "calibration.seq_len": 512, ...}`` (a missing spec is ``None``)."""
    out: dict[str, Any] = {}
    for name in SPEC_NAMES:
        body = identity.get(name)
        if body is None:
            out[name] = None
            continue
        for k, v in body.items():
            out[f"{name}.{k}"] = canonical_json(v) if isinstance(v, (list, dict)) else v
    return out
