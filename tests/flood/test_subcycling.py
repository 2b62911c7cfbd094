"""Parallel kernels and local time stepping: same answers, whatever the threads or the sub-steps.

Deep canal cells take their own short CFL step (sub-steps) while the floodplain takes the step of
its own depth. These tests check what that must not change: water at rest stays at rest, mass is
conserved to round-off, the design case (canal, tide, storm, buildings) agrees with the plain run
where every cell takes the canal's step, and the parallel kernels give bit-identical results on
one thread and on two.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from flood import kernels, scenarios
from flood.solver import Boundary, Domain, Forcing, Series, Simulation, SolverParams


def _urban_block(n: int, dx: float = 2.0, seed: int = 7):
    """Ground +0.9-1.8 m with streets and buildings, a 3.3 m deep tidal canal along the west edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n] * dx
    z = 1.3 + 0.35 * np.sin(xx / 180.0) * np.cos(yy / 230.0) + rng.normal(0, 0.02, (n, n))
    street = ((xx % 50.0) < 10.0) | ((yy % 50.0) < 10.0)
    z[street] -= 0.15
    manning = np.where(street, 0.015, 0.05)
    blocked = np.zeros((n, n), dtype=bool)
    for by in range(0, int(n * dx), 50):
        for bx in range(0, int(n * dx), 50):
            r0, c0 = int((by + 14) / dx), int((bx + 14) / dx)
            blocked[r0:r0 + int(20 / dx), c0:c0 + int(16 / dx)] = True
    canal = xx < 20.0
    z[canal] = -2.0
    manning[canal] = 0.03
    blocked[canal] = False
    return z, manning, blocked


def _design(n: int, params: SolverParams) -> Simulation:
    z, manning, blocked = _urban_block(n)
    sc = scenarios.DEFAULT_SCENARIOS["design-10y"]
    tide = sc.tide_series()
    forcing = Forcing(rain=sc.hyetograph(), initial_loss_mm=sc.initial_loss_mm,
                      continuing_loss_mm_h=sc.continuing_loss_mm_h, boundaries=[Boundary("west", "stage", tide)])
    return Simulation(Domain(z, 2.0, manning=manning, blocked=blocked), forcing, params, water_level=tide.at(0.0))


def test_design_case_sub_cycled_agrees_with_the_plain_run():
    # 200 m x 200 m of the design case, first 30 minutes (tide rising in the canal, storm starting)
    plain = _design(100, SolverParams(subcycles=1))
    plain.run(1800.0)
    sub = _design(100, SolverParams())
    sub.run(1800.0)
    assert plain.substeps == 0
    assert sub.substeps > 0
    # the floodplain's step is no longer the canal's: measured 3.85x fewer main steps (10,360 -> 2,693)
    assert sub.steps < 0.35 * plain.steps
    for sim in (plain, sub):
        assert sim.mass.max_relative_error < 1e-12
        assert sim.h.min() >= 0.0
    land = ~plain.domain.blocked & (plain.domain.z > 0.0)
    diff = np.abs(sub.max_depth - plain.max_depth)[land]
    final = np.abs(sub.h - plain.h)[land]
    # measured: max and final depths differ by 1.2 mm on average, 3.4 cm at most (mean depth on land
    # 6.2 cm); 2,199 vs 2,161 cells deeper than 0.1 m; stored volume 15,776 vs 15,752 m3 (0.15 %)
    assert diff.mean() < 0.002 and diff.max() < 0.06
    assert final.mean() < 0.002 and final.max() < 0.06
    wet_plain = plain.max_depth[land] > 0.1
    wet_sub = sub.max_depth[land] > 0.1
    assert abs(int(wet_sub.sum()) - int(wet_plain.sum())) < 0.03 * wet_plain.sum()
    stored_plain = plain.h.sum() * 4.0
    assert abs(sub.h.sum() * 4.0 - stored_plain) < 0.01 * stored_plain


def test_lake_at_rest_across_a_deep_canal_stays_at_rest_when_sub_cycled():
    rng = np.random.default_rng(3)
    ny, nx = 40, 60
    z = rng.uniform(0.9, 1.1, (ny, nx))
    z[:, :8] = -2.0  # the canal: 3.2 m deep against 0-0.3 m on the floodplain
    z[15:20, 30:40] = 1.6  # a dry island
    z[:, -3:] = 1.5  # dry ground along the open east edge
    blocked = np.zeros((ny, nx), dtype=bool)
    blocked[25:28, 20:24] = True
    level = 1.2
    still = Series([0.0, 1e6], [level, level])
    sim = Simulation(Domain(z, 2.0, manning=0.03, blocked=blocked),
                     Forcing(boundaries=[Boundary("west", "stage", still), Boundary("east", "open")]),
                     SolverParams(), water_level=level)
    wet = sim.h > 0
    sim.run(300.0)
    assert sim.substeps > 2 * sim.steps  # the canal did take sub-steps
    eta = sim.domain.z + sim.h
    assert np.max(np.abs(eta[wet] - level)) <= 1e-12
    assert np.all(sim.h[~wet] == 0.0)
    assert np.max(np.abs(sim.qx)) <= 1e-12 and np.max(np.abs(sim.qy)) <= 1e-12
    assert sim.mass.max_relative_error < 1e-12


class _OneSubStep(Simulation):
    """The canal sub-cycled (k = 4 marks it deep) but the main step held to the canal's CFL step: one sub-step."""

    def _choose_subcycles(self, deeper):
        self._subcycles_wanted = 4

    def _time_step(self, dt_limit):
        dt, n_sub, fine = super()._time_step(dt_limit)
        if fine is None:
            return dt, n_sub, fine
        p = self.params
        return min(p.alpha * self.domain.dx / np.sqrt(p.g * self._h_all), p.dt_max, dt_limit), 1, fine


def test_sub_cycling_with_one_sub_step_is_the_plain_step():
    # with one sub-step every face is computed from the same depths as in the plain step
    rng = np.random.default_rng(1)
    z = 1.3 + rng.normal(0, 0.05, (30, 40))
    z[:, :10] = -2.0
    tide = Series([0.0, 3600.0], [1.5, 1.6])
    forcing = Forcing(boundaries=[Boundary("west", "stage", tide)])
    plain = Simulation(Domain(z, 2.0), forcing, SolverParams(subcycles=1), water_level=1.5)
    plain.run(120.0)
    forced = _OneSubStep(Domain(z, 2.0), forcing, SolverParams(), water_level=1.5)
    forced.run(120.0)
    assert forced.steps == plain.steps
    assert forced.substeps == forced.steps - 1  # every step but the first (no cell marked deep yet)
    assert np.max(np.abs(forced.h - plain.h)) < 1e-12
    assert np.max(np.abs(forced.qx - plain.qx)) < 1e-12
    assert forced.mass.max_relative_error < 1e-12


@pytest.mark.parametrize("subcycles", [1, 4])
def test_one_and_two_threads_give_identical_results(subcycles):
    threads = numba.config.NUMBA_NUM_THREADS
    assert threads >= 2, "the parallel kernels need at least two threads to be checked"
    n = 210  # 44,100 cells: above kernels.PARALLEL_MIN_CELLS, so the parallel kernels run
    assert n * n >= kernels.PARALLEL_MIN_CELLS
    results = []
    try:
        for t in (1, 2):
            numba.set_num_threads(t)
            sim = _design(n, SolverParams(subcycles=subcycles))
            sim.run(240.0)
            results.append(sim)
    finally:
        numba.set_num_threads(threads)
    one, two = results
    assert one.steps == two.steps and one.substeps == two.substeps
    if subcycles > 1:
        assert one.substeps > 0
    for name in ("h", "qx", "qy", "max_depth", "max_speed", "max_dv", "max_hr", "arrival", "duration"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert one.mass.as_dict() == two.mass.as_dict()
