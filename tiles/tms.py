"""Tile matrix sets (morecantile): WebMercatorQuad / GoogleMapsCompatible and a VN-2000 one.

The VN-2000 set is a square grid in the city CRS (EPSG:9210 with the official parameters, see
``gisserver.crs``) covering Ho Chi Minh City: 512 m/pixel at level 0 halving down to 0.125 m.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import morecantile

from gisserver.crs import CITY_EPSG, city_crs
from gisserver.errors import InvalidParameter

WEB_MERCATOR_ID = "WebMercatorQuad"
GOOGLE_ID = "GoogleMapsCompatible"
CITY_TMS_ID = "VN2000HCMC"
#: top-left corner and size (m) of the VN-2000 grid; E 540-671 km, N 1129-1260 km
CITY_ORIGIN = (540000.0, 1260000.0)
CITY_EXTENT_M = 131072.0
CITY_MAXZOOM = 12
WEB_MAXZOOM = 22


@dataclass(frozen=True)
class TileAddress:
    z: int
    x: int
    y: int


@lru_cache(maxsize=1)
def web_mercator() -> morecantile.TileMatrixSet:
    return morecantile.tms.get(WEB_MERCATOR_ID)


@lru_cache(maxsize=1)
def city_tms() -> morecantile.TileMatrixSet:
    ox, oy = CITY_ORIGIN
    return morecantile.TileMatrixSet.custom(
        [ox, oy - CITY_EXTENT_M, ox + CITY_EXTENT_M, oy],
        city_crs(),
        id=CITY_TMS_ID,
        title="VN-2000 / TM-3 105-45, Ho Chi Minh City",
        minzoom=0,
        maxzoom=CITY_MAXZOOM,
    )


def tile_matrix_set(identifier: str) -> morecantile.TileMatrixSet:
    if identifier in (WEB_MERCATOR_ID, GOOGLE_ID, "EPSG:3857", "GoogleMapsCompatible_Level"):
        return web_mercator()
    if identifier in (CITY_TMS_ID, f"EPSG:{CITY_EPSG}"):
        return city_tms()
    raise InvalidParameter("TileMatrixSet", f"unknown tile matrix set {identifier!r}")


def tms_srid(identifier: str) -> int:
    from gisserver.crs import CITY_SRID

    return CITY_SRID if tile_matrix_set(identifier) is city_tms() else 3857


def check_tile(z: int, x: int, y: int, *, maxzoom: int = WEB_MAXZOOM, matrix_size=None) -> TileAddress:
    """Validate a tile address (400 on out-of-range values)."""
    if not 0 <= z <= maxzoom:
        raise InvalidParameter("z", f"zoom must be between 0 and {maxzoom}")
    width, height = matrix_size if matrix_size else (2**z, 2**z)
    if not 0 <= x < width:
        raise InvalidParameter("x", f"column must be between 0 and {width - 1} at zoom {z}")
    if not 0 <= y < height:
        raise InvalidParameter("y", f"row must be between 0 and {height - 1} at zoom {z}")
    return TileAddress(z, x, y)


def web_tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    b = web_mercator().xy_bounds(x, y, z)
    return (b.left, b.bottom, b.right, b.top)


def lonlat_tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    b = web_mercator().bounds(x, y, z)
    return (b.left, b.bottom, b.right, b.top)


def tms_tile_bounds(tms: morecantile.TileMatrixSet, z: int, x: int, y: int) -> tuple[float, float, float, float]:
    b = tms.xy_bounds(x, y, z)
    return (b.left, b.bottom, b.right, b.top)


def matrix_size(tms: morecantile.TileMatrixSet, z: int) -> tuple[int, int]:
    m = tms.matrix(z)
    return (m.matrixWidth, m.matrixHeight)


def tiles_in_lonlat_bbox(bbox: tuple[float, float, float, float], zooms: range):
    """Web-mercator tiles covering a lon/lat bbox, zoom by zoom."""
    return web_mercator().tiles(*bbox, zooms=list(zooms))
