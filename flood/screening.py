"""Static flood screening: where water ponds, found by priority-flood depression filling.

Barnes, Lehman & Mulla (2014), "Priority-Flood: An optimal depression-filling and watershed-
labeling algorithm for digital elevation models": cells are visited from the outlets (domain
edges, canals) inwards in order of elevation, with a heap; a cell lower than the cell that reached
it is inside a depression and is raised to that level (and handled with a plain FIFO queue,
the "+" variant, since its order no longer matters). O(n log n), seconds for city-scale rasters.

The result is the largest possible ponding (every depression full to its spill level); the
dynamic model (:mod:`flood.solver`) says how much of it a given storm fills and when.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from flood.errors import InvalidScenario

_D4 = ((-1, 0), (1, 0), (0, -1), (0, 1))
_D8 = _D4 + ((-1, -1), (-1, 1), (1, -1), (1, 1))


@numba.njit(cache=True, inline="always")
def _heap_push(keys, vals, size, key, val):
    i = size
    keys[i] = key
    vals[i] = val
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        vals[parent], vals[i] = vals[i], vals[parent]
        i = parent
    return size + 1


@numba.njit(cache=True, inline="always")
def _heap_pop(keys, vals, size):
    val = vals[0]
    size -= 1
    keys[0] = keys[size]
    vals[0] = vals[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and keys[left + 1] < keys[left]:
            child = left + 1
        if keys[i] <= keys[child]:
            break
        keys[child], keys[i] = keys[i], keys[child]
        vals[child], vals[i] = vals[i], vals[child]
        i = child
    return val, size


@numba.njit(cache=True)
def priority_flood(z, outlet, offsets):
    """Filled surface of ``z``: every cell raised to the lowest level at which it drains to an outlet.

    ``outlet`` marks cells water leaves the map from (edges, canals); ``offsets`` the neighbourhood
    ((dr, dc) pairs, 4- or 8-connected). Cells of ``z`` that are +inf are walls (buildings).
    """
    ny, nx = z.shape
    n = ny * nx
    filled = z.copy()
    closed = np.zeros(n, dtype=np.bool_)
    keys = np.empty(n)
    vals = np.empty(n, dtype=np.int64)
    pit = np.empty(n, dtype=np.int64)
    size = 0
    for r in range(ny):
        for c in range(nx):
            if outlet[r, c] and z[r, c] < np.inf:
                k = r * nx + c
                closed[k] = True
                size = _heap_push(keys, vals, size, z[r, c], k)
    pit_head = 0
    pit_tail = 0
    while size > 0 or pit_head < pit_tail:
        if pit_head < pit_tail:
            k = pit[pit_head]
            pit_head += 1
        else:
            k, size = _heap_pop(keys, vals, size)
        r = k // nx
        c = k - r * nx
        level = filled[r, c]
        for j in range(offsets.shape[0]):
            rr = r + offsets[j, 0]
            cc = c + offsets[j, 1]
            if rr < 0 or rr >= ny or cc < 0 or cc >= nx:
                continue
            kk = rr * nx + cc
            if closed[kk] or not np.isfinite(z[rr, cc]):
                continue
            closed[kk] = True
            if z[rr, cc] <= level:
                filled[rr, cc] = level
                pit[pit_tail] = kk
                pit_tail += 1
            else:
                size = _heap_push(keys, vals, size, z[rr, cc], kk)
    return filled


@dataclass
class Depression:
    label: int
    cells: int
    area_m2: float
    volume_m3: float
    max_depth_m: float
    spill_level_m: float


@dataclass
class PondingScreen:
    filled: np.ndarray
    depth: np.ndarray
    #: 0 = no ponding, k > 0 = depression k (connected ponded cells deeper than the threshold)
    labels: np.ndarray
    depressions: list[Depression]

    @property
    def extent(self) -> np.ndarray:
        return self.labels > 0


def fill_depressions(z: np.ndarray, *, outlets: np.ndarray | None = None, blocked: np.ndarray | None = None,
                     connectivity: int = 4) -> np.ndarray:
    """Depression-filled copy of ``z`` (see :func:`priority_flood`).

    By default every edge cell is an outlet; ``outlets`` adds cells (canals, drains) or, if given,
    replaces the edges. NaN cells (no data) are outlets too: water reaching a hole in the DTM is
    treated as leaving it. ``blocked`` cells (buildings) are walls. Use ``connectivity=4`` to match
    the 2D model, whose faces do not pass water diagonally.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise InvalidScenario("the DTM must be a 2D grid")
    if connectivity not in (4, 8):
        raise InvalidScenario("connectivity must be 4 or 8")
    nodata = np.isnan(z)
    work = np.where(nodata, -np.inf, z)
    if blocked is not None:
        work = np.where(np.asarray(blocked, dtype=bool), np.inf, work)
    if outlets is None:
        outlet = np.zeros(z.shape, dtype=bool)
        outlet[0, :] = outlet[-1, :] = outlet[:, 0] = outlet[:, -1] = True
    else:
        outlet = np.asarray(outlets, dtype=bool).copy()
    outlet |= nodata
    offsets = np.array(_D4 if connectivity == 4 else _D8, dtype=np.int64)
    filled = priority_flood(work, outlet, offsets)
    filled[nodata] = np.nan
    if blocked is not None:
        filled[np.asarray(blocked, dtype=bool)] = z[np.asarray(blocked, dtype=bool)]
    return filled


def screen_ponding(z: np.ndarray, dx: float, *, min_depth: float = 0.05, outlets: np.ndarray | None = None,
                   blocked: np.ndarray | None = None, connectivity: int = 4) -> PondingScreen:
    """Ponding extent, depth and per-depression statistics (area, volume, spill level)."""
    filled = fill_depressions(z, outlets=outlets, blocked=blocked, connectivity=connectivity)
    depth = np.nan_to_num(filled - np.asarray(z, dtype=np.float64), nan=0.0)
    if blocked is not None:
        depth[np.asarray(blocked, dtype=bool)] = 0.0
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, count = ndimage.label(depth > min_depth, structure=structure)
    depressions = []
    if count:
        index = np.arange(1, count + 1)
        cells = ndimage.sum_labels(np.ones_like(depth), labels, index)
        volume = ndimage.sum_labels(depth, labels, index) * dx * dx
        deepest = ndimage.maximum(depth, labels, index)
        level = ndimage.maximum(np.nan_to_num(filled, nan=-np.inf), labels, index)
        for k in range(count):
            depressions.append(Depression(int(index[k]), int(cells[k]), float(cells[k] * dx * dx),
                                          float(volume[k]), float(deepest[k]), float(level[k])))
    return PondingScreen(filled=filled, depth=depth, labels=labels, depressions=depressions)
