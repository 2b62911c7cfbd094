"""Grey-scale morphology with disk structuring elements (numba kernels).

A disk of radius r is the union of horizontal segments, one per row offset dy with half-width
floor(sqrt(r^2 - dy^2)). Erosion by the disk is the minimum, over dy, of a 1-D sliding minimum
(van Herk / Gil-Werman: three operations per cell whatever the width) of row i+dy. Cost is
O(cells * (2r + 1)) instead of O(cells * r^2). Cells outside the grid are ignored.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _sliding_extreme(row, half, out, use_min, p, g, h):
    """out[j] = min (or max) of row[j-half .. j+half], ignoring positions outside the row.

    p, g, h: work buffers of at least len(row) + 4 * half + 1 values.
    """
    n = row.shape[0]
    k = 2 * half + 1
    fill = np.inf if use_min else -np.inf
    m = n + 2 * half
    nb = (m + k - 1) // k
    total = nb * k
    p[:total] = fill
    p[half:half + n] = row
    for b in range(nb):
        s = b * k
        acc = p[s]
        g[s] = acc
        for t in range(s + 1, s + k):
            v = p[t]
            acc = min(acc, v) if use_min else max(acc, v)
            g[t] = acc
        e = s + k - 1
        acc = p[e]
        h[e] = acc
        for t in range(e - 1, s - 1, -1):
            v = p[t]
            acc = min(acc, v) if use_min else max(acc, v)
            h[t] = acc
    for j in range(n):
        a = h[j]
        b2 = g[j + k - 1]
        out[j] = min(a, b2) if use_min else max(a, b2)


@numba.njit(cache=True, nogil=True)
def _disk_filter(z, radius, use_min):
    height, width = z.shape
    out = np.full((height, width), np.inf if use_min else -np.inf)
    rows = np.empty((height, width))
    size = width + 4 * radius + 2
    p = np.empty(size)
    g = np.empty(size)
    h = np.empty(size)
    for dy in range(0, radius + 1):
        # rows dy above and below share the half-width: one sliding pass serves both
        half = int(math.floor(math.sqrt(radius * radius - dy * dy) + 1e-9))
        for i in range(height):
            _sliding_extreme(z[i], half, rows[i], use_min, p, g, h)
        for i in range(height):
            for src in (i - dy, i + dy):
                if src < 0 or src >= height or (dy == 0 and src != i - dy):
                    continue
                for j in range(width):
                    v = rows[src, j]
                    if use_min:
                        if v < out[i, j]:
                            out[i, j] = v
                    elif v > out[i, j]:
                        out[i, j] = v
    return out


@numba.njit(cache=True, nogil=True)
def _row_extremes(z, max_half, use_min):
    """rows[w] = sliding min/max of every row of z with half-width w, for w = 0..max_half."""
    height, width = z.shape
    out = np.empty((max_half + 1, height, width))
    size = width + 4 * max_half + 2
    p = np.empty(size)
    g = np.empty(size)
    h = np.empty(size)
    for w in range(max_half + 1):
        for i in range(height):
            _sliding_extreme(z[i], w, out[w, i], use_min, p, g, h)
    return out


@numba.njit(cache=True, nogil=True)
def _combine_disk(rows, radius, use_min):
    """Disk filter from precomputed row extremes: min/max over dy of rows[w(dy)][i + dy]."""
    _, height, width = rows.shape
    out = rows[int(radius)].copy()  # dy = 0: half-width = radius
    for dy in range(1, radius + 1):
        half = int(math.floor(math.sqrt(radius * radius - dy * dy) + 1e-9))
        src = rows[half]
        for i in range(height):
            for k in range(2):
                s = i - dy if k == 0 else i + dy
                if s < 0 or s >= height:
                    continue
                for j in range(width):
                    v = src[s, j]
                    if use_min:
                        if v < out[i, j]:
                            out[i, j] = v
                    elif v > out[i, j]:
                        out[i, j] = v
    return out


def openings(z: np.ndarray, radii) -> list[np.ndarray]:
    """Openings of ``z`` with disks of each radius; the erosions share their row passes."""
    z = np.ascontiguousarray(z, dtype=np.float64)
    radii = [int(r) for r in radii]
    rows = _row_extremes(z, max(radii), True)
    return [dilate_disk(_combine_disk(rows, r, True), r) if r > 0 else z.copy() for r in radii]


def erode_disk(z: np.ndarray, radius: int) -> np.ndarray:
    return _disk_filter(np.ascontiguousarray(z, dtype=np.float64), int(radius), True)


def dilate_disk(z: np.ndarray, radius: int) -> np.ndarray:
    return _disk_filter(np.ascontiguousarray(z, dtype=np.float64), int(radius), False)


def open_disk(z: np.ndarray, radius: int) -> np.ndarray:
    """Morphological opening (erosion then dilation) with a disk of ``radius`` cells."""
    if radius <= 0:
        return np.array(z, dtype=np.float64, copy=True)
    return dilate_disk(erode_disk(z, radius), radius)
