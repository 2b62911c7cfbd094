"""Writing rasters as Cloud-Optimized GeoTIFFs (GDAL's COG driver: tiled, overviews, CRS)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

from gisserver.crs import pyproj_crs
from lidar.grid import GridSpec

NODATA = -9999.0


def _rasterio_crs(srid_or_crs) -> CRS:
    crs = srid_or_crs if isinstance(srid_or_crs, ProjCRS) else pyproj_crs(int(srid_or_crs))
    return CRS.from_wkt(crs.to_wkt())


def write_cog(path, array: np.ndarray, grid: GridSpec, crs, *, nodata: float | None = NODATA,
              description: str | None = None, vertical_datum: str | None = None) -> Path:
    """Write one band as a COG (float32 with DEFLATE + floating-point predictor, or uint8).

    The file is written next to its final name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(array)
    if data.dtype == np.uint8:
        profile = {"dtype": "uint8", "nodata": None, "predictor": 2}
    else:
        data = np.where(np.isfinite(data), data, nodata if nodata is not None else np.nan).astype(np.float32)
        profile = {"dtype": "float32", "nodata": nodata, "predictor": 3}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with rasterio.open(
        tmp, "w", driver="COG", width=grid.width, height=grid.height, count=1, crs=_rasterio_crs(crs),
        transform=grid.transform, compress="DEFLATE", blocksize=256, overview_resampling="average",
        **profile,
    ) as ds:
        ds.write(data, 1)
        tags = {}
        if description:
            ds.set_band_description(1, description)
        if vertical_datum:
            tags["VERTICAL_DATUM"] = vertical_datum
        if tags:
            ds.update_tags(**tags)
    os.replace(tmp, path)
    return path
