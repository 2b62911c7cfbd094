"""Results of a run as planners use them: hazard classes, rasters (COG), extent polygons, gauges.

Hazard is classified on the envelope of the run (maximum depth, speed and depth x speed over
time), the usual practice for flood-risk maps:

* ARR 2016 / Smith et al. (2014) combined hazard curves H1-H6 (depth, velocity, depth x velocity);
* DEFRA FD2320/FD2321 hazard rating HR = d (v + 0.5) + DF with classes low/moderate/significant/extreme.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.features import shapes
from shapely import get_parts
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.validation import make_valid

from flood.errors import InvalidScenario

#: ARR 2016 Book 6 Chapter 7 Table 6.7.4 limits per class: (depth m, velocity m/s, depth x velocity m2/s).
ARR_HAZARD_LIMITS = (
    ("H1", 0.3, 2.0, 0.3),
    ("H2", 0.5, 2.0, 0.6),
    ("H3", 1.2, 2.0, 0.6),
    ("H4", 2.0, 2.0, 1.0),
    ("H5", 4.0, 4.0, 4.0),
)
#: DEFRA FD2321/TR2 (2006) Table 13.1 hazard rating classes (upper bounds).
DEFRA_CLASSES = (("low", 0.75), ("moderate", 1.25), ("significant", 2.0), ("extreme", np.inf))
DEPTH_BANDS = (0.1, 0.3, 0.5, 1.0, 2.0)


def arr_hazard(max_depth: np.ndarray, max_speed: np.ndarray, max_dv: np.ndarray, dry_depth: float = 0.01):
    """ARR 2016 hazard class per cell: 0 dry, 1..6 for H1..H6."""
    cls = np.full(max_depth.shape, 6, dtype=np.uint8)
    for k in range(len(ARR_HAZARD_LIMITS) - 1, -1, -1):
        _, d, v, dv = ARR_HAZARD_LIMITS[k]
        cls[(max_depth <= d) & (max_speed <= v) & (max_dv <= dv)] = k + 1
    cls[max_depth <= dry_depth] = 0
    return cls


def defra_hazard_rating(max_depth: np.ndarray, max_hr: np.ndarray, debris_factor: float = 1.0):
    """HR = max over time of d (v + 0.5), plus the debris factor where the depth exceeded 0.25 m.

    FD2320 suggests DF = 0.5-1.0 above 0.25 m depending on land use; 1.0 (urban) is the default.
    """
    return max_hr + np.where(max_depth > 0.25, debris_factor, 0.0)


def defra_hazard_class(rating: np.ndarray, max_depth: np.ndarray, dry_depth: float = 0.01):
    """0 dry, 1 low, 2 moderate, 3 significant, 4 extreme."""
    bounds = np.array([b for _, b in DEFRA_CLASSES[:-1]])
    cls = (np.searchsorted(bounds, rating, side="left") + 1).astype(np.uint8)  # upper bounds inclusive
    cls[max_depth <= dry_depth] = 0
    return cls


@dataclass
class FloodMaps:
    max_depth: np.ndarray
    max_speed: np.ndarray
    max_dv: np.ndarray
    hazard_arr: np.ndarray
    hazard_defra: np.ndarray
    arrival_s: np.ndarray
    duration_s: np.ndarray


def flood_maps(sim) -> FloodMaps:
    """The envelope maps of a :class:`flood.solver.Simulation` (blocked cells are NaN / class 0)."""
    blocked = sim.domain.blocked
    rating = defra_hazard_rating(sim.max_depth, sim.max_hr)
    maps = FloodMaps(
        max_depth=sim.max_depth.copy(),
        max_speed=sim.max_speed.copy(),
        max_dv=sim.max_dv.copy(),
        hazard_arr=arr_hazard(sim.max_depth, sim.max_speed, sim.max_dv),
        hazard_defra=defra_hazard_class(rating, sim.max_depth),
        arrival_s=np.where(sim.arrival >= 0, sim.arrival, np.nan),
        duration_s=sim.duration.copy(),
    )
    for name in ("max_depth", "max_speed", "max_dv", "duration_s", "arrival_s"):
        getattr(maps, name)[blocked] = np.nan
    return maps


def write_cog(path: str | Path, array: np.ndarray, transform: Affine, crs, *, nodata: float | None = None) -> Path:
    """Write one band as a Cloud-Optimised GeoTIFF (tiled, overviews, deflate)."""
    path = Path(path)
    array = np.asarray(array)
    if array.ndim != 2:
        raise InvalidScenario("write_cog takes one 2D band")
    dtype = "float32" if array.dtype.kind == "f" else array.dtype.name
    if dtype == "float32" and nodata is None:
        nodata = np.nan
    profile = {"driver": "COG", "width": array.shape[1], "height": array.shape[0], "count": 1, "dtype": dtype,
               "crs": crs, "transform": transform, "nodata": nodata, "compress": "deflate",
               "blocksize": 256, "overview_resampling": "nearest"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array.astype(dtype), 1)
    return path


def write_maps(folder: str | Path, maps: FloodMaps, transform: Affine, crs) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("max_depth", "max_speed", "max_dv", "arrival_s", "duration_s"):
        out[name] = write_cog(folder / f"{name}.tif", getattr(maps, name), transform, crs)
    for name in ("hazard_arr", "hazard_defra"):
        out[name] = write_cog(folder / f"{name}.tif", getattr(maps, name), transform, crs, nodata=0)
    return out


def write_depth_steps(folder: str | Path, snapshots: dict[float, np.ndarray], transform: Affine, crs,
                      blocked: np.ndarray | None = None) -> dict[float, Path]:
    """One COG per saved time step, named by the simulated second (``depth_t000600.tif``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for t, h in sorted(snapshots.items()):
        band = h.astype(np.float32)
        if blocked is not None:
            band[blocked] = np.nan
        out[t] = write_cog(folder / f"depth_t{int(round(t)):06d}.tif", band, transform, crs)
    return out


def extent_polygons(max_depth: np.ndarray, transform: Affine, bands=DEPTH_BANDS) -> list[dict]:
    """Flood extent as one MultiPolygon per depth band [bands[k-1], bands[k]), ready for PostGIS.

    Each item: ``{"min_depth": float, "max_depth": float|None, "area_m2": float, "geometry": MultiPolygon}``
    in the raster's CRS. Cells of a band are polygonised with rasterio (4-connected).
    """
    depth = np.nan_to_num(max_depth, nan=0.0)
    edges = list(bands) + [np.inf]
    band_index = np.zeros(depth.shape, dtype=np.int32)
    for k, lower in enumerate(bands):
        band_index[depth >= lower] = k + 1
    groups: dict[int, list] = {}
    for geom, value in shapes(band_index, mask=band_index > 0, connectivity=4, transform=transform):
        groups.setdefault(int(value), []).append(shape(geom))
    result = []
    for k in sorted(groups):
        polys = []
        for g in groups[k]:
            polys.extend(g.geoms if isinstance(g, MultiPolygon) else [g])
        # rings of 4-connected cells can touch themselves at a corner (invalid for GEOS): repair
        mp = MultiPolygon(polys)
        if not mp.is_valid:
            mp = MultiPolygon([g for g in get_parts(make_valid(mp)) if isinstance(g, Polygon)])
        upper = edges[k]
        result.append({"min_depth": float(edges[k - 1]), "max_depth": None if np.isinf(upper) else float(upper),
                       "area_m2": float(mp.area), "geometry": mp})
    return result


def step_extents(snapshots: dict[float, np.ndarray], transform: Affine, bands=DEPTH_BANDS) -> list[dict]:
    """Extent polygons per depth band of every saved time step (items of :func:`extent_polygons`
    with ``time_s``). A step with no cell reaching ``bands[0]`` gets one empty item (band 0 to
    ``bands[0]``, no area), so every saved step stays a value of the map layer's time dimension."""
    items = []
    for t, depth in sorted(snapshots.items()):
        polygons = extent_polygons(depth, transform, bands)
        if not polygons:
            polygons = [{"min_depth": 0.0, "max_depth": float(bands[0]), "area_m2": 0.0, "geometry": MultiPolygon()}]
        items.extend({**p, "time_s": float(t)} for p in polygons)
    return items


def gauge_table(times: np.ndarray, depths: np.ndarray, names: list[str], ground: np.ndarray) -> list[dict]:
    """Rows (time_s, gauge, depth_m, level_m) of gauge time series, for CSV or JSON."""
    rows = []
    for i, t in enumerate(times):
        for j, name in enumerate(names):
            rows.append({"time_s": float(t), "gauge": name, "depth_m": float(depths[i, j]),
                         "level_m": float(ground[j] + depths[i, j])})
    return rows
