"""Model terrain from the city's data: buildings as blocked cells or as raised ground.

Footprints come from the cadastre's ``building`` table (or any geometries in the city CRS); a cell
is a building cell when its centre lies inside a footprint.
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from geoalchemy2.shape import to_shape
from rasterio.features import rasterize
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from gisserver.crs import CITY_SRID
from gisserver.schema import building

#: height used for buildings without one when they are raised instead of blocked (m)
DEFAULT_BUILDING_HEIGHT = 10.0


def footprint_mask(geoms, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """True where a cell centre lies inside one of the footprints."""
    geoms = list(geoms)
    if not geoms:
        return np.zeros(shape, dtype=bool)
    return rasterize(((g, 1) for g in geoms), out_shape=shape, transform=transform, fill=0,
                     dtype="uint8").astype(bool)


def raise_buildings(z: np.ndarray, footprints_with_heights, transform: Affine) -> np.ndarray:
    """Bed with each footprint raised by its height (a DSM-like surface water flows around)."""
    pairs = [(g, float(h if h is not None else DEFAULT_BUILDING_HEIGHT)) for g, h in footprints_with_heights]
    if not pairs:
        return z.copy()
    heights = rasterize(pairs, out_shape=z.shape, transform=transform, fill=0.0, dtype="float64")
    return z + heights


def buildings_in(conn: Connection, transform: Affine, shape: tuple[int, int]) -> list[tuple[object, float | None]]:
    """(footprint, height) of the buildings intersecting the raster's extent (GiST-indexed query)."""
    ny, nx = shape
    x0, y0 = transform * (0, 0)
    x1, y1 = transform * (nx, ny)
    envelope = func.ST_MakeEnvelope(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), CITY_SRID)
    rows = conn.execute(
        select(building.c.geom, building.c.height).where(func.ST_Intersects(building.c.geom, envelope))
        .order_by(building.c.id)
    ).all()
    return [(to_shape(g), h) for g, h in rows]
