"""Ground classification: SMRF (Pingel, Clarke & McBride 2013) plus noise and low-outlier removal.

Steps, all on a lattice-aligned grid of ``cell`` metres (numba kernels, no Python loops over
points):

1. minimum surface ZImin (lowest point per cell), empty cells inpainted;
2. low outliers: cells far below their neighbours (progressive filter on -ZImin, slope 5);
3. optional net cut: opening with a large disk removes very large buildings first;
4. progressive morphological filter: openings with disks of radius 1 .. window/cell; a cell is an
   object where the surface drops by more than ``slope * radius * cell`` from one opening to the next;
5. provisional DEM: ZImin with object/outlier cells removed and inpainted (harmonic membrane);
6. each point is ground when |z - DEM(x, y)| <= threshold + scalar * slope(DEM).

Points far below the provisional DEM are low noise (class 7), points far above it high noise
(class 18). Classification codes follow ASPRS: 1 unclassified, 2 ground, 7 low noise, 18 high noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from lidar.grid import GridSpec, cell_min, sample_bilinear
from lidar.inpaint import fill_missing, fill_with_lowest
from lidar.morphology import open_disk, openings

GROUND, UNCLASSIFIED, LOW_NOISE, HIGH_NOISE = 2, 1, 7, 18


@dataclass(frozen=True)
class SMRFParams:
    """SMRF parameters. Defaults are tuned for dense urban ALS (AHN3 Delft, see docs/lidar.md):
    Pingel's published optimum (threshold 0.5 m, scalar 1.25) lets too much street furniture and
    low vegetation through on 10+ pts/m2 data; :meth:`pingel_2013` gives the published values."""

    cell: float = 1.0
    slope: float = 0.15
    window: float = 18.0
    threshold: float = 0.2
    scalar: float = 0.5
    cut: float = 0.0
    #: a measured cell this far (m) below the median of its measured neighbours is a low outlier
    #: (Pingel uses slope 5 per cell; multipath pits 2-4 m deep then survive and, next to a void,
    #: flood it with their level)
    low_drop: float = 1.0
    #: only last (or single) returns can be ground
    last_returns_only: bool = True
    #: points this far below the provisional DEM are low noise (metres)
    low_noise: float = 1.5
    #: points this far above the provisional DEM are high noise (metres)
    high_noise: float = 150.0

    @classmethod
    def pingel_2013(cls) -> SMRFParams:
        return cls(threshold=0.5, scalar=1.25)

    @property
    def buffer(self) -> float:
        """Tile buffer needed for seamless results: largest window plus 20 m (DOMAIN §5)."""
        return max(self.window, self.cut) + 20.0


@dataclass
class GroundResult:
    classification: np.ndarray  # uint8 per point
    dem: np.ndarray  # provisional DEM on ``grid``
    grid: GridSpec

    @property
    def ground(self) -> np.ndarray:
        return self.classification == GROUND


def minimum_surface(rows, cols, z, grid: GridSpec) -> np.ndarray:
    zmin, _ = cell_min(rows, cols, z, grid.height, grid.width)
    return zmin


def progressive_filter(surface: np.ndarray, cell: float, slope: float, window: float) -> np.ndarray:
    """Object mask of SMRF's progressive morphological filter."""
    objects = np.zeros(surface.shape, dtype=bool)
    last = surface
    radii = range(1, int(math.ceil(window / cell)) + 1)
    for radius, opened in zip(radii, openings(surface, radii), strict=True):
        objects |= (last - opened) > slope * radius * cell
        last = opened
    return objects


@numba.njit(cache=True, nogil=True)
def _gradient_magnitude(z, cell):
    h, w = z.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            j0, j1 = max(j - 1, 0), min(j + 1, w - 1)
            i0, i1 = max(i - 1, 0), min(i + 1, h - 1)
            gx = (z[i, j1] - z[i, j0]) / (cell * max(j1 - j0, 1))
            gy = (z[i1, j] - z[i0, j]) / (cell * max(i1 - i0, 1))
            out[i, j] = math.sqrt(gx * gx + gy * gy)
    return out


@numba.njit(cache=True, nogil=True)
def _label_points(z, surface_z, surface_slope, last, threshold, scalar, low_noise, high_noise, out):
    for i in range(z.shape[0]):
        d = z[i] - surface_z[i]
        if d < -low_noise:
            out[i] = 7
        elif d > high_noise:
            out[i] = 18
        elif last[i] and abs(d) <= threshold + scalar * surface_slope[i]:
            out[i] = 2
        else:
            out[i] = 1


@numba.njit(cache=True, nogil=True)
def _low_cells(z, drop):
    h, w = z.shape
    out = np.zeros((h, w), np.bool_)
    buf = np.empty(8)
    for i in range(h):
        for j in range(w):
            if not np.isfinite(z[i, j]):
                continue
            n = 0
            for di in range(-1, 2):
                for dj in range(-1, 2):
                    ii, jj = i + di, j + dj
                    if (di or dj) and 0 <= ii < h and 0 <= jj < w and np.isfinite(z[ii, jj]):
                        buf[n] = z[ii, jj]
                        n += 1
            if n >= 2:
                out[i, j] = z[i, j] < np.median(buf[:n]) - drop
    return out


def low_outlier_cells(zmin: np.ndarray, drop: float) -> np.ndarray:
    """Measured cells lower than the median of their measured 8-neighbours by more than ``drop``.

    Replaces SMRF's low-outlier test (progressive filter on -ZImin, slope 5, one cell), which runs
    on the void-filled surface and so misses outliers next to voids.
    """
    return _low_cells(np.ascontiguousarray(zmin, dtype=np.float64), float(drop))


def provisional_dem(zmin: np.ndarray, params: SMRFParams) -> np.ndarray:
    """SMRF's provisional ground surface on the grid of ``zmin`` (NaN = empty cell)."""
    empty = ~np.isfinite(zmin)
    if empty.all():
        return np.full(zmin.shape, np.nan)
    # low outliers (multipath) are found among measured cells only, then removed before voids are
    # filled with their lowest neighbour: otherwise one outlier at a canal's edge floods the void
    low = low_outlier_cells(zmin, params.low_drop)
    surface = fill_with_lowest(zmin, empty | low)
    if params.cut > 0:
        surface = open_disk(surface, int(math.ceil(params.cut / params.cell)))
    objects = progressive_filter(surface, params.cell, params.slope, params.window)
    removed = empty | low | objects
    if removed.all():
        removed = empty | low
    return fill_missing(zmin, removed)


def classify_ground(x, y, z, return_number=None, number_of_returns=None, *,
                    params: SMRFParams | None = None, grid: GridSpec | None = None) -> GroundResult:
    """Classify points as ground (2), unclassified (1), low noise (7) or high noise (18)."""
    params = params or SMRFParams()
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    z = np.ascontiguousarray(z, dtype=np.float64)
    if grid is None:
        grid = GridSpec.covering((x.min(), y.min(), x.max(), y.max()), params.cell)
    if x.size == 0:
        return GroundResult(np.empty(0, np.uint8), np.full(grid.shape, np.nan), grid)
    rows, cols = grid.cell_index(x, y)
    last = _last_returns(return_number, number_of_returns, x.size, params.last_returns_only)
    # the minimum surface is built from points that may be ground
    zmin = minimum_surface(rows[last], cols[last], z[last], grid)
    dem = provisional_dem(zmin, params)
    slope = _gradient_magnitude(dem, params.cell)
    surface_z = sample_bilinear(dem, x, y, grid.x0, grid.y1, grid.cell)
    surface_slope = sample_bilinear(slope, x, y, grid.x0, grid.y1, grid.cell)
    out = np.empty(x.size, np.uint8)
    _label_points(z, surface_z, surface_slope, last, params.threshold, params.scalar,
                  params.low_noise, params.high_noise, out)
    return GroundResult(out, dem, grid)


def _last_returns(return_number, number_of_returns, n, enabled) -> np.ndarray:
    if not enabled or return_number is None or number_of_returns is None:
        return np.ones(n, dtype=bool)
    rn = np.asarray(return_number)
    nr = np.asarray(number_of_returns)
    # malformed return numbers (0, or beyond the count) are treated as last returns
    return (rn >= nr) | (rn == 0)
