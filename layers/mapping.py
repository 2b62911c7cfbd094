"""Attribute mapping: source fields -> target columns, converted to COPY text per column.

A mapping ``{source_field: column}`` names where each source field goes; without one, fields whose
names match a column (case-insensitively) go there. Unmapped fields are kept in the ``attributes``
JSONB column. Values that do not fit a column (text in an integer column, a missing required
value, a string longer than the column) reject that feature, with the reason, not the load.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import BigInteger, Boolean, Date, DateTime, Float, Integer, Numeric, SmallInteger, String, Text
from sqlalchemy.dialects.postgresql import JSONB

from gisserver.errors import InvalidInput

#: columns ingest never writes (keys, geometry, generated and bookkeeping columns)
RESERVED_COLUMNS = frozenset({"id", "geom", "geom_3857", "attributes"})
NULL = "\\N"


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str  # integer | number | boolean | date | datetime | text | json
    required: bool = False
    max_length: int | None = None


@dataclass
class MappingPlan:
    """Which source field feeds which column; the rest goes to ``attributes``."""

    columns: list[tuple[str, ColumnSpec]]  # (source field, target column)
    extra_fields: list[str]  # source fields kept in the attributes JSONB
    has_attributes: bool = True
    warnings: list[str] = field(default_factory=list)

    @property
    def copy_columns(self) -> list[str]:
        names = [spec.name for _, spec in self.columns]
        if self.has_attributes and self.extra_fields:
            names.append("attributes")
        return names + ["geom"]


def column_kind(sqltype) -> str:
    if isinstance(sqltype, JSONB):
        return "json"
    if isinstance(sqltype, Integer | BigInteger | SmallInteger):
        return "integer"
    if isinstance(sqltype, Float | Numeric):
        return "number"
    if isinstance(sqltype, Boolean):
        return "boolean"
    if isinstance(sqltype, DateTime):
        return "datetime"
    if isinstance(sqltype, Date):
        return "date"
    return "text"


def table_column_specs(table) -> dict[str, ColumnSpec]:
    """Writable columns of a table (no key, geometry, generated or JSONB columns)."""
    specs = {}
    for col in table.columns:
        if col.name in RESERVED_COLUMNS or col.computed is not None or col.primary_key:
            continue
        kind = column_kind(col.type)
        if kind == "json":
            continue
        required = not col.nullable and col.server_default is None
        max_length = col.type.length if isinstance(col.type, String) and not isinstance(col.type, Text) else None
        specs[col.name] = ColumnSpec(col.name, kind, required, max_length)
    return specs


def plan_mapping(source_fields: list[str], specs: dict[str, ColumnSpec], mapping: dict[str, str] | None,
                 layer_name: str, *, has_attributes: bool = True) -> MappingPlan:
    """Check ``mapping`` against the file and the table and complete it by matching names."""
    mapping = dict(mapping or {})
    unknown_src = [s for s in mapping if s not in source_fields]
    if unknown_src:
        raise InvalidInput(
            f"the mapping names field(s) {', '.join(unknown_src)} that the file does not have; "
            f"its fields: {', '.join(source_fields) or '(none)'}"
        )
    bad_dst = [d for d in mapping.values() if d not in specs]
    if bad_dst:
        raise InvalidInput(
            f"the mapping targets column(s) {', '.join(bad_dst)} that layer {layer_name!r} cannot take; "
            f"its columns: {', '.join(specs)}"
        )
    targets = list(mapping.values())
    dupes = sorted({d for d in targets if targets.count(d) > 1})
    if dupes:
        raise InvalidInput(f"several fields are mapped to the same column(s): {', '.join(dupes)}")
    by_lower = {name.lower(): name for name in specs}
    for src in source_fields:
        if src in mapping:
            continue
        dst = by_lower.get(src.lower())
        if dst is not None and dst not in mapping.values():
            mapping[src] = dst
    missing = [name for name, spec in specs.items() if spec.required and name not in mapping.values()]
    if missing:
        raise InvalidInput(
            f"layer {layer_name!r} needs values for {', '.join(missing)}; map source fields onto them "
            f"(e.g. --map FIELD={missing[0]}); the file's fields: {', '.join(source_fields) or '(none)'}"
        )
    columns = [(src, specs[dst]) for src, dst in mapping.items()]
    extra = [f for f in source_fields if f not in mapping]
    return MappingPlan(columns=columns, extra_fields=extra, has_attributes=has_attributes)


# --- conversion to COPY text -------------------------------------------------------------------

def copy_escape(arr: pa.Array) -> pa.Array:
    """Escape text for COPY's text format (backslash, tab, newline, carriage return)."""
    if not pc.any(pc.match_substring_regex(arr, r"[\\\t\n\r]")).as_py():
        return arr  # the usual case: one scan instead of four replacements
    for old, new in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        arr = pc.replace_substring(arr, old, new)
    return arr


def convert_column(arr: pa.Array, spec: ColumnSpec) -> tuple[pa.Array, dict[int, str]]:
    """COPY text of a source column for ``spec``, and the rows whose value does not fit."""
    bad: dict[int, str] = {}
    arr = _as_kind(arr, spec, bad)
    if spec.kind == "text" and spec.max_length is not None:
        too_long = pc.fill_null(pc.greater(pc.utf8_length(arr), spec.max_length), False)
        for row in np.flatnonzero(too_long.to_numpy(zero_copy_only=False)):
            bad.setdefault(int(row), f"{spec.name}: value longer than {spec.max_length} characters")
    if spec.required:
        for row in np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)):
            bad.setdefault(int(row), f"{spec.name}: a value is required")
    text = arr if spec.kind == "text" else pc.cast(arr, pa.string())
    if spec.kind == "text":
        text = copy_escape(text)
    return pc.fill_null(text, NULL), bad


def _as_kind(arr: pa.Array, spec: ColumnSpec, bad: dict[int, str]) -> pa.Array:
    kind = spec.kind
    if kind == "text":
        if pa.types.is_string(arr.type):
            return arr
        if pa.types.is_floating(arr.type):  # 12.0 -> "12", not "12.0", for codes read as numbers
            whole = pc.fill_null(pc.equal(pc.floor(arr), arr), False)
            if pc.all(pc.or_(whole, arr.is_null())).as_py():
                return pc.cast(pc.cast(arr, pa.int64()), pa.string())
        return pc.cast(arr, pa.string())
    target = {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_(),
              "date": pa.date32(), "datetime": pa.timestamp("us", tz="UTC")}[kind]
    if kind == "datetime" and pa.types.is_timestamp(arr.type) and arr.type.tz is None:
        arr = pc.assume_timezone(arr, "UTC")
    if pa.types.is_string(arr.type):
        arr = pc.utf8_trim_whitespace(arr)
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    if kind == "number" and pa.types.is_floating(arr.type):
        arr = pc.if_else(pc.is_finite(arr), arr, pa.scalar(None, arr.type))
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _cast_each(arr, spec, target, bad)


def _cast_each(arr: pa.Array, spec: ColumnSpec, target: pa.DataType, bad: dict[int, str]) -> pa.Array:
    values = []
    for row, value in enumerate(arr.to_pylist()):
        if value is None:
            values.append(None)
            continue
        try:
            values.append(pa.array([value]).cast(target)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            bad[row] = f"{spec.name}: {str(value)[:40]!r} is not a valid {spec.kind}"
            values.append(None)
    return pa.array(values, target)


def attributes_json(columns: dict[str, pa.Array], names: list[str], n: int) -> pa.Array:
    """COPY text of a JSON object per row holding the fields ``names``."""
    if not names:
        return pa.array(["{}"] * n, pa.string())
    parts = []
    for i, name in enumerate(names):
        key = ("{" if i == 0 else ", ") + json.dumps(name, ensure_ascii=False) + ": "
        parts.append(pa.array([key] * n, pa.string()))
        parts.append(_json_values(columns[name]))
    parts.append(pa.array(["}"] * n, pa.string()))
    return copy_escape(pc.binary_join_element_wise(*parts, ""))


def _json_values(arr: pa.Array) -> pa.Array:
    if pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
        return pc.fill_null(pc.cast(arr, pa.string()), "null")
    if pa.types.is_floating(arr.type):
        return pa.array([_json_number(v) for v in arr.to_pylist()], pa.string())
    return pa.array([_json_scalar(v) for v in arr.to_pylist()], pa.string())


def _json_number(v) -> str:
    if v is None or not math.isfinite(v):
        return "null"
    return repr(v)


def _json_scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, str | int | float | bool):
        return json.dumps(v, ensure_ascii=False)
    if hasattr(v, "isoformat"):
        return json.dumps(v.isoformat())
    if isinstance(v, bytes):
        return json.dumps(v.hex())
    return json.dumps(str(v), ensure_ascii=False)


# --- generic layers: columns typed from the source -------------------------------------------------

_OGR_TO_SQL = {
    "OFTInteger": Integer,
    "OFTInteger64": BigInteger,
    "OFTReal": Float,
    "OFTDate": Date,
    "OFTDateTime": lambda: DateTime(timezone=True),
}


def sql_type_for(ogr_type: str):
    maker = _OGR_TO_SQL.get(ogr_type)
    return maker() if maker is not None else Text()


def safe_column_name(name: str, taken: set[str]) -> str:
    """A lower-case identifier for a source field (ASCII, <= 63 chars, unique, not reserved)."""
    ascii_name = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    ascii_name = ascii_name.encode("ascii", "ignore").decode().lower()
    ascii_name = re.sub(r"[^a-z0-9_]+", "_", ascii_name).strip("_") or "field"
    if ascii_name[0].isdigit():
        ascii_name = "f_" + ascii_name
    if ascii_name in RESERVED_COLUMNS:
        ascii_name += "_src"
    ascii_name = ascii_name[:60]
    candidate, i = ascii_name, 1
    while candidate in taken:
        i += 1
        candidate = f"{ascii_name[:56]}_{i}"
    taken.add(candidate)
    return candidate
