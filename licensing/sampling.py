"""Sample a registered raster (DTM, flood water level) under a footprint: bounded, windowed reads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import geometry_mask
from rasterio.windows import Window
from shapely.geometry import mapping

from gisserver.crs import CITY_SRID, transformer
from gisserver.errors import InvalidFile


def resolve_path(path: str, root: Path | None) -> Path:
    p = Path(path)
    if not p.is_absolute() and root is not None:
        p = Path(root) / p
    return p


def sample_under(path: Path, geom, raster_srid: int = CITY_SRID) -> np.ndarray:
    """Valid cell values of band 1 touched by ``geom`` (city CRS); empty when nothing valid."""
    if raster_srid != CITY_SRID:
        geom = shapely.transform(geom, transformer(CITY_SRID, raster_srid).transform, interleaved=False)
    try:
        with rasterio.open(path) as ds:
            a, b, c, d, e, f = tuple(ds.transform)[:6]
            if b != 0 or d != 0:
                raise InvalidFile(f"raster {path.name} is rotated; only north-up rasters are sampled")
            # pixel window of the bounds (affine arithmetic by hand: rasterio's helpers warn on affine 3)
            minx, miny, maxx, maxy = geom.bounds
            cols = sorted(((minx - c) / a, (maxx - c) / a))
            rows = sorted(((miny - f) / e, (maxy - f) / e))
            col0, row0 = max(math.floor(cols[0]), 0), max(math.floor(rows[0]), 0)
            col1, row1 = min(math.ceil(cols[1]) + 1, ds.width), min(math.ceil(rows[1]) + 1, ds.height)
            if col1 <= col0 or row1 <= row0:
                return np.empty(0)
            band = ds.read(1, window=Window(col0, row0, col1 - col0, row1 - row0), masked=True)
            window_transform = Affine(a, 0.0, c + col0 * a, 0.0, e, f + row0 * e)
            inside = geometry_mask([mapping(geom)], out_shape=band.shape, transform=window_transform,
                                   invert=True, all_touched=True)
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidFile(f"raster {path.name} cannot be read: {exc}") from None
    valid = inside & ~np.ma.getmaskarray(band)
    return np.asarray(band.data[valid], dtype=float)
