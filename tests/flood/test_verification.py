"""The solver against analytic solutions (SWASHES cases), with the errors measured asserted.

The local-inertial scheme drops the advection term of the momentum equation on purpose
(Bates et al. 2010). It is accurate where the Froude number is low (urban and floodplain
inundation) and not for fast dam-break waves: the dam-break errors below are model errors that
do not shrink with the grid, and they shrink with the Froude number of the case. Convergence with
refinement is shown where the approximation holds (Thacker's bowl at small amplitude).
"""

from __future__ import annotations

import numpy as np
import pytest

from flood import analytic
from flood.solver import Boundary, Domain, Forcing, Hyetograph, PointInflow, Series, Simulation, SolverParams

MASS_TOLERANCE = 1e-3  # the target (0.1 %); the runs below reach ~1e-14
FRICTIONLESS = SolverParams(froude_max=0.0, h_min=1e-6)


def _dam_break(dx: float, h_right: float, t_end: float = 6.0, half_length: float = 50.0):
    n = int(round(2 * half_length / dx))
    x = -half_length + dx * (np.arange(n) + 0.5)
    h0 = np.where(x < 0, 1.0, h_right)[None, :]
    sim = Simulation(Domain(np.zeros((1, n)), dx, manning=0.0), params=FRICTIONLESS, h0=h0)
    sim.run(t_end)
    if h_right == 0.0:
        exact, _ = analytic.ritter(x, t_end, 1.0)
    else:
        exact, _ = analytic.stoker(x, t_end, 1.0, h_right)
    l1 = np.abs(sim.h[0] - exact).sum() / np.abs(exact).sum()
    return l1, sim


def test_lake_at_rest_over_uneven_bed_with_dry_islands_and_buildings():
    rng = np.random.default_rng(5)
    ny, nx = 60, 80
    yy, xx = np.mgrid[0:ny, 0:nx]
    z = 0.3 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.uniform(-0.2, 0.2, (ny, nx))
    z[20:30, 30:45] = 1.5  # an island well above the lake
    z[:10, -3:] = 1.0  # dry ground where the open boundary is
    blocked = np.zeros((ny, nx), dtype=bool)
    blocked[40:45, 10:14] = True  # a building standing in the water
    level = 0.25
    still = Series([0.0, 1e6], [level, level])
    forcing = Forcing(boundaries=[Boundary("west", "stage", still), Boundary("east", "open", start=0, stop=10),
                                  Boundary("north", "closed"), Boundary("south", "stage", still)])
    sim = Simulation(Domain(z, 1.0, manning=0.03, blocked=blocked), forcing, h0=None, water_level=level)
    h_start = sim.h.copy()
    wet = h_start > 0
    assert wet.mean() > 0.5 and (~wet & ~blocked).sum() > 100  # both wet and dry cells, wet/dry faces
    sim.run(120.0)
    assert sim.steps > 100
    eta = sim.domain.z + sim.h
    # the open boundary touches only dry cells (rows 0-9 of the east edge): nothing may move
    assert np.max(np.abs(eta[wet] - level)) <= 1e-12
    assert np.all(sim.h[~wet] == 0.0)
    assert np.max(np.abs(sim.qx)) <= 1e-12 and np.max(np.abs(sim.qy)) <= 1e-12
    assert sim.mass.max_relative_error < 1e-12


def test_ritter_dry_dam_break():
    l1, sim = _dam_break(0.25, 0.0)
    # measured 0.144 (0.145 at dx=0.5, 0.143 at dx=0.125): the front runs at Froude >> 1
    assert l1 < 0.15
    assert sim.mass.max_relative_error < MASS_TOLERANCE
    assert sim.h.min() >= 0.0


@pytest.mark.parametrize(
    ("h_right", "bound"),
    [(0.1, 0.125), (0.5, 0.031), (0.8, 0.005)],  # measured 0.122, 0.029, 0.0041
)
def test_stoker_wet_dam_break_error_falls_with_froude_number(h_right, bound):
    l1, sim = _dam_break(0.25, h_right)
    assert l1 < bound
    assert sim.mass.max_relative_error < MASS_TOLERANCE


def _thacker(n: int, amplitude: float):
    a, h0 = 1.0, 0.1
    period = analytic.thacker_period(a, h0)
    dx = 4.0 / n
    x = -2.0 + dx * (np.arange(n) + 0.5)
    xx, yy = np.meshgrid(x, x)  # rows run along +y
    z = analytic.thacker_planar_bed(xx, yy, a, h0)
    h_init, _, v_init = analytic.thacker_planar(xx, yy, 0.0, a, h0, amplitude)
    eta = z + h_init
    face_depth = np.zeros((n + 1, n))
    face_depth[1:-1] = np.maximum(np.maximum(eta[:-1], eta[1:]) - np.maximum(z[:-1], z[1:]), 0.0)
    params = SolverParams(froude_max=0.0, h_min=1e-4)
    sim = Simulation(Domain(z, dx, manning=0.0), params=params, h0=h_init,
                     qy0=np.where(face_depth > params.h_min, face_depth * v_init, 0.0))
    times = [period / 4, period / 2, period]
    snapshots = sim.run(period, snapshot_times=times)
    errors = []
    for t in times:
        exact, _, _ = analytic.thacker_planar(xx, yy, t, a, h0, amplitude)
        errors.append(np.abs(snapshots[t] - exact).sum() / exact.sum())
    return errors, sim


def test_thacker_planar_bowl_converges_with_grid_refinement():
    results = {n: _thacker(n, 0.05) for n in (50, 100, 200)}
    after_one_period = [results[n][0][-1] for n in (50, 100, 200)]
    # measured 0.024, 0.0137, 0.0106 (one full period, moving wet/dry shoreline)
    assert after_one_period[0] > after_one_period[1] > after_one_period[2]
    assert after_one_period[2] < 0.012
    assert max(max(e) for e, _ in results.values()) < 0.025
    for _, sim in results.values():
        assert sim.mass.max_relative_error < MASS_TOLERANCE
        assert sim.h.min() >= 0.0


def test_dam_break_error_is_model_error_not_grid_error():
    # refining 4x changes the Stoker error by < 0.005: what remains is the neglected advection
    coarse, _ = _dam_break(0.5, 0.1)
    fine, _ = _dam_break(0.125, 0.1)
    assert abs(coarse - fine) < 0.005


def test_uniform_flow_reaches_manning_normal_depth():
    slope, n_manning, q = 0.001, 0.03, 0.5
    dx, cells = 10.0, 200
    x = dx * (np.arange(cells) + 0.5)
    z = (-slope * x)[None, :]
    inflow = PointInflow(0, 0, Series([0.0, 1.0], [q * dx, q * dx]))
    forcing = Forcing(boundaries=[Boundary("east", "open")], inflows=[inflow])
    sim = Simulation(Domain(z, dx, manning=n_manning), forcing,
                     h0=np.full((1, cells), analytic.normal_depth(q, slope, n_manning)))
    sim.run(8000.0)
    expected = analytic.normal_depth(q, slope, n_manning)
    middle = sim.h[0, 40:140]
    assert np.max(np.abs(middle - expected)) / expected < 0.01
    assert np.allclose(sim.qx[0, 40:140], q, rtol=0.01)
    assert sim.mass.max_relative_error < 1e-10
    assert sim.mass.boundary_out > 0 and sim.mass.inflow > 0


def test_rain_with_initial_and_continuing_losses_is_stored_in_a_closed_basin():
    rng = np.random.default_rng(1)
    z = rng.uniform(0.0, 0.5, (40, 50))
    rain = Hyetograph([0.0, 3600.0], [10.0])  # 10 mm in one hour
    forcing = Forcing(rain=rain, initial_loss_mm=2.0, continuing_loss_mm_h=3.0)
    sim = Simulation(Domain(z, 2.0, manning=0.02), forcing, params=SolverParams(dt_max=5.0))
    sim.run(4000.0)
    area = z.size * 4.0
    assert sim.mass.rain == pytest.approx(0.010 * area, rel=1e-12)
    # 2 mm initial loss satisfied after 12 min, then 3 mm/h over the remaining 48 min
    assert sim.mass.losses / area * 1000 == pytest.approx(2.0 + 3.0 * 0.8, abs=0.02)
    assert sim.mass.storage == pytest.approx(sim.mass.rain - sim.mass.losses, rel=1e-12)
    assert sim.mass.max_relative_error < 1e-12
    assert sim.h.min() >= 0.0


def test_rain_on_steep_terrain_never_drives_depths_negative():
    # a thin film on 10 % slopes is the classic trap: outflow is limited, nothing is clipped
    ny, nx = 30, 60
    yy, xx = np.mgrid[0:ny, 0:nx]
    z = 8.0 - 0.2 * np.abs(xx - 30) + 0.05 * np.abs(yy - 15)  # a ridge draining to both edges
    rain = Hyetograph([0.0, 600.0, 1200.0], [120.0, 30.0])
    forcing = Forcing(rain=rain, boundaries=[Boundary("west", "open"), Boundary("east", "open")])
    # without the Froude limit the film accelerates and would empty cells in one step
    sim = Simulation(Domain(z, 2.0, manning=0.015), forcing, params=SolverParams(dt_max=2.0, froude_max=0.0))
    sim.run(1500.0)
    assert sim.limited_cell_steps > 10_000  # the limiter did work (measured ~2e5 cell-steps)
    assert sim.h.min() >= 0.0
    assert sim.mass.roundoff_added < 1e-12 * sim.mass.rain
    assert sim.mass.max_relative_error < 1e-10
    assert sim.mass.boundary_out > 0.5 * sim.mass.rain


def test_tide_fills_and_drains_through_a_stage_boundary_buildings_stay_dry():
    ny, nx = 30, 40
    z = np.tile(np.linspace(-1.0, 2.0, nx), (ny, 1))
    blocked = np.zeros((ny, nx), dtype=bool)
    blocked[10:14, 20:24] = True
    times = np.linspace(0, 3 * 3600, 181)
    tide = Series(times, 0.5 + 1.0 * np.sin(2 * np.pi * times / (3 * 3600)))
    forcing = Forcing(boundaries=[Boundary("west", "stage", tide)])
    sim = Simulation(Domain(z, 5.0, manning=0.025, blocked=blocked), forcing, water_level=0.5)
    sim.run(3 * 3600)
    assert sim.mass.boundary_in > 0 and sim.mass.boundary_out > 0
    assert sim.mass.max_relative_error < 1e-12
    assert np.all(sim.h[blocked] == 0.0) and np.all(sim.max_depth[blocked] == 0.0)
    # at high tide (t = 45 min) the water reached ground at +1.3 m
    assert sim.max_depth[:, np.searchsorted(np.linspace(-1.0, 2.0, nx), 1.3)].min() > 0.05


def test_froude_limit_caps_face_discharge():
    from flood import kernels

    ny, nx = 3, 40
    z = np.zeros((ny, nx))
    h = np.where(np.arange(nx) < 20, 2.0, 0.05)[None, :].repeat(ny, axis=0)  # a steep front
    qx, qy = np.zeros((ny, nx + 1)), np.zeros((ny + 1, nx))
    qx_new, qy_new = np.zeros_like(qx), np.zeros_like(qy)
    n2x, n2y = np.zeros_like(qx), np.zeros_like(qy)
    bkind = np.zeros(2 * ny + 2 * nx, dtype=np.int8)
    active = np.ones((ny, nx), dtype=np.uint8)
    args = (h, z, active, qx, qy, qx_new, qy_new, n2x, n2y, bkind, np.zeros(bkind.size), 5.0, 1.0, 0.7, 1e-3, 9.81)
    factor, row_limited = np.ones((ny, nx)), np.zeros(ny, dtype=np.int64)
    kernels.momentum(*args, 0.0, factor, row_limited)
    unlimited = qx_new.copy()
    kernels.momentum(*args, 1.0, factor, row_limited)
    hf = np.maximum(h[:, :-1], h[:, 1:])
    cap = hf * np.sqrt(9.81 * hf)
    assert np.max(np.abs(unlimited[:, 1:-1]) / cap) > 1.5  # the case does need the limit
    assert np.all(np.abs(qx_new[:, 1:-1]) <= cap * (1 + 1e-12))
    assert np.max(np.abs(qx_new[:, 1:-1]) / cap) == pytest.approx(1.0)


def _macdonald_channel(dx: float, q: float = 1.0, n_manning: float = 0.033, length: float = 1000.0):
    """MacDonald et al. (1997) method: choose the depth profile, derive the bed that makes it steady.

    SWASHES' long-channel depth profile h(x) = (4/g)^(1/3) (1 + 0.5 exp(-16 (x/L - 1/2)^2)); the
    bed slope comes from the steady local-inertial momentum balance
    dz/dx = -dh/dx - n^2 q^2 / h^(10/3) (the scheme's equations: no advection term), so the
    case checks pressure, friction and the discretisation, and converges with the grid.
    """
    from scipy.integrate import cumulative_trapezoid

    g = 9.81

    def depth(x):
        return (4 / g) ** (1 / 3) * (1 + 0.5 * np.exp(-16 * (x / length - 0.5) ** 2))

    def ddepth(x):
        return (4 / g) ** (1 / 3) * 0.5 * np.exp(-16 * (x / length - 0.5) ** 2) * (-32 * (x / length - 0.5) / length)

    fine = np.linspace(0, length + 100, 200_001)
    bed = cumulative_trapezoid(-ddepth(fine) - n_manning**2 * q**2 / depth(fine) ** (10 / 3), fine, initial=0.0)
    cells = int(length / dx)
    x = dx * (np.arange(cells) + 0.5)
    z = np.interp(x, fine, bed)[None, :]
    ghost = float(np.interp(length + dx / 2, fine, bed) + depth(length + dx / 2))
    forcing = Forcing(boundaries=[Boundary("east", "stage", Series([0.0, 1.0], [ghost, ghost]))],
                      inflows=[PointInflow(0, 0, Series([0.0, 1.0], [q * dx, q * dx]))])
    sim = Simulation(Domain(z, dx, manning=n_manning), forcing, params=SolverParams(froude_max=0.0),
                     h0=np.full((1, cells), 0.5))
    sim.run(6000.0)
    exact = depth(x)
    return np.abs(sim.h[0] - exact).sum() / exact.sum(), sim


def test_macdonald_type_long_channel_converges_first_order():
    errors = {}
    for dx in (20.0, 10.0, 5.0):
        errors[dx], sim = _macdonald_channel(dx)
        assert sim.mass.max_relative_error < 1e-10
    # measured 0.0074, 0.0038, 0.0019 (the inflow cell itself is off by ~0.11 m: the point source)
    assert errors[20.0] > errors[10.0] > errors[5.0]
    assert errors[10.0] / errors[5.0] > 1.8
    assert errors[5.0] < 0.0025


def test_bad_model_input_is_rejected_with_the_projects_errors():
    from flood.errors import InvalidScenario

    z = np.zeros((5, 6))
    blocked = np.zeros((5, 6), dtype=bool)
    blocked[2, 2] = True
    cases = [
        lambda: Boundary("up", "open"),
        lambda: Boundary("west", "stage"),
        lambda: Boundary("west", "open", stage=Series([0.0], [1.0])),
        lambda: Series([0.0, 1.0], [1.0]),
        lambda: Hyetograph([0.0, 10.0], [-1.0]),
        lambda: SolverParams(theta=0.0),
        lambda: Domain(np.where(z == 0, np.nan, z), 1.0),
        lambda: Domain(z, 0.0),
        lambda: Simulation(Domain(z, 1.0), h0=-np.ones((5, 6))),
        lambda: Simulation(Domain(z, 1.0, blocked=blocked),
                           Forcing(inflows=[PointInflow(2, 2, Series([0.0], [1.0]))])),
        lambda: Simulation(Domain(z, 1.0), Forcing(boundaries=[Boundary("north", "open", start=3, stop=9)])),
        lambda: Simulation(Domain(z, 1.0), Forcing(continuing_loss_mm_h=-1.0)),
    ]
    for make in cases:
        with pytest.raises(InvalidScenario) as info:
            make()
        assert info.value.status == 400
