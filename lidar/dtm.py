"""Surface models: DTM (ground TIN), DSM (highest first return), nDSM and hillshade.

DTM: the lowest ground point of each cell (its true x, y, z, not the cell centre) -> Delaunay
triangulation -> every cell centre gets the barycentric (linear) value of the triangle it falls
in (a numba kernel that walks each triangle's bounding box once: O(triangles + cells)); cells
outside the hull are filled with the harmonic membrane of :mod:`lidar.inpaint`.
DSM: the highest first return per cell, empty cells filled by the membrane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy.spatial import Delaunay, QhullError

from lidar.grid import GridSpec, cell_max, cell_min

try:
    import triangle as _triangle
except ImportError:  # pragma: no cover - optional, faster Delaunay
    _triangle = None
from lidar.inpaint import fill_missing


@numba.njit(cache=True, nogil=True)
def rasterize_triangles(px, py, pz, simplices, x0, y1, cell, height, width):
    """Barycentric interpolation of a TIN at cell centres (NaN where no triangle covers)."""
    out = np.full((height, width), np.nan)
    eps = -1e-9
    for t in range(simplices.shape[0]):
        a, b, c = simplices[t, 0], simplices[t, 1], simplices[t, 2]
        ax, ay, az = px[a], py[a], pz[a]
        bx, by, bz = px[b], py[b], pz[b]
        cx, cy, cz = px[c], py[c], pz[c]
        det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
        if det == 0.0:
            continue
        # cell columns/rows whose centres may fall in the triangle's bounding box
        c0 = max(int(math.ceil((min(ax, bx, cx) - x0) / cell - 0.5)), 0)
        c1 = min(int(math.floor((max(ax, bx, cx) - x0) / cell - 0.5)), width - 1)
        r0 = max(int(math.ceil((y1 - max(ay, by, cy)) / cell - 0.5)), 0)
        r1 = min(int(math.floor((y1 - min(ay, by, cy)) / cell - 0.5)), height - 1)
        for r in range(r0, r1 + 1):
            yc = y1 - (r + 0.5) * cell
            for col in range(c0, c1 + 1):
                xc = x0 + (col + 0.5) * cell
                la = ((by - cy) * (xc - cx) + (cx - bx) * (yc - cy)) / det
                lb = ((cy - ay) * (xc - cx) + (ax - cx) * (yc - cy)) / det
                lc = 1.0 - la - lb
                if la >= eps and lb >= eps and lc >= eps:
                    out[r, col] = la * az + lb * bz + lc * cz
    return out


def tin_surface(x: np.ndarray, y: np.ndarray, z: np.ndarray, grid: GridSpec,
                max_circumradius: float | None = None) -> np.ndarray:
    """Linear TIN interpolation of points at the grid's cell centres (NaN outside the hull).

    ``max_circumradius`` drops triangles whose circumcircle is larger: those long hull-edge
    triangles depend on points far away, so a tile could not reproduce them from its buffer.
    """
    if x.size < 3:
        return np.full(grid.shape, np.nan)
    # triangulate in local coordinates: large projected values cost precision
    ox, oy = grid.x0, grid.y1
    pts = np.column_stack([x - ox, y - oy])
    simplices = delaunay(pts)
    if simplices is None:
        return np.full(grid.shape, np.nan)
    if max_circumradius is not None:
        simplices = simplices[_circumradius(pts, simplices) <= max_circumradius]
    return rasterize_triangles(pts[:, 0], pts[:, 1], np.asarray(z, dtype=np.float64), simplices,
                               0.0, 0.0, grid.cell, grid.height, grid.width)


def delaunay(pts: np.ndarray) -> np.ndarray | None:
    """Delaunay triangles (indices into ``pts``); None when the points are degenerate.

    Uses Shewchuk's Triangle (exact predicates, ~10x faster than Qhull) when installed, else
    scipy's Qhull. Triangle's licence restricts commercial redistribution: see docs/lidar.md.
    """
    if _triangle is not None:
        out = _triangle.triangulate({"vertices": pts}, "Q")
        tris = out.get("triangles")
        if tris is None or len(tris) == 0:
            return None
        # Triangle drops duplicate vertices but keeps input numbering for the others
        if len(out["vertices"]) != len(pts) or not np.array_equal(out["vertices"], pts):
            return None if len(out["vertices"]) < 3 else _remap(out, pts)
        return tris.astype(np.int64)
    try:
        return Delaunay(pts).simplices.astype(np.int64)
    except QhullError:
        return None


def _remap(out, pts):
    # map Triangle's vertex list back onto the input points (only with duplicates)
    order = {tuple(p): i for i, p in enumerate(pts)}
    idx = np.array([order[tuple(p)] for p in out["vertices"]], dtype=np.int64)
    return idx[out["triangles"]]


def _circumradius(pts: np.ndarray, simplices: np.ndarray) -> np.ndarray:
    a, b, c = pts[simplices[:, 0]], pts[simplices[:, 1]], pts[simplices[:, 2]]
    ab = np.hypot(*(a - b).T)
    bc = np.hypot(*(b - c).T)
    ca = np.hypot(*(c - a).T)
    area2 = np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = ab * bc * ca / (2.0 * area2)
    return np.where(area2 > 0, r, np.inf)


def _cell_points(x, y, z, grid: GridSpec, lowest: bool):
    rows, cols = grid.cell_index(x, y)
    if lowest:
        _, idx = cell_min(rows, cols, z, grid.height, grid.width)
    else:
        idx = _cell_argmax(rows, cols, z, grid.height, grid.width)
    sel = idx[idx >= 0]
    return x[sel], y[sel], z[sel]


@numba.njit(cache=True, nogil=True)
def _cell_argmax(rows, cols, z, height, width):
    best = np.full((height, width), -np.inf)
    idx = np.full((height, width), -1, np.int64)
    for i in range(z.shape[0]):
        r = rows[i]
        if r < 0:
            continue
        if z[i] > best[r, cols[i]]:
            best[r, cols[i]] = z[i]
            idx[r, cols[i]] = i
    return idx


def _filled(surface: np.ndarray) -> np.ndarray:
    if np.isnan(surface).all():
        return surface
    return fill_missing(surface) if np.isnan(surface).any() else surface


def build_dtm(x, y, z, grid: GridSpec, max_circumradius: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DTM from ground points: lowest point per cell -> Delaunay TIN -> barycentric raster.

    Returns (dtm, support): ``support`` marks cells covered by a TIN triangle; the others are
    gaps filled by the harmonic membrane.
    """
    gx, gy, gz = _cell_points(np.asarray(x, float), np.asarray(y, float), np.asarray(z, float), grid, True)
    tin = tin_surface(gx, gy, gz, grid, max_circumradius)
    return _filled(tin), np.isfinite(tin)


def build_dsm(x, y, z, grid: GridSpec) -> np.ndarray:
    """DSM from first returns: highest point per cell; empty cells (a few per cent) by membrane."""
    x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
    rows, cols = grid.cell_index(x, y)
    return _filled(cell_max(rows, cols, z, grid.height, grid.width))


def hillshade(dem: np.ndarray, cell: float, azimuth: float = 315.0, altitude: float = 45.0) -> np.ndarray:
    """Hillshade (0-255, uint8) with the usual Horn-like gradient; NaN cells give 0."""
    z = np.pad(np.asarray(dem, dtype=np.float64), 1, mode="edge")
    dzdx = ((z[:-2, 2:] + 2 * z[1:-1, 2:] + z[2:, 2:]) - (z[:-2, :-2] + 2 * z[1:-1, :-2] + z[2:, :-2])) / (8 * cell)
    dzdy = ((z[2:, :-2] + 2 * z[2:, 1:-1] + z[2:, 2:]) - (z[:-2, :-2] + 2 * z[:-2, 1:-1] + z[:-2, 2:])) / (8 * cell)
    slope = np.arctan(np.hypot(dzdx, dzdy))
    aspect = np.arctan2(dzdy, -dzdx)
    zen = math.radians(90.0 - altitude)
    az = math.radians((360.0 - azimuth + 90.0) % 360.0)
    shade = np.cos(zen) * np.cos(slope) + np.sin(zen) * np.sin(slope) * np.cos(az - aspect)
    out = np.clip(shade * 255.0, 0, 255)
    out[~np.isfinite(out)] = 0
    return out.astype(np.uint8)


@dataclass
class SurfaceModels:
    grid: GridSpec
    dtm: np.ndarray
    dsm: np.ndarray
    #: DTM cells interpolated inside a TIN triangle (False: gap filled by the membrane)
    support: np.ndarray

    @property
    def ndsm(self) -> np.ndarray:
        """Height above ground; negative values (DSM below DTM by noise) are clipped to 0."""
        return np.maximum(self.dsm - self.dtm, 0.0)

    def crop(self, core: GridSpec) -> SurfaceModels:
        rows, cols = self.grid.window_of(core)
        return SurfaceModels(core, self.dtm[rows, cols], self.dsm[rows, cols], self.support[rows, cols])


def build_surfaces(x, y, z, classification, return_number, grid: GridSpec,
                   max_circumradius: float | None = None) -> SurfaceModels:
    """DTM from ground points (class 2 only: water 9 and bridge decks 17 stay out of the hydraulic
    DTM), DSM from first returns (noise 7/18 excluded)."""
    cls = np.asarray(classification)
    ground = cls == 2
    not_noise = ~np.isin(cls, (7, 18))
    first = (np.asarray(return_number) <= 1) & not_noise
    dtm, support = build_dtm(x[ground], y[ground], z[ground], grid, max_circumradius)
    dsm = build_dsm(x[first], y[first], z[first], grid)
    # a DSM cell is never below the terrain
    dsm = np.fmax(dsm, dtm)
    return SurfaceModels(grid, dtm, dsm, support)
