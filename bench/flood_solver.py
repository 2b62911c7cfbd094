"""Flood solver benchmarks: throughput, the 1 km2 design-storm run, and ANUGA side by side.

    .venv/bin/python bench/flood_solver.py [throughput] [design] [anuga|stoker|urban]

* throughput: cell-updates per second on a 500 x 500 urban grid one minute into the storm, one
  time step for all cells (no sub-cycling): the kernels before this version (``flood_reference``,
  one thread, statistics every step) as the baseline, then these kernels on one thread (per-core
  figure, CPU time) with the statistics every ``SolverParams.stats_interval`` (the default) and
  every step, and on all threads (wall time), with their ratios;
* design: 1 km2 at 2 m (250,000 cells), 10-year 3-hour TCVN 7957 storm with the Phú An tide
  entering a 3.6 m deep canal, buildings blocked, 3 simulated hours with the default parameters
  (deep cells sub-cycled, all threads); before it, the first 10 simulated minutes with the
  baseline kernels and with these, as the ratio measured in the same run;
* anuga: the same urban domain (cut to 100 m x 100 m so ANUGA finishes) at the same 2 m
  resolution (ANUGA: 4 triangles per cell), and Stoker's dam break with both models against the
  analytic solution; prints CPU times, their ratio and the errors.

Figures are printed, never asserted (the machine is shared: the load average is printed too).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import numba
import numpy as np

from flood import analytic, scenarios
from flood.screening import screen_ponding
from flood.solver import Boundary, Domain, Forcing, Simulation, SolverParams

sys.path.insert(0, os.path.dirname(__file__))
import flood_reference  # noqa: E402  (the kernels before this version: the baseline)


def urban_terrain(n: int, dx: float = 2.0, seed: int = 2026):
    """Synthetic HCMC-like block: ground +0.9-1.8 m, streets, buildings, a tidal canal on the west."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n] * dx
    z = 1.3 + 0.35 * np.sin(xx / 180.0) * np.cos(yy / 230.0) + 0.002 * (xx - xx.mean()) / 10 \
        + rng.normal(0, 0.02, (n, n))
    street = ((xx % 50.0) < 10.0) | ((yy % 50.0) < 10.0)
    z[street] -= 0.15
    manning = np.where(street, 0.015, 0.05)
    blocked = np.zeros((n, n), dtype=bool)
    # buildings: rectangles inside the blocks
    for by in range(0, int(n * dx), 50):
        for bx in range(0, int(n * dx), 50):
            if rng.random() < 0.75:
                r0, c0 = int((by + 14) / dx), int((bx + 14) / dx)
                r1, c1 = int((by + 14 + rng.uniform(12, 30)) / dx), int((bx + 14 + rng.uniform(12, 30)) / dx)
                blocked[r0:min(r1, n), c0:min(c1, n)] = True
    canal = xx < 20.0
    z[canal] = -2.0
    manning[canal] = 0.03
    blocked[canal] = False
    return z, manning, blocked


def design_run(n: int, dx: float, *, buildings_as_walls: bool = True, params: SolverParams | None = None):
    z, manning, blocked = urban_terrain(n, dx)
    scenario = scenarios.DEFAULT_SCENARIOS["design-10y"]
    tide = scenario.tide_series()
    forcing = Forcing(rain=scenario.hyetograph(), initial_loss_mm=scenario.initial_loss_mm,
                      continuing_loss_mm_h=scenario.continuing_loss_mm_h,
                      boundaries=[Boundary("west", "stage", tide)])
    if not buildings_as_walls:
        z = np.where(blocked, z + 10.0, z)
        blocked = None
    sim = Simulation(Domain(z, dx, manning=manning, blocked=blocked), forcing, params, water_level=tide.at(0.0))
    return sim, forcing


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _throughput_run(n: int, steps: int, params: SolverParams) -> tuple[float, float, float]:
    """(cell-updates per CPU-second, per wall-second, wall ms per step) of ``steps`` steps one minute in."""
    sim, _ = design_run(n, 2.0, params=params)
    sim.run(60.0)
    wall0, cpu0, s0 = time.perf_counter(), time.process_time(), sim.steps
    while sim.steps - s0 < steps:
        sim.step(stats=True)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    updates = (sim.steps - s0) * sim.domain.z.size
    return updates / cpu, updates / wall, wall / (sim.steps - s0) * 1e3


def bench_throughput(n: int = 500, steps: int = 200) -> None:
    plain = SolverParams(subcycles=1)
    threads = numba.config.NUMBA_NUM_THREADS
    print(f"throughput  {n}x{n} cells one minute into the storm, {steps} steps ({_load()}, {threads} threads)")
    sim, _ = design_run(n, 2.0, params=plain)
    sim.run(60.0)
    flood_reference.reference_run(sim, sim.t + 1.0)  # compile (cached)
    cpu0, t0 = time.process_time(), sim.t
    n_ref = 0
    while n_ref < steps:
        n_ref += flood_reference.reference_run(sim, sim.t + 2.0)
    base = n_ref * sim.domain.z.size / (time.process_time() - cpu0)
    print(f"  baseline kernels, 1 thread: {base:.3e} cell-updates/s per core (CPU time, {sim.t - t0:.0f} s simulated, "
          "statistics every step)")
    results = {}
    runs = [(1, plain, f"statistics every {plain.stats_interval:g} s simulated (default)"),
            (1, replace(plain, stats_interval=0.0), "statistics every step, as the baseline")]
    if threads > 1:
        runs.append((threads, plain, f"statistics every {plain.stats_interval:g} s simulated"))
    for n_threads, params, label in runs:
        numba.set_num_threads(n_threads)
        cpu_rate, wall_rate, ms = _throughput_run(n, steps, params)
        results.setdefault(n_threads, (cpu_rate, wall_rate))
        print(f"  these kernels, {n_threads} thread(s), {label}: {cpu_rate:.3e} cell-updates/s per CPU-second "
              f"({cpu_rate / base:.2f}x baseline), {wall_rate:.3e} /s wall, {ms:.2f} ms/step wall")
    numba.set_num_threads(threads)
    print(f"  {threads} threads wall vs 1 thread wall: {results[threads][1] / results[1][1]:.2f}x ({_load()})")


def bench_design(n: int = 500, dx: float = 2.0, duration_s: float = 3 * 3600.0, window_s: float = 600.0) -> None:
    print(f"design  ({_load()}, {numba.config.NUMBA_NUM_THREADS} threads)")
    sim, _ = design_run(n, dx)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ref_steps = flood_reference.reference_run(sim, window_s)
    ref_cpu, ref_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    sim, _ = design_run(n, dx)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sim.run(window_s)
    new_cpu, new_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(f"  first {window_s:.0f} s simulated: baseline kernels, one step for all cells: {ref_steps} steps, "
          f"wall {ref_wall:.1f} s, CPU {ref_cpu:.1f} s; these (sub-cycled, all threads): {sim.steps} steps + "
          f"{sim.substeps} sub-steps, wall {new_wall:.1f} s, CPU {new_cpu:.1f} s; "
          f"ratio wall {ref_wall / new_wall:.2f}x, CPU {ref_cpu / new_cpu:.2f}x", flush=True)
    t0 = time.perf_counter()
    sim, _ = design_run(n, dx)
    last = [0.0]

    def progress(fraction, t):
        if fraction - last[0] >= 0.05 or fraction >= 1.0:
            last[0] = fraction
            cpu = time.process_time() - cpu0
            print(f"  {fraction * 100:5.1f} %  t = {t:7.0f} s  wall {time.perf_counter() - t0:6.1f} s  "
                  f"CPU {cpu:6.1f} s  {sim.steps} steps + {sim.substeps} sub-steps  "
                  f"mass error {sim.mass.max_relative_error:.1e}  {_load()}", flush=True)

    cpu0 = time.process_time()
    sim.run(duration_s, progress=progress, report_every=5.0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    m = sim.mass
    flooded = float(np.sum(sim.max_depth > 0.1)) * dx * dx
    print(f"design  {n * dx / 1000:.1f} km x {n * dx / 1000:.1f} km at {dx} m, {duration_s / 3600:.1f} h "
          f"(10-year storm {sim.forcing.rain.total_mm:.0f} mm + tide): wall {wall:.1f} s, CPU {cpu:.1f} s, "
          f"{sim.steps} steps + {sim.substeps} sub-steps of the deep cells ({_load()})")
    print(f"  mass balance: max relative error {m.max_relative_error:.2e}, rain {m.rain:.0f} m3, "
          f"losses {m.losses:.0f} m3, tide in {m.boundary_in:.0f} m3 / out {m.boundary_out:.0f} m3")
    print(f"  max depth {np.nanmax(sim.max_depth):.2f} m, area deeper than 0.1 m: {flooded / 1e4:.2f} ha")
    t1 = time.perf_counter()
    z, _, blocked = urban_terrain(n, dx)
    screen = screen_ponding(z, dx, blocked=blocked, outlets=_canal_mask(n, dx))
    print(f"  screening (priority-flood) of the same grid: {time.perf_counter() - t1:.2f} s, "
          f"{len(screen.depressions)} depressions, {screen.extent.sum() * dx * dx / 1e4:.2f} ha")


def _canal_mask(n, dx):
    xx = np.arange(n)[None, :].repeat(n, axis=0) * dx
    return xx < 20.0


# --- ANUGA ----------------------------------------------------------------------------------------


def _anuga_domain(z_cells: np.ndarray, dx: float):
    import anuga

    ny, nx = z_cells.shape
    domain = anuga.rectangular_cross_domain(nx, ny, len1=nx * dx, len2=ny * dx)
    domain.set_flow_algorithm("DE0")
    domain.set_store(False)
    domain.set_minimum_allowed_height(0.001)

    def cell_value(field):
        def f(x, y):
            c = np.clip((x / dx).astype(int), 0, nx - 1)
            r = np.clip(ny - 1 - (y / dx).astype(int), 0, ny - 1)  # row 0 is the north edge
            return field[r, c]
        return f

    return anuga, domain, cell_value


def _anuga_cells(domain, values, shape, dx):
    ny, nx = shape
    xy = domain.centroid_coordinates
    c = np.clip((xy[:, 0] / dx).astype(int), 0, nx - 1)
    r = np.clip(ny - 1 - (xy[:, 1] / dx).astype(int), 0, ny - 1)
    out = np.zeros(shape)
    count = np.zeros(shape)
    np.add.at(out, (r, c), values)
    np.add.at(count, (r, c), 1)
    return out / np.maximum(count, 1)


def bench_anuga_stoker(n: int = 400, width: int = 4) -> None:
    length = 100.0
    dx = length / n
    x = dx * (np.arange(n) + 0.5) - length / 2
    h0 = np.where(x < 0, 1.0, 0.8)
    t_end = 6.0
    t0 = time.process_time()
    sim = Simulation(Domain(np.zeros((width, n)), dx, manning=0.0), params=SolverParams(froude_max=0.0, h_min=1e-6),
                     h0=np.tile(h0, (width, 1)))
    sim.run(t_end)
    ours = time.process_time() - t0
    exact, _ = analytic.stoker(x, t_end, 1.0, 0.8)
    err_ours = np.abs(sim.h.mean(axis=0) - exact).sum() / exact.sum()

    anuga, domain, cell_value = _anuga_domain(np.zeros((width, n)), dx)
    domain.set_quantity("elevation", 0.0)
    domain.set_quantity("friction", 0.0)
    domain.set_quantity("stage", lambda xx, yy: np.where(xx < length / 2, 1.0, 0.8))
    wall = anuga.Reflective_boundary(domain)
    domain.set_boundary({"left": wall, "right": wall, "top": wall, "bottom": wall})
    t0 = time.process_time()
    for _ in domain.evolve(yieldstep=t_end, finaltime=t_end):
        pass
    theirs = time.process_time() - t0
    depth = domain.quantities["stage"].centroid_values - domain.quantities["elevation"].centroid_values
    cells = _anuga_cells(domain, depth, (width, n), dx)
    err_anuga = np.abs(cells.mean(axis=0) - exact).sum() / exact.sum()
    print(f"stoker (h_r/h_l = 0.8, {n} x {width} cells, {len(domain)} ANUGA triangles): "
          f"L1 depth error ours {err_ours:.4f} vs ANUGA {err_anuga:.4f}; CPU ours {ours:.3f} s, "
          f"ANUGA {theirs:.3f} s, ratio {theirs / ours:.0f}x")


def bench_anuga_urban(n: int = 50, dx: float = 2.0, duration_s: float = 120.0) -> None:
    """Same urban block (100 m x 100 m with the canal), same 2 m cells, buildings as raised ground (+10 m)
    in both, two minutes at the storm peak and high tide (ANUGA is too slow for more on a shared machine)."""
    z, manning, blocked = urban_terrain(n, dx)
    z = np.where(blocked, z + 10.0, z)
    scenario = scenarios.DEFAULT_SCENARIOS["design-10y"]
    rain = scenario.hyetograph()
    start = 4500.0  # the peak block of the storm, high tide
    tide = scenario.tide_series()
    peak_rate = float(rain.intensity_mm_h.max())
    window = scenarios.Hyetograph([0.0, duration_s], [peak_rate])
    stage = scenarios.Series(tide.times - start, tide.values)
    forcing = Forcing(rain=window, boundaries=[Boundary("west", "stage", stage)])
    t0 = time.process_time()
    sim = Simulation(Domain(z, dx, manning=manning), forcing, water_level=stage.at(0.0))
    sim.run(duration_s)
    ours = time.process_time() - t0

    anuga, domain, cell_value = _anuga_domain(z, dx)
    domain.set_quantity("elevation", cell_value(z), location="centroids")
    domain.set_quantity("friction", cell_value(manning), location="centroids")
    level0 = stage.at(0.0)
    domain.set_quantity("stage", lambda xx, yy: np.maximum(cell_value(z)(xx, yy), level0), location="centroids")
    wall = anuga.Reflective_boundary(domain)
    tidal = anuga.Transmissive_n_momentum_zero_t_momentum_set_stage_boundary(domain, function=lambda t: stage.at(t))
    domain.set_boundary({"left": tidal, "right": wall, "top": wall, "bottom": wall})
    anuga.Rate_operator(domain, rate=peak_rate / 1000.0 / 3600.0)
    t0 = time.process_time()
    for _ in domain.evolve(yieldstep=duration_s, finaltime=duration_s):
        pass
    theirs = time.process_time() - t0
    depth = domain.quantities["stage"].centroid_values - domain.quantities["elevation"].centroid_values
    cells = _anuga_cells(domain, depth, z.shape, dx)
    land = z > 0.0
    wet = land & ((sim.h > 0.01) | (cells > 0.01))
    diff = np.abs(sim.h - cells)[wet]
    vol_ours = sim.h.sum() * dx * dx
    vol_anuga = cells.sum() * dx * dx
    print(f"urban block {n * dx:.0f} m x {n * dx:.0f} m at {dx} m ({z.size} cells, {len(domain)} ANUGA triangles), "
          f"{duration_s:.0f} s at {peak_rate:.0f} mm/h + tide:")
    print(f"  CPU ours {ours:.3f} s ({sim.steps} steps), ANUGA {theirs:.2f} s, ratio {theirs / ours:.0f}x")
    print(f"  final depth on land: mean |ours - ANUGA| {diff.mean() * 100:.2f} cm (mean depth "
          f"{sim.h[land].mean() * 100:.2f} cm ours, {cells[land].mean() * 100:.2f} cm ANUGA); "
          f"water volume ours {vol_ours:.0f} m3, ANUGA {vol_anuga:.0f} m3; our mass error "
          f"{sim.mass.max_relative_error:.1e}")


def warm_up() -> None:
    """Load the compiled kernels (numba cache) so that no timing includes it."""
    sim = Simulation(Domain(np.zeros((4, 4)), 1.0), Forcing(rain=scenarios.design_storm(2),
                                                            boundaries=[Boundary("west", "stage",
                                                                                 scenarios.phu_an_tide(60))]))
    sim.run(30.0)
    flood_reference.reference_run(Simulation(Domain(np.zeros((4, 4)), 1.0), Forcing(rain=scenarios.design_storm(2))),
                                  5.0)
    sim, _ = design_run(210, 2.0)  # the parallel kernels and the sub-cycling ones
    sim.run(120.0)


def main(argv: list[str]) -> None:
    parts = argv or ["throughput", "design", "anuga"]
    warm_up()
    if "throughput" in parts:
        bench_throughput()
    if "design" in parts:
        bench_design()
    if "anuga" in parts or "stoker" in parts:
        bench_anuga_stoker()
    if "anuga" in parts or "urban" in parts:
        bench_anuga_urban()


if __name__ == "__main__":
    main(sys.argv[1:])
