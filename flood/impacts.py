"""What a flood reaches: parcels, buildings and road segments with depth statistics.

Statistics are taken on the maximum-depth raster of a run. A feature's cells are those whose
centre lies inside it (polygons) or that it touches (lines). Buildings are blocked cells in the
model (no depth), so a building is judged by the water around it: the cells within one cell width
of its footprint. Results export to CSV or GeoPackage.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
from affine import Affine
from geoalchemy2.shape import to_shape
from rasterio.features import geometry_mask
from rasterio.windows import Window, from_bounds
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from flood.errors import InvalidScenario
from flood.tables import flood_extent
from gisserver.crs import city_crs
from gisserver.schema import building, parcel, road

LAYERS = {"parcels": (parcel, False), "buildings": (building, True), "roads": (road, False)}


def _window(geom, transform: Affine, shape, pad: int = 1) -> Window:
    win = from_bounds(*geom.bounds, transform=transform).round_offsets(op="floor").round_lengths(op="ceil")
    row0, col0 = max(int(win.row_off) - pad, 0), max(int(win.col_off) - pad, 0)
    row1 = min(int(win.row_off + win.height) + pad + 1, shape[0])
    col1 = min(int(win.col_off + win.width) + pad + 1, shape[1])
    return Window(col0, row0, max(col1 - col0, 0), max(row1 - row0, 0))


def feature_depths(geom, max_depth: np.ndarray, transform: Affine, *, around: bool = False,
                   wet_depth: float = 0.1) -> tuple[float, float, float, int]:
    """(max depth, mean depth, fraction of cells deeper than ``wet_depth``, cells) of one geometry."""
    win = _window(geom, transform, max_depth.shape)
    if win.width == 0 or win.height == 0:
        return 0.0, 0.0, 0.0, 0
    r0, c0 = int(win.row_off), int(win.col_off)
    sub = max_depth[r0:r0 + int(win.height), c0:c0 + int(win.width)]
    sub_transform = transform * Affine.translation(c0, r0)
    cell = abs(transform.a)
    shape_geom = geom.buffer(cell) if around else geom
    all_touched = geom.geom_type in ("LineString", "MultiLineString")
    inside = ~geometry_mask([shape_geom], out_shape=sub.shape, transform=sub_transform, all_touched=all_touched)
    values = sub[inside & np.isfinite(sub)]
    if values.size == 0:
        return 0.0, 0.0, 0.0, 0
    return float(values.max()), float(values.mean()), float(np.mean(values > wet_depth)), int(values.size)


def affected_features(conn: Connection, run_id: int, layer: str, max_depth: np.ndarray, transform: Affine,
                      *, wet_depth: float = 0.1) -> gpd.GeoDataFrame:
    """Features of ``layer`` (parcels, buildings, roads) touched by the run's flood extent, with depth stats.

    The candidates come from PostGIS with an index-backed ``ST_Intersects`` on the run's extent
    polygons; the statistics from the depth raster. Only features with a wet cell are returned.
    """
    if layer not in LAYERS:
        raise InvalidScenario(f"layer must be one of {sorted(LAYERS)}")
    table, around = LAYERS[layer]
    # one index probe per extent band instead of intersecting with their union: a union of
    # polygons that touch themselves can fail in GEOS, a per-band predicate does not
    touches_extent = (
        select(flood_extent.c.id)
        .where(flood_extent.c.run_id == run_id, func.ST_Intersects(table.c.geom, flood_extent.c.geom))
        .exists()
    )
    query = select(table.c.id, table.c.geom).where(touches_extent)
    if layer == "parcels":
        query = query.where(parcel.c.end_lifespan.is_(None))
    rows = conn.execute(query.order_by(table.c.id)).all()
    records, geoms = [], []
    for fid, wkb in rows:
        geom = to_shape(wkb)
        top, mean, wet, cells = feature_depths(geom, max_depth, transform, around=around, wet_depth=wet_depth)
        if wet > 0:
            records.append({"layer": layer, "feature_id": fid, "max_depth_m": round(top, 3),
                            "mean_depth_m": round(mean, 3), "wet_fraction": round(wet, 3), "cells": cells})
            geoms.append(geom)
    return gpd.GeoDataFrame(records, geometry=geoms, crs=city_crs())


def export(frame: gpd.GeoDataFrame, path: str | Path) -> Path:
    """Write to ``.csv`` (geometry as WKT) or ``.gpkg``."""
    path = Path(path)
    if path.suffix == ".csv":
        out = frame.copy()
        out["wkt"] = out.geometry.to_wkt()
        out.drop(columns="geometry").to_csv(path, index=False)
    elif path.suffix == ".gpkg":
        frame.to_file(path, driver="GPKG", layer=frame["layer"].iloc[0] if len(frame) else "impacts")
    else:
        raise InvalidScenario("export to .csv or .gpkg")
    return path
