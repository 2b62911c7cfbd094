"""Building footprints and heights from a classified point cloud and its DTM.

Where cadastral footprints exist they should be used (``building_heights`` takes any polygons);
otherwise ``detect_buildings`` extracts them:

1. elevated points: not ground, more than ``min_height`` above the DTM;
2. per cell, a least-squares plane through the elevated points of the 3x3 neighbourhood (moment
   sums box-filtered, all cells solved at once): roofs are planar (small residual) and answer with
   single returns, trees are rough and multi-return;
3. cell mask cleaned (closing, small holes filled, opening), components >= ``min_area``;
4. outlines polygonised, simplified and regularised (edges snapped to the building's two dominant
   perpendicular directions when they are within ``snap_degrees``).

Heights per footprint (3D BAG style): ground = p10 of the DTM under the footprint, roof =
p50/p70/p90 of the elevated points inside it, floors = (p70 - ground) / ``floor_height``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from rasterio import features
from scipy import ndimage
from shapely import contains_xy
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.validation import make_valid

from lidar.grid import GridSpec, sample_bilinear

if TYPE_CHECKING:
    from lidar.roofs import RoofModel


@dataclass(frozen=True)
class BuildingParams:
    min_height: float = 2.0
    #: largest RMS residual (m) of the local roof plane (3x3 cells: pitched roofs, dormers pass)
    max_roughness: float = 0.3
    #: smallest share of single-return pulses among a cell's elevated points (planar cells)
    min_single_return: float = 0.3
    #: share of single returns above which a rough (non-planar) cell still counts as roof
    rough_single_return: float = 0.5
    min_area: float = 20.0
    #: largest hole (m2) inside a footprint that is filled (courtyards stay open)
    max_hole: float = 10.0
    simplify: float = 1.0
    snap_degrees: float = 15.0
    floor_height: float = 3.2


@dataclass
class Building:
    footprint: Polygon
    ground_p10: float
    roof_p50: float
    roof_p70: float
    roof_p90: float
    point_count: int
    floor_height: float = 3.2
    #: LoD2 roof model (``lidar.roofs.reconstruct_roofs``); None until fitted
    roof: RoofModel | None = None

    @property
    def area(self) -> float:
        return float(self.footprint.area)

    @property
    def height(self) -> float:
        """LoD1 height above ground (roof p70 - ground p10)."""
        return self.roof_p70 - self.ground_p10

    @property
    def floors(self) -> int:
        return max(1, int(round(self.height / self.floor_height)))


def _box_sum(a: np.ndarray) -> np.ndarray:
    return ndimage.uniform_filter(a, size=3, mode="constant") * 9.0


def planarity_grids(x, y, z, single, grid: GridSpec):
    """(count, plane RMS residual, single-return share) per cell over its 3x3 neighbourhood."""
    rows, cols = grid.cell_index(x, y)
    ok = rows >= 0
    rows, cols = rows[ok], cols[ok]
    lx, ly, lz = x[ok] - grid.x0, y[ok] - grid.y1, z[ok]
    shape_ = grid.shape
    flat = rows * grid.width + cols
    size = grid.height * grid.width

    def moment(values):
        return _box_sum(np.bincount(flat, weights=values, minlength=size).reshape(shape_))

    n = moment(np.ones_like(lz))
    sx, sy, sz = moment(lx), moment(ly), moment(lz)
    sxx, sxy, syy = moment(lx * lx), moment(lx * ly), moment(ly * ly)
    sxz, syz, szz = moment(lx * lz), moment(ly * lz), moment(lz * lz)
    ns = moment(single[ok].astype(np.float64))
    a = np.stack([np.stack([sxx, sxy, sx], -1), np.stack([sxy, syy, sy], -1), np.stack([sx, sy, n], -1)], -2)
    b = np.stack([sxz, syz, sz], -1)
    enough = n >= 4
    coef = np.zeros(shape_ + (3,))
    det = np.linalg.det(a[enough])
    solvable = np.abs(det) > 1e-9
    idx = np.flatnonzero(enough.ravel())[solvable]
    coef.reshape(-1, 3)[idx] = np.linalg.solve(a.reshape(-1, 3, 3)[idx], b.reshape(-1, 3)[idx][..., None])[..., 0]
    sse = szz - np.sum(coef * b, axis=-1)
    rms = np.full(shape_, np.inf)
    good = np.zeros(size, dtype=bool)
    good[idx] = True
    good = good.reshape(shape_)
    rms[good] = np.sqrt(np.maximum(sse[good], 0.0) / n[good])
    share = np.where(n > 0, ns / np.maximum(n, 1), 0.0)
    return n, rms, share


def building_mask(x, y, z, classification, number_of_returns, dtm: np.ndarray, grid: GridSpec,
                  params: BuildingParams | None = None) -> np.ndarray:
    """Boolean cell mask of building roofs."""
    params = params or BuildingParams()
    height = z - sample_bilinear(dtm, x, y, grid.x0, grid.y1, grid.cell)
    elevated = (np.asarray(classification) != 2) & (height > params.min_height)
    single = np.asarray(number_of_returns)[elevated] == 1
    n, rms, share = planarity_grids(x[elevated], y[elevated], z[elevated], single, grid)
    rows, cols = grid.cell_index(x[elevated], y[elevated])
    occupied = np.zeros(grid.shape, dtype=bool)
    occupied[rows[rows >= 0], cols[rows >= 0]] = True
    # roofs answer with single returns; a rough surface must be almost all single returns to count
    planar = rms <= params.max_roughness
    roof = occupied & (share >= params.min_single_return) & (planar | (share >= params.rough_single_return))
    return clean_mask(roof, grid.cell, params)


def clean_mask(mask: np.ndarray, cell: float, params: BuildingParams) -> np.ndarray:
    cross = ndimage.generate_binary_structure(2, 1)
    m = ndimage.binary_closing(mask, structure=cross, iterations=1, border_value=0)
    holes = ndimage.binary_fill_holes(m) & ~m
    lab, n = ndimage.label(holes)
    if n:
        sizes = ndimage.sum(holes, lab, np.arange(1, n + 1)) * cell * cell
        m |= np.isin(lab, 1 + np.flatnonzero(sizes <= params.max_hole))
    m = ndimage.binary_opening(m, structure=cross, iterations=1, border_value=0)
    lab, n = ndimage.label(m)
    if n == 0:
        return m
    sizes = ndimage.sum(m, lab, np.arange(1, n + 1)) * cell * cell
    return np.isin(lab, 1 + np.flatnonzero(sizes >= params.min_area))


def footprints_from_mask(mask: np.ndarray, grid: GridSpec, params: BuildingParams | None = None) -> list[Polygon]:
    """Polygonise the mask, then simplify and regularise each outline."""
    params = params or BuildingParams()
    out = []
    for geom, value in features.shapes(mask.astype(np.uint8), mask=mask, transform=grid.transform):
        if not value:
            continue
        poly = regularize(shape(geom), params.simplify, params.snap_degrees)
        if poly is not None and poly.area >= params.min_area:
            out.append(poly)
    return out


def _dominant_direction(poly: Polygon) -> float:
    """Main orientation (radians, modulo 90°) weighted by edge length."""
    xy = np.asarray(poly.exterior.coords)
    d = np.diff(xy, axis=0)
    length = np.hypot(d[:, 0], d[:, 1])
    angle = np.mod(np.arctan2(d[:, 1], d[:, 0]), np.pi / 2)
    # circular mean on the 90°-periodic angle
    c = np.sum(length * np.cos(4 * angle))
    s = np.sum(length * np.sin(4 * angle))
    return math.atan2(s, c) / 4


def _snap_ring(coords: np.ndarray, theta: float, snap: float) -> np.ndarray | None:
    pts = coords[:-1]
    n = len(pts)
    if n < 4:
        return None
    dirs = []
    for i in range(n):
        d = pts[(i + 1) % n] - pts[i]
        ang = math.atan2(d[1], d[0])
        rel = (ang - theta) % (math.pi / 2)
        if rel < snap:
            ang -= rel
        elif rel > math.pi / 2 - snap:
            ang += math.pi / 2 - rel
        dirs.append(ang)
    # each edge becomes the line through its midpoint with the (snapped) direction
    mids = [(pts[i] + pts[(i + 1) % n]) / 2 for i in range(n)]
    out = []
    for i in range(n):
        j = (i - 1) % n  # previous edge
        a1, a2 = dirs[j], dirs[i]
        u = np.array([math.cos(a1), math.sin(a1)])
        v = np.array([math.cos(a2), math.sin(a2)])
        cross = u[0] * v[1] - u[1] * v[0]
        if abs(cross) < 1e-6:
            continue  # parallel consecutive edges: the vertex disappears
        t = ((mids[i][0] - mids[j][0]) * v[1] - (mids[i][1] - mids[j][1]) * v[0]) / cross
        out.append(mids[j] + t * u)
    if len(out) < 3:
        return None
    out.append(out[0])
    return np.asarray(out)


def regularize(poly: Polygon, tolerance: float, snap_degrees: float) -> Polygon | None:
    """Simplify an outline and snap its edges to the two dominant perpendicular directions."""
    simple = poly.simplify(tolerance, preserve_topology=True)
    if simple.is_empty or not isinstance(simple, Polygon):
        return None
    theta = _dominant_direction(simple)
    snap = math.radians(snap_degrees)
    shell = _snap_ring(np.asarray(simple.exterior.coords), theta, snap)
    if shell is None:
        return simple
    holes = [h for h in (_snap_ring(np.asarray(r.coords), theta, snap) for r in simple.interiors) if h is not None]
    snapped = Polygon(shell, holes)
    if not snapped.is_valid:
        snapped = make_valid(snapped)
        if isinstance(snapped, MultiPolygon):
            snapped = max(snapped.geoms, key=lambda g: g.area)
        if not isinstance(snapped, Polygon):
            return simple
    # a snap that moves the outline a lot is worse than the plain simplification
    moved = snapped.symmetric_difference(simple).area
    if abs(snapped.area - simple.area) > 0.1 * simple.area or moved > 0.2 * simple.area:
        return simple
    return snapped


def building_heights(footprints: list[Polygon], x, y, z, classification, dtm: np.ndarray, grid: GridSpec,
                     params: BuildingParams | None = None) -> list[Building]:
    """Ground p10 (DTM under the footprint) and roof p50/p70/p90 (elevated points inside)."""
    params = params or BuildingParams()
    height = z - sample_bilinear(dtm, x, y, grid.x0, grid.y1, grid.cell)
    elevated = (np.asarray(classification) != 2) & (height > params.min_height)
    ex, ey, ez = x[elevated], y[elevated], z[elevated]
    xc = grid.x0 + (np.arange(grid.width) + 0.5) * grid.cell
    yc = grid.y1 - (np.arange(grid.height) + 0.5) * grid.cell
    out = []
    for poly in footprints:
        x0, y0, x1, y1 = poly.bounds
        sel = (ex >= x0) & (ex <= x1) & (ey >= y0) & (ey <= y1)
        inside = np.flatnonzero(sel)[contains_xy(poly, ex[sel], ey[sel])]
        c0, c1 = np.searchsorted(xc, [x0, x1])
        r0, r1 = np.searchsorted(-yc, [-y1, -y0])
        cx, cy = np.meshgrid(xc[c0:c1], yc[r0:r1])
        cells = contains_xy(poly, cx, cy)
        if inside.size < 3 or not cells.any():
            continue
        ground = dtm[r0:r1, c0:c1][cells]
        p50, p70, p90 = np.percentile(ez[inside], [50, 70, 90])
        out.append(Building(poly, float(np.percentile(ground, 10)), float(p50), float(p70), float(p90),
                            int(inside.size), params.floor_height))
    return out


def detect_buildings(x, y, z, classification, number_of_returns, dtm: np.ndarray, grid: GridSpec,
                     params: BuildingParams | None = None) -> tuple[list[Building], np.ndarray]:
    """Footprints and heights from the cloud; returns (buildings, roof cell mask)."""
    params = params or BuildingParams()
    mask = building_mask(x, y, z, classification, number_of_returns, dtm, grid, params)
    polys = footprints_from_mask(mask, grid, params)
    return building_heights(polys, x, y, z, classification, dtm, grid, params), mask


def points_in_footprints(buildings: list[Building], x, y) -> np.ndarray:
    """Boolean per point: inside any footprint."""
    inside = np.zeros(len(x), dtype=bool)
    for b in buildings:
        x0, y0, x1, y1 = b.footprint.bounds
        sel = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
        inside[sel[contains_xy(b.footprint, x[sel], y[sel])]] = True
    return inside
