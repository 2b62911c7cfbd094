"""Writing LiDAR results to PostGIS: the file index, the tile index, and extracted buildings.

All functions take a SQLAlchemy connection and write in the caller's transaction, so a failure
leaves nothing half-registered (use ``engine.begin()``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import shapely
from geoalchemy2.elements import WKTElement
from shapely.geometry import MultiPolygon, Polygon, box
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from gisserver.crs import CITY_SRID, transformer
from gisserver.errors import Conflict
from gisserver.schema import building
from lidar.buildings import Building
from lidar.catalogue import footprint_in_city_crs
from lidar.io import DEFAULT_CHUNK_SIZE, summarize
from lidar.tables import lidar_file, lidar_tile
from lidar.tiling import TiledRun, TileScheme


def index_file(conn: Connection, path, *, crs=None, vertical_datum: str | None = None,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Read a file once (chunked), validate it, and add it to ``lidar_file``; returns its id."""
    path = Path(path).resolve()
    if conn.execute(select(lidar_file.c.id).where(lidar_file.c.path == str(path))).scalar() is not None:
        raise Conflict(f"{path.name} is already indexed")
    s = summarize(path, crs=crs, vertical_datum=vertical_datum, chunk_size=chunk_size)
    footprint = footprint_in_city_crs(s.bounds, s.srid)
    row = {
        "path": str(path), "name": path.name, "file_size": s.file_size, "las_version": s.version,
        "point_format": s.point_format, "copc": s.copc, "point_count": s.point_count, "density": s.density,
        "classes": {str(k): v for k, v in s.classes.items()}, "z_min": s.z_range[0], "z_max": s.z_range[1],
        "source_srid": s.srid, "crs_name": s.crs_name, "crs_source": s.crs_source,
        "vertical_datum": s.vertical_datum,
        "acquisition_date": dt.date.fromisoformat(s.acquisition_date) if s.acquisition_date else None,
        "footprint": WKTElement(footprint.wkt, srid=CITY_SRID),
    }
    return int(conn.execute(insert(lidar_file).values(**row).returning(lidar_file.c.id)).scalar_one())


def _to_city(geom, srid: int):
    if srid == CITY_SRID:
        return geom
    t = transformer(srid, CITY_SRID)
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def record_tiles(conn: Connection, run: TiledRun, tile_size: float, *, job_id: int | None = None) -> int:
    """One ``lidar_tile`` row per processed tile of a run (tiles with core points)."""
    scheme = TileScheme(tile_size, 0.0)
    rows = []
    for t in run.tiles:
        if not t.points:
            continue
        geom = _to_city(box(*scheme.core_bounds(t.key)), run.srid)
        rows.append({"job_id": job_id, "tile_size": tile_size, "tile_x": t.key[0], "tile_y": t.key[1],
                     "status": "done", "point_count": t.points, "ground_count": t.ground,
                     "classes": {str(k): v for k, v in t.classes.items()},
                     "geom": WKTElement(geom.wkt, srid=CITY_SRID)})
    if rows:
        conn.execute(insert(lidar_tile), rows)
    return len(rows)


def store_buildings(conn: Connection, buildings: list[Building], *, srid: int,
                    lidar_date: dt.date | None = None) -> list[int]:
    """Insert extracted buildings into the canonical ``building`` table (source 'lidar')."""
    ids = []
    for b in buildings:
        geom = _to_city(b.footprint, srid)
        if isinstance(geom, Polygon):
            geom = MultiPolygon([geom])
        ids.append(int(conn.execute(
            insert(building).values(
                floors=b.floors, height=round(b.height, 3), ground_z=round(b.ground_p10, 3),
                roof_p50=round(b.roof_p50, 3), roof_p70=round(b.roof_p70, 3), roof_p90=round(b.roof_p90, 3),
                source="lidar", lidar_date=lidar_date,
                attributes={"point_count": b.point_count, "area_m2": round(b.area, 2)},
                geom=WKTElement(geom.wkt, srid=CITY_SRID),
            ).returning(building.c.id)
        ).scalar_one()))
    return ids


def update_cadastral_heights(conn: Connection, x, y, z, classification, dtm, grid, *,
                             lidar_date: dt.date | None = None, params=None) -> int:
    """Heights for the cadastre's own footprints (preferred over extracted ones, DOMAIN §5).

    The cloud and ``grid`` are in the city CRS. Every ``building`` row with source 'cadastre'
    inside the grid gets ground p10, roof p50/p70/p90, height and floors; returns how many.
    """
    from geoalchemy2.shape import to_shape
    from sqlalchemy import func, update

    from lidar.buildings import building_heights

    envelope = func.ST_MakeEnvelope(*grid.bounds, CITY_SRID)
    rows = conn.execute(
        select(building.c.id, building.c.geom).where(building.c.source == "cadastre",
                                                     func.ST_Intersects(building.c.geom, envelope))
    ).all()
    done = 0
    for row in rows:
        shape_ = to_shape(row.geom)
        polygon = max(shape_.geoms, key=lambda g: g.area) if hasattr(shape_, "geoms") else shape_
        found = building_heights([polygon], x, y, z, classification, dtm, grid, params)
        if not found:
            continue
        b = found[0]
        conn.execute(update(building).where(building.c.id == row.id).values(
            floors=b.floors, height=round(b.height, 3), ground_z=round(b.ground_p10, 3),
            roof_p50=round(b.roof_p50, 3), roof_p70=round(b.roof_p70, 3), roof_p90=round(b.roof_p90, 3),
            lidar_date=lidar_date))
        done += 1
    return done
