"""The flat spec columns of result rows and report tables, derived from the spec models.

Every field of :class:`~trustray.compress.spec.CompressionSpec` is a column of its own name
(``sparsity`` holds the pruned fraction, also for an N:M ``structure``); every field of
:class:`~trustray.compress.spec.CalibrationSpec` is ``calib_<field>`` (``num_samples`` is
``calib_samples``), null for methods that read no calibration data. A field added to either
model gets its column in the result schema, the rows' provenance and the report's config and
summary tables from here, with no list to copy it into.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel

from trustray.compress.spec import CalibrationSpec, CompressionSpec

COMPRESSION = "compression"
CALIBRATION = "calibration"
# calibration fields whose column is not ``calib_<field>``
_CALIB_COLUMN = {"num_samples": "calib_samples"}
_ARROW = {bool: pa.bool_(), int: pa.int32(), float: pa.float64(), str: pa.string()}


@dataclass(frozen=True)
class SpecColumn:
    """One flat column: its name, and the spec and field it holds."""

    name: str
    spec: str  # COMPRESSION or CALIBRATION
    field: str
    annotation: Any
    required: bool  # the spec cannot be made without it (and the spec itself is always there)

    @property
    def arrow_type(self) -> pa.DataType:
        """The column's Arrow type, from the field's annotation (optional and literal types unwrapped)."""
        return _ARROW[_base_type(self.annotation)]

    def arrow_field(self) -> pa.Field:
        return pa.field(self.name, self.arrow_type, nullable=not self.required)


def _base_type(annotation: Any) -> type:
    """``int`` for ``int | None``, ``Literal[8, 4]``; ``str`` for ``Literal["a"]``; ..."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return _base_type(inner)
    if origin is Literal:
        return type(get_args(annotation)[0])
    return annotation


def spec_columns(
    compression: type[BaseModel] = CompressionSpec, calibration: type[BaseModel] = CalibrationSpec
) -> list[SpecColumn]:
    """The flat columns of the two models' fields, compression first, in field order."""
    out = [SpecColumn(name, COMPRESSION, name, f.annotation, f.is_required())
           for name, f in compression.model_fields.items()]
    out += [SpecColumn(_CALIB_COLUMN.get(name, f"calib_{name}"), CALIBRATION, name, f.annotation, False)
            for name, f in calibration.model_fields.items()]
    return out


def column_of(spec: str, field: str) -> str:
    """The flat column of one spec field."""
    (col,) = [c.name for c in spec_columns() if (c.spec, c.field) == (spec, field)]
    return col


def flat_values(compression: Any, calibration: Any | None) -> dict[str, Any]:
    """The flat columns' values for a resolved compression spec and its calibration spec (or None)."""
    specs = {COMPRESSION: compression, CALIBRATION: calibration}
    out = {c.name: _value(specs[c.spec], c.field) for c in spec_columns(type(compression))}
    out[column_of(COMPRESSION, "sparsity")] = compression.target_sparsity
    return out


def values_from_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """The flat columns' values from an identity's spec dumps (a result row's ``*_spec`` columns);
    a field the dumps lack (rows written before it existed) is null."""
    specs = {COMPRESSION: identity.get(COMPRESSION), CALIBRATION: identity.get(CALIBRATION)}
    return {c.name: (specs[c.spec] or {}).get(c.field) for c in spec_columns()}


def _value(spec: Any | None, field: str) -> Any:
    if spec is None:
        return None
    value = getattr(spec, field)
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)
