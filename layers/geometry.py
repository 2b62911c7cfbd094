"""Geometry kernels of ingest: reprojection, validation/repair and EWKB encoding (pure, vectorised).

Every function takes and returns numpy arrays of shapely geometries (or masks), so a batch of
65k features is handled by a few GEOS/PROJ calls, not a Python loop per feature.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import shapely
from shapely.errors import GEOSException

from gisserver.crs import transformer
from gisserver.errors import InvalidGeometry, InvalidInput

POLICIES = ("repair", "reject-feature", "fail")
#: target geometry type -> (topological dimension or None for any, multi type id or None)
TARGET_TYPES = {
    "Point": (0, None),
    "MultiPoint": (0, 4),
    "MultiLineString": (1, 5),
    "MultiPolygon": (2, 6),
    "Geometry": (None, None),
}
_MULTI_OF = {1: 4, 2: 5, 3: 6}  # Point/LineString/Polygon -> their Multi* type id
_EWKB_SRID_FLAG = 0x20000000


@dataclass
class CheckedBatch:
    """Geometries ready to store, with what happened to each feature of the batch."""

    geoms: np.ndarray
    keep: np.ndarray  # bool mask over the batch
    repaired: dict[int, str] = field(default_factory=dict)  # row -> reason
    rejected: dict[int, str] = field(default_factory=dict)  # row -> reason


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise InvalidInput(f"policy must be one of {', '.join(POLICIES)}")
    return policy


def reproject(geoms: np.ndarray, src_srid: int, dst_srid: int) -> np.ndarray:
    """Reproject with the project's transformer (official VN-2000 parameters for the city CRS)."""
    if src_srid == dst_srid:
        return geoms
    t = transformer(src_srid, dst_srid)

    def _xy(coords: np.ndarray) -> np.ndarray:
        x, y = t.transform(coords[:, 0], coords[:, 1])
        return np.column_stack((x, y))

    return shapely.transform(geoms, _xy)


def check_geometries(geoms: np.ndarray, target_type: str, policy: str, fids: np.ndarray) -> CheckedBatch:
    """Reject null/empty/ill-typed geometries; repair or reject invalid ones per ``policy``.

    ``fail`` raises InvalidGeometry on the first feature that would be rejected or repaired.
    """
    dim, _ = TARGET_TYPES[target_type]
    out = CheckedBatch(geoms=geoms.copy(), keep=np.ones(len(geoms), dtype=bool))
    null = shapely.is_missing(geoms)
    _reject(out, np.flatnonzero(null), "null geometry")
    empty = ~null & shapely.is_empty(geoms)
    _reject(out, np.flatnonzero(empty), "empty geometry")
    live = np.flatnonzero(out.keep)
    if shapely.has_z(geoms[live]).any():
        out.geoms[live] = shapely.force_2d(geoms[live])
    if dim is not None:
        _fit_dimension(out, live, dim)
    live = np.flatnonzero(out.keep)
    finite = _finite(out.geoms[live])
    _reject(out, live[~finite], "coordinates are not finite (outside the CRS's area of use?)")
    live = np.flatnonzero(out.keep)
    valid = shapely.is_valid(out.geoms[live])
    for row in live[~valid]:
        _handle_invalid(out, row, dim, policy)
    if policy == "fail" and out.rejected:
        row, reason = next(iter(out.rejected.items()))
        raise InvalidGeometry(f"feature {int(fids[row])}: {reason}", details={"feature": int(fids[row])})
    if target_type == "Point":
        _single_points(out)
    return out


def _reject(out: CheckedBatch, rows: np.ndarray, reason: str) -> None:
    for row in rows:
        out.rejected[int(row)] = reason
    out.keep[rows] = False


def _finite(geoms: np.ndarray) -> np.ndarray:
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    bad_rows = np.unique(index[~np.isfinite(coords).all(axis=1)])
    ok = np.ones(len(geoms), dtype=bool)
    ok[bad_rows] = False
    return ok


def _fit_dimension(out: CheckedBatch, rows: np.ndarray, dim: int) -> None:
    geoms = out.geoms[rows]
    type_ids = shapely.get_type_id(geoms)
    dims = shapely.get_dimensions(geoms)
    collections = type_ids == 7
    for row, geom in zip(rows[collections], geoms[collections], strict=True):
        parts = _parts_of_dimension(geom, dim)
        if parts is None:
            _reject(out, np.array([row]), f"a {geom.geom_type} has no {_DIM_NAMES[dim]} parts")
        else:
            out.geoms[row] = parts
    wrong = ~collections & (dims != dim)
    for row, geom in zip(rows[wrong], geoms[wrong], strict=True):
        _reject(out, np.array([row]), f"a {geom.geom_type} does not fit a layer of {_DIM_NAMES[dim]}")


_DIM_NAMES = {0: "points", 1: "lines", 2: "polygons"}


def _parts_of_dimension(geom, dim: int):
    parts = [p for g in shapely.get_parts(geom) if shapely.get_type_id(g) != 7 and shapely.get_dimensions(g) == dim
             for p in shapely.get_parts(g)]
    if not parts:
        return None
    maker = {0: shapely.multipoints, 1: shapely.multilinestrings, 2: shapely.multipolygons}[dim]
    return maker(parts)


def _handle_invalid(out: CheckedBatch, row: int, dim: int | None, policy: str) -> None:
    geom = out.geoms[row]
    reason = shapely.is_valid_reason(geom)
    if policy != "repair":
        _reject(out, np.array([row]), f"invalid geometry: {reason}")
        return
    try:
        if dim == 2:  # polygons: rebuild from the rings, dropping collapsed parts
            fixed = shapely.make_valid(geom, method="structure", keep_collapsed=False)
        else:
            fixed = shapely.make_valid(geom)
    except GEOSException as exc:
        _reject(out, np.array([row]), f"invalid geometry ({reason}) could not be repaired: {exc}")
        return
    if dim is not None:
        fixed = _parts_of_dimension(fixed, dim) if not fixed.is_empty else None
    if fixed is None or fixed.is_empty or not fixed.is_valid:
        _reject(out, np.array([row]), f"invalid geometry ({reason}) could not be repaired")
        return
    out.geoms[row] = fixed
    out.repaired[row] = reason


def _single_points(out: CheckedBatch) -> None:
    live = np.flatnonzero(out.keep)
    multi = live[shapely.get_type_id(out.geoms[live]) == 4]
    for row in multi:
        n = shapely.get_num_geometries(out.geoms[row])
        if n == 1:
            out.geoms[row] = shapely.get_geometry(out.geoms[row], 0)
        else:
            _reject(out, np.array([row]), f"a MultiPoint of {n} points does not fit a Point layer")


def ewkb_hex(geoms: np.ndarray, target_type: str, srid: int) -> pa.StringArray:
    """Hex EWKB (with SRID) of each geometry, single types promoted to the target's Multi* type.

    Done on the WKB bytes: promoting a Polygon to a MultiPolygon is only a new 13-byte header,
    which costs far less than building shapely multi-geometries.
    """
    _, multi = TARGET_TYPES[target_type]
    wkb = shapely.to_wkb(geoms, byte_order=1, output_dimension=2, flavor="iso")
    headers = {}
    out = []
    for w in wkb:
        type_id = w[1]
        key = type_id
        hdr = headers.get(key)
        if hdr is None:
            if multi is not None and type_id in _MULTI_OF:
                hdr = struct.pack("<BII", 1, _MULTI_OF[type_id] | _EWKB_SRID_FLAG, srid) + struct.pack("<I", 1) + w[:5]
            else:
                hdr = struct.pack("<BII", 1, type_id | _EWKB_SRID_FLAG, srid)
            headers[key] = hdr
        out.append(hdr + w[5:])
    arr = pa.array(out, pa.binary())
    return hex_strings(arr)


def hex_strings(arr: pa.BinaryArray) -> pa.StringArray:
    """Hex text of every value of a binary array, in one C call over the data buffer."""
    if len(arr) == 0:
        return pa.array([], pa.string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    start, stop = int(offsets[0]), int(offsets[-1])
    hexed = binascii.hexlify(memoryview(data)[start:stop])
    new_offsets = ((offsets - start) * 2).astype(np.int32)
    return pa.StringArray.from_buffers(len(arr), pa.py_buffer(new_offsets), pa.py_buffer(hexed))
