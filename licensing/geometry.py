"""Geometry input and output of the licensing area: GeoJSON in, shapely in the city CRS, GeoJSON out."""

from __future__ import annotations

import math

import numpy as np
import shapely
from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.validation import explain_validity

from gisserver.crs import CITY_SRID, resolve_srid, transformer
from gisserver.errors import InvalidGeometry, InvalidParameter, UnknownCRS

POLYGONAL = ("Polygon", "MultiPolygon")


def parse_geojson(obj, *, srid: int = CITY_SRID, expect: tuple[str, ...] | None = None, what: str = "geometry"):
    """A GeoJSON geometry (or Feature) in ``srid`` as a valid shapely geometry in the city CRS.

    WGS84 input (srid 4326) is lon/lat (GeoJSON axis order) and is transformed with the official
    VN-2000 parameters.
    """
    if isinstance(obj, dict) and obj.get("type") == "Feature":
        obj = obj.get("geometry")
    if not isinstance(obj, dict) or "type" not in obj or "coordinates" not in obj:
        raise InvalidGeometry(f"{what}: expected a GeoJSON geometry object with type and coordinates")
    try:
        geom = shape(obj)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise InvalidGeometry(f"{what}: malformed GeoJSON ({exc})") from None
    if geom.is_empty:
        raise InvalidGeometry(f"{what}: empty geometry")
    if expect and geom.geom_type not in expect:
        raise InvalidGeometry(f"{what}: expected {' or '.join(expect)}, got {geom.geom_type}")
    coords = shapely.get_coordinates(geom)
    if not all(math.isfinite(v) for v in coords.ravel()):
        raise InvalidGeometry(f"{what}: coordinates must be finite numbers")
    if srid != CITY_SRID:
        t = transformer(srid, CITY_SRID)
        geom = shapely.transform(geom, t.transform, interleaved=False)
    elif coords.size and abs(coords[:, 0]).max() <= 180 and abs(coords[:, 1]).max() <= 90:
        raise InvalidGeometry(
            f"{what}: coordinates look like longitude/latitude; declare crs=EPSG:4326 or give VN-2000 metres"
        )
    if not geom.is_valid:
        raise InvalidGeometry(f"{what}: invalid geometry ({explain_validity(geom)})",
                              details={"geometry": to_geojson(geom)})
    return geom


def srid_of(value) -> int:
    """Storage SRID of a request's ``crs`` (EPSG code, ``EPSG:n``, OGC URI; default the city CRS)."""
    if value is None:
        return CITY_SRID
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidParameter("crs", "must be a CRS name such as EPSG:9210 or EPSG:4326")
    try:
        return resolve_srid(value, default=CITY_SRID)
    except UnknownCRS as exc:
        raise InvalidParameter("crs", exc.message) from None


def as_multipolygon(geom) -> MultiPolygon:
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon) and not g.is_empty]
    for g in getattr(geom, "geoms", []):
        if isinstance(g, MultiPolygon):
            polys.extend(g.geoms)
    return MultiPolygon(polys)


def drop_slivers(geom, min_area: float):
    """The polygonal part of ``geom`` without parts smaller than ``min_area`` (floating-point noise)."""
    parts = [p for p in as_multipolygon(geom).geoms if p.area >= min_area]
    if not parts:
        return MultiPolygon()
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def to_geojson(geom, *, precision: int = 3) -> dict | None:
    if geom is None or geom.is_empty:
        return None
    if precision is not None:
        geom = shapely.transform(geom, lambda xy: np.round(xy, precision))
    return mapping(geom)


def to_db(geom, *, multi: bool = True):
    """A bind value for a geometry column in the city SRID."""
    return from_shape(as_multipolygon(geom) if multi else geom, srid=CITY_SRID)


def from_wkb(value):
    return None if value is None else shapely.from_wkb(bytes(value))
