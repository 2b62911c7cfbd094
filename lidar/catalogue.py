"""Registering LiDAR products in the ``raster`` catalogue (gisserver.schema.raster)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from geoalchemy2.elements import WKTElement
from shapely.geometry import Polygon
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from gisserver.crs import CITY_SRID, srid_to_epsg, transformer
from gisserver.errors import Conflict, InvalidInput
from gisserver.schema import raster


def footprint_in_city_crs(bounds: tuple[float, float, float, float], srid: int, densify: int = 16) -> Polygon:
    """The raster's bounding box as a polygon in the city CRS (edges densified before reprojecting)."""
    x0, y0, x1, y1 = bounds
    t = np.linspace(0.0, 1.0, densify, endpoint=False)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(densify, x1), x1 - (x1 - x0) * t, np.full(densify, x0)])
    ys = np.concatenate([np.full(densify, y0), y0 + (y1 - y0) * t, np.full(densify, y1), y1 - (y1 - y0) * t])
    if srid != CITY_SRID:
        from pyproj import CRS

        area = CRS.from_epsg(srid_to_epsg(CITY_SRID)).area_of_use
        lon, lat = transformer(srid, 4326).transform(xs, ys)
        if not (area.west - 1 <= np.min(lon) and np.max(lon) <= area.east + 1
                and area.south - 1 <= np.min(lat) and np.max(lat) <= area.north + 1):
            raise InvalidInput(
                f"the raster (EPSG:{srid_to_epsg(srid)}) lies outside the city CRS's area of use; "
                "only rasters of the city can be catalogued"
            )
        xs, ys = transformer(srid, CITY_SRID).transform(xs, ys)
    return Polygon(np.column_stack([xs, ys]))


def register_raster(conn: Connection, *, name: str, kind: str, path, srid: int,
                    vertical_datum: str | None, sources: list[dict], access_level: str = "public",
                    replace: bool = False) -> int:
    """Insert (or with ``replace`` update) a raster row; resolution, size, nodata read from the file."""
    path = Path(path)
    with rasterio.open(path) as ds:
        width, height = ds.width, ds.height
        resolution = float(abs(ds.transform.a))
        nodata = ds.nodata
        bounds = tuple(ds.bounds)
    geom = footprint_in_city_crs(bounds, srid)
    values = {
        "kind": kind, "path": str(path), "resolution": resolution, "srid": srid,
        "vertical_datum": vertical_datum, "nodata": nodata, "width": width, "height": height,
        "access_level": access_level, "sources": sources,
        "footprint": WKTElement(geom.wkt, srid=CITY_SRID),
    }
    existing = conn.execute(select(raster.c.id).where(raster.c.name == name)).scalar()
    if existing is not None:
        if not replace:
            raise Conflict(f"a raster named {name!r} is already registered")
        conn.execute(update(raster).where(raster.c.id == existing)
                     .values(**values, data_version=raster.c.data_version + 1))
        return int(existing)
    return int(conn.execute(insert(raster).values(name=name, **values).returning(raster.c.id)).scalar_one())


def register_products(conn: Connection, outputs: dict[str, Path], *, prefix: str, srid: int,
                      vertical_datum: str | None, sources: list[dict], access_level: str = "public",
                      replace: bool = False) -> dict[str, int]:
    """Register every product of a run (dtm, dsm, ndsm, hillshade) in the caller's transaction.

    Call it inside ``engine.begin()``: if one registration fails, none is kept.
    """
    ids = {}
    for kind, path in outputs.items():
        datum = vertical_datum if kind in ("dtm", "dsm") else None
        ids[kind] = register_raster(conn, name=f"{prefix}_{kind}", kind=kind, path=path, srid=srid,
                                    vertical_datum=datum, sources=sources, access_level=access_level,
                                    replace=replace)
    return ids
