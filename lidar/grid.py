"""Regular grids aligned on multiples of the cell size, and the point <-> cell kernels.

Grids are aligned on a global lattice (origin a multiple of the cell size) so that tiles cut from
the same area produce identical cells: this is what makes tiled outputs seamless. Row 0 is the
northern row (raster order); cell (r, c) covers x in [x0 + c*cell, x0 + (c+1)*cell) and
y in (y1 - (r+1)*cell, y1 - r*cell].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class GridSpec:
    x0: float  # west edge
    y1: float  # north edge
    cell: float
    width: int
    height: int

    @classmethod
    def covering(cls, bounds: tuple[float, float, float, float], cell: float) -> GridSpec:
        """Smallest lattice-aligned grid covering bounds (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = bounds
        gx0 = math.floor(x0 / cell) * cell
        gy0 = math.floor(y0 / cell) * cell
        gx1 = (math.floor(x1 / cell) + 1) * cell
        gy1 = (math.floor(y1 / cell) + 1) * cell
        return cls(gx0, gy1, cell, int(round((gx1 - gx0) / cell)), int(round((gy1 - gy0) / cell)))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y1 - self.height * self.cell, self.x0 + self.width * self.cell, self.y1)

    @property
    def transform(self):
        from rasterio.transform import from_origin

        return from_origin(self.x0, self.y1, self.cell, self.cell)

    def clip(self, bounds: tuple[float, float, float, float]) -> GridSpec | None:
        """The sub-grid (same lattice) of the cells touching ``bounds``; None if they do not meet."""
        x0, y0, x1, y1 = bounds
        c0 = max(int(math.floor((x0 - self.x0) / self.cell)), 0)
        c1 = min(int(math.floor((x1 - self.x0) / self.cell)), self.width - 1)
        r0 = max(int(math.floor((self.y1 - y1) / self.cell)), 0)
        r1 = min(int(math.floor((self.y1 - y0) / self.cell)), self.height - 1)
        if c1 < c0 or r1 < r0:
            return None
        return GridSpec(self.x0 + c0 * self.cell, self.y1 - r0 * self.cell, self.cell, c1 - c0 + 1, r1 - r0 + 1)

    def window_of(self, other: GridSpec) -> tuple[slice, slice]:
        """Row/column slices of ``other`` (same lattice, inside self) within this grid."""
        c0 = int(round((other.x0 - self.x0) / self.cell))
        r0 = int(round((self.y1 - other.y1) / self.cell))
        return slice(r0, r0 + other.height), slice(c0, c0 + other.width)

    def cell_index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _cell_index(np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64),
                           self.x0, self.y1, self.cell, self.height, self.width)


@numba.njit(cache=True, nogil=True)
def _cell_index(x, y, x0, y1, cell, height, width):
    n = x.shape[0]
    rows = np.empty(n, np.int64)
    cols = np.empty(n, np.int64)
    for i in range(n):
        c = int(math.floor((x[i] - x0) / cell))
        r = int(math.floor((y1 - y[i]) / cell))
        # points exactly on the far edges belong to the last cell
        if c == width:
            c = width - 1
        if r == height:
            r = height - 1
        if r < 0 or r >= height or c < 0 or c >= width:
            r = -1
            c = -1
        rows[i] = r
        cols[i] = c
    return rows, cols


@numba.njit(cache=True, nogil=True)
def cell_min(rows, cols, z, height, width):
    """Lowest z per cell (NaN where empty) and the index of the point that gave it (-1)."""
    out = np.full((height, width), np.nan)
    idx = np.full((height, width), -1, np.int64)
    for i in range(z.shape[0]):
        r = rows[i]
        if r < 0:
            continue
        c = cols[i]
        v = out[r, c]
        if not (v <= z[i]):  # NaN or larger
            out[r, c] = z[i]
            idx[r, c] = i
    return out, idx


@numba.njit(cache=True, nogil=True)
def cell_max(rows, cols, z, height, width):
    """Highest z per cell (NaN where empty)."""
    out = np.full((height, width), np.nan)
    for i in range(z.shape[0]):
        r = rows[i]
        if r < 0:
            continue
        c = cols[i]
        v = out[r, c]
        if not (v >= z[i]):
            out[r, c] = z[i]
    return out


@numba.njit(cache=True, nogil=True)
def sample_bilinear(grid, x, y, x0, y1, cell):
    """Bilinear value of a cell-centred grid at points (edge cells extended)."""
    h, w = grid.shape
    n = x.shape[0]
    out = np.empty(n)
    for i in range(n):
        fc = (x[i] - x0) / cell - 0.5
        fr = (y1 - y[i]) / cell - 0.5
        fc = min(max(fc, 0.0), w - 1.0)
        fr = min(max(fr, 0.0), h - 1.0)
        c0 = min(int(fc), w - 2) if w > 1 else 0
        r0 = min(int(fr), h - 2) if h > 1 else 0
        tc = fc - c0
        tr = fr - r0
        c1 = c0 + 1 if w > 1 else 0
        r1 = r0 + 1 if h > 1 else 0
        out[i] = ((1 - tr) * ((1 - tc) * grid[r0, c0] + tc * grid[r0, c1])
                  + tr * ((1 - tc) * grid[r1, c0] + tc * grid[r1, c1]))
    return out


@numba.njit(cache=True, nogil=True)
def sample_nearest(grid, rows, cols):
    n = rows.shape[0]
    out = np.full(n, np.nan)
    for i in range(n):
        if rows[i] >= 0:
            out[i] = grid[rows[i], cols[i]]
    return out
