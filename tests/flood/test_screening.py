"""Priority-flood screening on synthetic terrain with known depressions, against a brute-force fill."""

from __future__ import annotations

import numpy as np
import pytest

from flood.screening import fill_depressions, screen_ponding


def _reference_fill(z: np.ndarray, outlet: np.ndarray, walls: np.ndarray | None = None) -> np.ndarray:
    """Planchon & Darboux (2002) fixed point, 4-connected: W = max(z, min of the neighbours' W)."""
    w = np.where(outlet, z, np.inf)
    while True:
        padded = np.pad(w, 1, constant_values=np.inf)
        lowest = np.minimum.reduce([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        new = np.where(outlet, z, np.maximum(z, lowest))
        if walls is not None:
            new[walls] = np.inf
        if np.array_equal(new, w):
            return w
        w = new


def _two_pits():
    ny, nx = 60, 90
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    z = 3.0 - 0.01 * xx  # drains to the east... and to every edge
    # pit A: a cone 1.0 m deep inside a ring wall at 4.0 m (spill level 4.0)
    r_a = np.hypot(yy - 20, xx - 25)
    z = np.where(r_a < 8, 2.0 + 0.25 * r_a, z)
    z = np.where((r_a >= 8) & (r_a < 10), 4.0, z)
    # pit B: a square basin at 1.0 m with a rim at 2.5 m and a notch at 2.2 m
    z[35:50, 55:75] = 2.5
    z[37:48, 57:73] = 1.0
    z[42, 55:57] = 2.2
    return z


def test_known_depressions_fill_to_their_spill_levels():
    z = _two_pits()
    filled = fill_depressions(z)
    yy, xx = np.mgrid[0:z.shape[0], 0:z.shape[1]]
    inside_a = np.hypot(yy - 20, xx - 25) < 8
    assert np.allclose(filled[inside_a], 4.0)
    # pit B spills through its notch (2.2 m) onto the ground west of it, 3.0 - 0.01 * 54 = 2.46
    assert np.allclose(filled[37:48, 57:73], 2.46)
    assert np.all(filled >= z)
    elsewhere = ~inside_a
    elsewhere[35:50, 55:75] = False
    assert np.array_equal(filled[elsewhere], z[elsewhere])


def test_priority_flood_equals_brute_force_fill_on_random_terrain():
    rng = np.random.default_rng(7)
    z = rng.normal(0, 1, (70, 50)).cumsum(axis=0) * 0.1 + rng.uniform(0, 1, (70, 50))
    outlet = np.zeros(z.shape, dtype=bool)
    outlet[0, :] = outlet[-1, :] = outlet[:, 0] = outlet[:, -1] = True
    assert np.array_equal(fill_depressions(z), _reference_fill(z, outlet))


def test_canal_outlets_buildings_and_nodata():
    rng = np.random.default_rng(3)
    z = rng.uniform(1.0, 2.0, (40, 40))
    canal = np.zeros(z.shape, dtype=bool)
    canal[:, 20] = True
    blocked = np.zeros(z.shape, dtype=bool)
    blocked[5:10, 5:10] = True
    z_nan = z.copy()
    z_nan[30, 30] = np.nan
    outlet = canal.copy()
    outlet[0, :] = outlet[-1, :] = outlet[:, 0] = outlet[:, -1] = True
    filled = fill_depressions(z_nan, outlets=outlet, blocked=blocked)
    ref_outlet = outlet.copy()
    ref_outlet[30, 30] = True
    ref = _reference_fill(np.where(np.isnan(z_nan), -np.inf, z_nan), ref_outlet, walls=blocked)
    free = ~blocked & ~np.isnan(z_nan)
    assert np.array_equal(filled[free], ref[free])
    assert np.isnan(filled[30, 30])
    assert np.array_equal(filled[blocked], z[blocked])
    # the canal drains its neighbourhood: cells on it are never raised
    assert np.array_equal(filled[canal], z[canal])


def test_screen_reports_extent_depth_and_volume_per_depression():
    z = _two_pits()
    screen = screen_ponding(z, dx=2.0, min_depth=0.05)
    assert len(screen.depressions) == 2
    by_level = sorted(screen.depressions, key=lambda d: d.spill_level_m)
    b, a = by_level
    assert b.spill_level_m == pytest.approx(2.46) and b.cells == 11 * 16 + 2  # the basin and its notch
    assert b.volume_m3 == pytest.approx((11 * 16 * 1.46 + 2 * 0.26) * 4.0)
    assert b.max_depth_m == pytest.approx(1.46)
    assert a.spill_level_m == pytest.approx(4.0) and a.max_depth_m == pytest.approx(2.0)
    assert screen.extent.sum() == a.cells + b.cells
    assert np.all(screen.depth[~screen.extent] <= 0.05)


def test_fill_of_a_four_million_cell_raster():
    # 2000 x 2000 cells (4 km2 at 1 m); bench/flood_solver.py reports the time
    rng = np.random.default_rng(11)
    z = rng.uniform(0, 1, (2000, 2000)).cumsum(axis=1) * 0.001
    filled = fill_depressions(z)
    assert filled.shape == z.shape and np.all(filled >= z)
