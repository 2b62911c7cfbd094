"""Filling missing cells of a surface with a smooth (harmonic) membrane.

The missing cells solve Laplace's equation with the known cells as boundary values, the
"springs/membrane" inpainting SMRF relies on. A multigrid scheme (solve on a 2x coarser grid,
upsample as the first guess, relax) converges in a few dozen sweeps per level even for holes
hundreds of cells wide, where plain relaxation would need thousands.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage

_SWEEPS = 40
#: successive over-relaxation factor (1 = Gauss-Seidel); speeds up the smooth components
_OMEGA = 1.9
_MAX_SWEEPS = 5000


@numba.njit(cache=True, nogil=True)
def _relax(z, missing, sweeps, omega):
    h, w = z.shape
    for _ in range(sweeps):
        for parity in range(2):  # red-black Gauss-Seidel
            for i in range(h):
                for j in range((i + parity) % 2, w, 2):
                    if not missing[i, j]:
                        continue
                    s = 0.0
                    n = 0
                    if i > 0:
                        s += z[i - 1, j]
                        n += 1
                    if i < h - 1:
                        s += z[i + 1, j]
                        n += 1
                    if j > 0:
                        s += z[i, j - 1]
                        n += 1
                    if j < w - 1:
                        s += z[i, j + 1]
                        n += 1
                    if n:
                        z[i, j] += omega * (s / n - z[i, j])


@numba.njit(cache=True, nogil=True)
def _relax_until(z, missing, omega, tol, max_sweeps):  # omega: per-cell array
    """SOR sweeps until no cell moves by more than ``tol``; returns the number of sweeps."""
    h, w = z.shape
    for sweep in range(max_sweeps):
        change = 0.0
        for parity in range(2):
            for i in range(h):
                for j in range((i + parity) % 2, w, 2):
                    if not missing[i, j]:
                        continue
                    s = 0.0
                    n = 0
                    if i > 0:
                        s += z[i - 1, j]
                        n += 1
                    if i < h - 1:
                        s += z[i + 1, j]
                        n += 1
                    if j > 0:
                        s += z[i, j - 1]
                        n += 1
                    if j < w - 1:
                        s += z[i, j + 1]
                        n += 1
                    if n:
                        d = omega[i, j] * (s / n - z[i, j])
                        z[i, j] += d
                        change = max(change, abs(d))
        if change < tol:
            return sweep + 1
    return max_sweeps


@numba.njit(cache=True, nogil=True)
def _coarsen(z, missing):
    h, w = z.shape
    ch, cw = (h + 1) // 2, (w + 1) // 2
    out = np.zeros((ch, cw))
    cmiss = np.ones((ch, cw), np.bool_)
    cnt = np.zeros((ch, cw))
    for i in range(h):
        for j in range(w):
            if not missing[i, j]:
                out[i // 2, j // 2] += z[i, j]
                cnt[i // 2, j // 2] += 1
    for i in range(ch):
        for j in range(cw):
            if cnt[i, j] > 0:
                out[i, j] /= cnt[i, j]
                cmiss[i, j] = False
    return out, cmiss


@numba.njit(cache=True, nogil=True)
def _upsample_into(z, missing, coarse):
    # bilinear: fine cell i has its centre at coarse coordinate (i - 0.5) / 2
    h, w = z.shape
    ch, cw = coarse.shape
    for i in range(h):
        fi = min(max((i - 0.5) / 2.0, 0.0), ch - 1.0)
        i0 = min(int(fi), max(ch - 2, 0))
        i1 = min(i0 + 1, ch - 1)
        ti = fi - i0
        for j in range(w):
            if not missing[i, j]:
                continue
            fj = min(max((j - 0.5) / 2.0, 0.0), cw - 1.0)
            j0 = min(int(fj), max(cw - 2, 0))
            j1 = min(j0 + 1, cw - 1)
            tj = fj - j0
            z[i, j] = ((1 - ti) * ((1 - tj) * coarse[i0, j0] + tj * coarse[i0, j1])
                       + ti * ((1 - tj) * coarse[i1, j0] + tj * coarse[i1, j1]))


def _fill(z: np.ndarray, missing: np.ndarray) -> None:
    h, w = z.shape
    if min(h, w) > 4 and missing.any():
        coarse, cmiss = _coarsen(z, missing)
        if cmiss.all():
            coarse[:] = 0.0
        else:
            _fill(coarse, cmiss)
        _upsample_into(z, missing, coarse)
        _relax(z, missing, _SWEEPS, _OMEGA)
    elif missing.any():
        known = ~missing
        z[missing] = z[known].mean() if known.any() else 0.0
        _relax(z, missing, 200, _OMEGA)


def fill_missing(z: np.ndarray, missing: np.ndarray | None = None, tol: float = 1e-7) -> np.ndarray:
    """A copy of ``z`` whose missing (NaN or masked) cells are harmonically interpolated.

    Iterates to ``tol`` metres so that the result depends only on each hole's own boundary (not on
    the grid's extent): tiled runs then match whole-area runs.
    """
    out = np.array(z, dtype=np.float64, copy=True)
    miss = ~np.isfinite(out) if missing is None else (missing | ~np.isfinite(out))
    if miss.all():
        raise ValueError("cannot fill a surface without any known cell")
    out[miss] = 0.0
    _fill(out, miss)
    _relax_until(out, miss, _local_omega(miss), tol, _MAX_SWEEPS)
    return out


def _local_omega(missing: np.ndarray) -> np.ndarray:
    # over-relaxation suited to the hole's size: ~1 for single cells (larger factors oscillate
    # there), near 2 deep inside wide holes (optimal SOR for an N-wide square: 2 / (1 + sin(pi/N)))
    depth = ndimage.distance_transform_cdt(missing, metric="chessboard").astype(np.float64)
    return 2.0 / (1.0 + np.sin(np.pi / (2.0 * np.maximum(depth, 1.0) + 1.0)))


@numba.njit(cache=True, nogil=True)
def _min_propagate(z, missing):
    h, w = z.shape
    known = ~missing
    todo = missing.copy()
    remaining = todo.sum()
    while remaining > 0:
        new_vals = np.empty(remaining)
        new_r = np.empty(remaining, np.int64)
        new_c = np.empty(remaining, np.int64)
        k = 0
        for i in range(h):
            for j in range(w):
                if not todo[i, j]:
                    continue
                best = np.inf
                for di in range(-1, 2):
                    for dj in range(-1, 2):
                        ii, jj = i + di, j + dj
                        if 0 <= ii < h and 0 <= jj < w and known[ii, jj] and z[ii, jj] < best:
                            best = z[ii, jj]
                if best < np.inf:
                    new_vals[k] = best
                    new_r[k] = i
                    new_c[k] = j
                    k += 1
        if k == 0:
            break
        for m in range(k):
            z[new_r[m], new_c[m]] = new_vals[m]
            known[new_r[m], new_c[m]] = True
            todo[new_r[m], new_c[m]] = False
        remaining -= k


def fill_with_lowest(z: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    """Fill missing cells layer by layer with the lowest known 8-neighbour.

    Used for voids in the minimum surface (water absorbs the laser): voids take the lowest level
    around them instead of a membrane that would carry overhanging canopy across the water.
    """
    out = np.array(z, dtype=np.float64, copy=True)
    miss = ~np.isfinite(out) if missing is None else (missing | ~np.isfinite(out))
    if miss.all():
        raise ValueError("cannot fill a surface without any known cell")
    _min_propagate(out, miss)
    return out
