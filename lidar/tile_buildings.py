"""Buildings and LoD2 roofs of one buffered tile, each building owned by exactly one tile.

A tile's task (``lidar.tiling.process_tile``) has its buffered points and its own DTM. The points
more than ``min_height`` above that DTM (noise classes 7 and 18 excepted) give the detected
footprints, their heights and their roofs (``lidar.buildings``, ``lidar.roofs``), and the
heights and roofs of the cadastral footprints the tile owns.

Ownership: a footprint belongs to the tile whose core contains its owner point (the
representative point of its largest polygon; half-open cores, so exactly one tile). Neighbouring
tiles see the same points and the same DTM around a building they both hold whole, so they
outline it alike and only the owner keeps it: buildings across tile edges are neither cut nor
duplicated.

The buffer: the DTM equals a single-tile run's only within the raster buffer's influence, i.e.
up to ``reach`` beyond the core when the tile is retiled with ``buffer + reach``
(``TileScheme.building_reach``). A building owned by the tile must lie within that distance of
its core; one that does not (a footprint cut at the buffer's edge, or a very large building) is
reported in ``oversized`` with the reach it needs, never silently truncated
(``lidar.tiling.run_tiled`` re-runs such tiles with a wider reach).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import MultiPolygon, Polygon

from lidar.buildings import Building, BuildingParams, building_heights, detect_buildings
from lidar.grid import GridSpec, sample_bilinear
from lidar.roofs import RoofModel, RoofParams, fit_roof, reconstruct_roofs, roof_points

#: cell of the building detection grid (the DTM is sampled bilinearly onto it when coarser)
BUILDING_CELL = 0.5
#: vendor classes never taken as building points: low and high noise
NOISE_CLASSES = (7, 18)


@dataclass(frozen=True)
class BuildingRequest:
    """What a tiled run computes for buildings (``lidar.tiling.run_tiled(buildings=...)``).

    ``reach``: how far (m) beyond its tile's core a building may extend (the tiles are retiled
    with this much more buffer). ``roofs``: fit LoD2 roof models as well. ``detect``: detect
    footprints (otherwise only the given cadastral footprints are measured). ``widenings``: how
    many times the run re-runs, with the reach they need, tiles whose buildings reach farther.
    """

    reach: float = 50.0
    roofs: bool = True
    params: BuildingParams | None = None
    roof_params: RoofParams | None = None
    detect: bool = True
    widenings: int = 2


@dataclass
class CadastralMeasure:
    """Heights of a cadastral footprint (measured on its largest polygon) and a roof per polygon."""

    building: Building
    roofs: list[RoofModel] | None


@dataclass
class TileBuildings:
    """A tile's share of the run: small results (polygons, heights, roof models), no points."""

    detected: list[Building] = field(default_factory=list)
    cadastral: dict[int, CadastralMeasure] = field(default_factory=dict)
    #: owned footprints reaching past ``reach`` (bounds and the reach they need): not kept
    oversized: list[dict] = field(default_factory=list)


def largest_polygon(geom) -> Polygon:
    return max(geom.geoms, key=lambda g: g.area) if isinstance(geom, MultiPolygon) else geom


def owner_point(geom) -> tuple[float, float]:
    """The point that decides which tile owns a footprint."""
    p = largest_polygon(geom).representative_point()
    return float(p.x), float(p.y)


def owner_key(geom, size: float) -> tuple[int, int]:
    x, y = owner_point(geom)
    return int(math.floor(x / size)), int(math.floor(y / size))


def reach_beyond(core: tuple[float, float, float, float], bounds: tuple[float, float, float, float]) -> float:
    """How far (m) ``bounds`` extend beyond ``core`` (0 when inside)."""
    x0, y0, x1, y1 = core
    b0, b1, b2, b3 = bounds
    return max(0.0, x0 - b0, y0 - b1, b2 - x1, b3 - y1)


def building_grid(dtm: np.ndarray, grid: GridSpec) -> tuple[np.ndarray, GridSpec]:
    """The DTM on the building detection grid (bilinear when the run's grid is coarser)."""
    k = int(round(grid.cell / BUILDING_CELL))
    if k <= 1:
        return dtm, grid
    fine = GridSpec(grid.x0, grid.y1, grid.cell / k, grid.width * k, grid.height * k)
    cx, cy = np.meshgrid(fine.x0 + (np.arange(fine.width) + 0.5) * fine.cell,
                         fine.y1 - (np.arange(fine.height) + 0.5) * fine.cell)
    return sample_bilinear(dtm, cx.ravel(), cy.ravel(), grid.x0, grid.y1, grid.cell).reshape(fine.shape), fine


def tile_buildings(x, y, z, classification, number_of_returns, dtm: np.ndarray, grid: GridSpec,
                   core: tuple[float, float, float, float], request: BuildingRequest,
                   footprints: list[tuple[int, Polygon | MultiPolygon]] = ()) -> TileBuildings:
    """Detected buildings and cadastral ``footprints`` (id, geometry) owned by the tile of ``core``.

    ``x``..``number_of_returns`` are the tile's buffered points (vendor classes), ``dtm`` its
    buffered DTM on ``grid``; ``footprints`` are the cadastral footprints this tile owns.
    """
    params = request.params or BuildingParams()
    above = z - sample_bilinear(dtm, x, y, grid.x0, grid.y1, grid.cell)
    sel = (above > params.min_height) & ~np.isin(classification, NOISE_CLASSES)
    ex, ey, ez = x[sel], y[sel], z[sel]
    nret = np.asarray(number_of_returns)[sel].astype(np.uint8)
    cls = np.ones(len(ex), np.uint8)  # every kept point is > min_height above the DTM: not ground
    fine_dtm, fine = building_grid(dtm, grid)
    out = TileBuildings()
    found = detect_buildings(ex, ey, ez, cls, nret, fine_dtm, fine, params)[0] if request.detect else []
    for b in found:
        if owner_key(b.footprint, core[2] - core[0]) != _key_of(core):
            continue
        if not _within_reach(out, core, b.footprint, request.reach):
            continue
        out.detected.append(b)
    if request.roofs:
        reconstruct_roofs(out.detected, ex, ey, ez, cls, request.roof_params)
    for fid, geom in footprints:
        if not _within_reach(out, core, geom, request.reach, cadastral=fid):
            continue
        measured = building_heights([largest_polygon(geom)], ex, ey, ez, cls, fine_dtm, fine, params)
        if not measured:
            continue
        b = measured[0]
        roofs = None
        if request.roofs and np.isfinite([b.ground_p10, b.roof_p70]).all():
            polygons = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
            roofs = []
            for poly in polygons:
                idx = roof_points(poly, b.ground_p10, ex, ey, ez, cls, request.roof_params)
                roofs.append(fit_roof(poly, b.ground_p10, ex[idx], ey[idx], ez[idx], request.roof_params))
        out.cadastral[fid] = CadastralMeasure(b, roofs)
    return out


def _key_of(core) -> tuple[int, int]:
    size = core[2] - core[0]
    return int(round(core[0] / size)), int(round(core[1] / size))


def _within_reach(out: TileBuildings, core, geom, reach: float, cadastral: int | None = None) -> bool:
    need = reach_beyond(core, geom.bounds)
    if need <= reach:
        return True
    x, y = owner_point(geom)
    out.oversized.append({"owner_point": [round(x, 2), round(y, 2)], "bounds": [round(v, 2) for v in geom.bounds],
                          "reach_needed": round(need, 2), "cadastral_id": cadastral})
    return False
