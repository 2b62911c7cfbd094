"""2D local-inertial shallow-water solver (Bates, Horritt & Fewtrell 2010; de Almeida et al. 2012).

The model is a regular grid of square cells (the DTM grid). Each step:

1. ``dt = alpha * dx / sqrt(g * h_max)`` (adaptive CFL), shortened to land on output times;
2. face discharges from the theta scheme with semi-implicit Manning friction
   (``q = 0`` where the face depth ``max(eta_i, eta_j) - max(z_i, z_j) <= h_min``), Froude-limited;
3. outflow of a cell limited to the water it holds (scaled faces are shared by both neighbours,
   so no water is created or destroyed and no depth is clipped);
4. continuity with rain minus initial/continuing losses, point inflows;
5. mass balance: storage change against rain, losses, boundary in/out and inflows, every step.

Numerics are in :mod:`flood.kernels`; this module only drives them (no I/O).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from flood import kernels
from flood.errors import InvalidScenario, RunCancelled, SolverFailure

G = 9.81
SIDES = ("west", "east", "north", "south")
BOUNDARY_KINDS = {"closed": kernels.CLOSED, "open": kernels.OPEN, "stage": kernels.STAGE}


# --- forcing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """A time series (seconds, values) interpolated linearly, held constant outside its range."""

    times: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        t = np.asarray(self.times, dtype=float)
        v = np.asarray(self.values, dtype=float)
        if t.ndim != 1 or t.shape != v.shape or t.size == 0 or np.any(np.diff(t) < 0):
            raise InvalidScenario("a time series needs matching, non-empty, increasing times and values")
        object.__setattr__(self, "times", t)
        object.__setattr__(self, "values", v)

    def at(self, t: float) -> float:
        return float(np.interp(t, self.times, self.values))

    def shifted(self, offset: float) -> Series:
        return Series(self.times, self.values + offset)


@dataclass(frozen=True)
class Hyetograph:
    """Rain intensity in blocks: ``edges`` (n+1 times, s) and ``intensity_mm_h`` (n values).

    Rain is integrated exactly over each step through the cumulative depth curve, so steps need
    not land on block edges.
    """

    edges: np.ndarray
    intensity_mm_h: np.ndarray

    def __post_init__(self):
        e = np.asarray(self.edges, dtype=float)
        i = np.asarray(self.intensity_mm_h, dtype=float)
        if e.ndim != 1 or e.size != i.size + 1 or np.any(np.diff(e) <= 0) or np.any(i < 0):
            raise InvalidScenario("a hyetograph needs n+1 increasing edges and n non-negative intensities")
        object.__setattr__(self, "edges", e)
        object.__setattr__(self, "intensity_mm_h", i)
        cum = np.concatenate([[0.0], np.cumsum(i / 1000.0 / 3600.0 * np.diff(e))])
        object.__setattr__(self, "_cumulative_m", cum)

    @property
    def total_mm(self) -> float:
        return float(self._cumulative_m[-1] * 1000.0)

    def depth_m(self, t0: float, t1: float) -> float:
        """Rain depth (m) fallen between t0 and t1."""
        c = np.interp((t0, t1), self.edges, self._cumulative_m)
        return float(c[1] - c[0])


@dataclass(frozen=True)
class Boundary:
    """A stretch of one domain edge: ``closed`` wall, ``open`` free outflow, or ``stage`` (water level series).

    ``start``/``stop`` select cells along the edge (rows for west/east, columns for north/south).
    """

    side: str
    kind: str
    stage: Series | None = None
    start: int = 0
    stop: int | None = None

    def __post_init__(self):
        if self.side not in SIDES:
            raise InvalidScenario(f"boundary side must be one of {SIDES}, not {self.side!r}")
        if self.kind not in BOUNDARY_KINDS:
            raise InvalidScenario(f"boundary kind must be one of {sorted(BOUNDARY_KINDS)}, not {self.kind!r}")
        if (self.kind == "stage") != (self.stage is not None):
            raise InvalidScenario("a stage boundary needs a stage series, and only a stage boundary has one")


@dataclass(frozen=True)
class PointInflow:
    """Discharge (m3/s) entering one cell, e.g. a culvert or a pumped outlet."""

    row: int
    col: int
    discharge: Series


@dataclass
class Forcing:
    rain: Hyetograph | None = None
    #: multiplier of the hyetograph per cell (raster rain); None = uniform
    rain_pattern: np.ndarray | None = None
    initial_loss_mm: float | np.ndarray = 0.0
    continuing_loss_mm_h: float | np.ndarray = 0.0
    boundaries: Sequence[Boundary] = ()
    inflows: Sequence[PointInflow] = ()


@dataclass(frozen=True)
class SolverParams:
    theta: float = 0.7
    alpha: float = 0.5
    h_min: float = 0.001
    #: largest Froude number of a face discharge; 0 disables the limit
    froude_max: float = 1.0
    dt_max: float = 10.0
    g: float = G
    #: cells shallower than this report no velocity (q/h is meaningless on a film of water)
    vel_depth: float = 0.01
    arrival_depth: float = 0.1
    duration_depth: float = 0.1
    #: local time stepping: cells much deeper than the rest (canals) advance in up to this many
    #: sub-steps of their own CFL step while the rest of the grid takes one; 1 = one step for all
    subcycles: int = 4
    #: simulated seconds between updates of the maxima, arrival time and duration (at least one
    #: step; also on the step that reaches an output time or the end); 0 = every step. The
    #: statistics are the cost of reading and writing six grids: every step they cost more than the
    #: continuity pass
    stats_interval: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.subcycles, int) and 1 <= self.subcycles <= 16):
            raise InvalidScenario("subcycles must be an integer from 1 to 16")
        if not 0.0 < self.theta <= 1.0:
            raise InvalidScenario("theta must be in (0, 1]")
        if not 0.0 < self.alpha <= 1.0:
            raise InvalidScenario("alpha must be in (0, 1]")
        if self.h_min <= 0 or self.dt_max <= 0 or self.froude_max < 0:
            raise InvalidScenario("h_min and dt_max must be positive, froude_max non-negative")
        if not 0.0 <= self.stats_interval < math.inf:
            raise InvalidScenario("stats_interval must be a finite number of seconds >= 0")


@dataclass
class Domain:
    """Bed levels ``z`` (m, city datum) on square cells of ``dx`` m; ``blocked`` cells hold no water."""

    z: np.ndarray
    dx: float
    manning: float | np.ndarray = 0.03
    blocked: np.ndarray | None = None

    def __post_init__(self):
        self.z = np.ascontiguousarray(self.z, dtype=np.float64)
        if self.z.ndim != 2 or min(self.z.shape) < 1:
            raise InvalidScenario("the bed must be a 2D grid")
        if not np.all(np.isfinite(self.z)):
            raise InvalidScenario("the bed has no-data cells; fill or block them first")
        if not self.dx > 0:
            raise InvalidScenario("dx must be positive")
        self.blocked = (
            np.zeros(self.z.shape, dtype=bool) if self.blocked is None else np.asarray(self.blocked, dtype=bool)
        )
        n = np.broadcast_to(np.asarray(self.manning, dtype=np.float64), self.z.shape)
        if np.any(n < 0) or not np.all(np.isfinite(n)):
            raise InvalidScenario("Manning n must be finite and non-negative")
        self.manning = n
        if self.blocked.shape != self.z.shape:
            raise InvalidScenario("the blocked mask must have the bed's shape")

    @property
    def shape(self) -> tuple[int, int]:
        return self.z.shape


# --- results -----------------------------------------------------------------------------------


@dataclass
class MassBalance:
    """Volumes (m3) since the start; ``error`` = storage - (initial + rain - losses + in - out + inflows)."""

    initial: float = 0.0
    storage: float = 0.0
    rain: float = 0.0
    losses: float = 0.0
    boundary_in: float = 0.0
    boundary_out: float = 0.0
    inflow: float = 0.0
    #: water added back where round-off left a depth below zero (counted in the error, not hidden)
    roundoff_added: float = 0.0
    max_relative_error: float = 0.0

    @property
    def expected(self) -> float:
        return self.initial + self.rain - self.losses + self.boundary_in - self.boundary_out + self.inflow

    @property
    def error(self) -> float:
        return self.storage - self.expected

    @property
    def relative_error(self) -> float:
        return abs(self.error) / self.reference

    @property
    def reference(self) -> float:
        # the water that has been in the model: what the error is a fraction of
        return max(self.initial + self.rain + self.boundary_in + self.inflow, 1e-12)

    def as_dict(self) -> dict:
        return {
            "initial_m3": self.initial, "storage_m3": self.storage, "rain_m3": self.rain,
            "losses_m3": self.losses, "boundary_in_m3": self.boundary_in, "boundary_out_m3": self.boundary_out,
            "inflow_m3": self.inflow, "roundoff_added_m3": self.roundoff_added, "error_m3": self.error,
            "relative_error": self.relative_error, "max_relative_error": self.max_relative_error,
        }


@dataclass
class GaugeRecord:
    cells: list[tuple[int, int]]
    times: list[float] = field(default_factory=list)
    depths: list[np.ndarray] = field(default_factory=list)

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.times:
            return np.zeros(0), np.zeros((0, len(self.cells)))
        return np.asarray(self.times), np.vstack(self.depths)


# --- the simulation ----------------------------------------------------------------------------


class Simulation:
    """State and forcing of one run; :meth:`run` advances it (it may be called repeatedly)."""

    def __init__(self, domain: Domain, forcing: Forcing | None = None, params: SolverParams | None = None, *,
                 h0: np.ndarray | None = None, water_level: float | np.ndarray | None = None,
                 qx0: np.ndarray | None = None, qy0: np.ndarray | None = None):
        self.domain = domain
        self.forcing = forcing or Forcing()
        self.params = params or SolverParams()
        ny, nx = domain.shape
        self.active = (~domain.blocked).astype(np.uint8)
        self.h = self._initial_depth(h0, water_level)
        self.qx = np.zeros((ny, nx + 1)) if qx0 is None else np.array(qx0, dtype=np.float64)
        self.qy = np.zeros((ny + 1, nx)) if qy0 is None else np.array(qy0, dtype=np.float64)
        if self.qx.shape != (ny, nx + 1) or self.qy.shape != (ny + 1, nx):
            raise InvalidScenario("initial face discharges must have shapes (ny, nx+1) and (ny+1, nx)")
        self._qx_new = np.zeros_like(self.qx)
        self._qy_new = np.zeros_like(self.qy)
        self._factor = np.ones((ny, nx))
        self._row_limited = np.zeros(ny, dtype=np.int64)
        self._fine_factor = np.ones((ny, nx))
        self._row_sums = np.zeros((ny, kernels.ROW_COLUMNS))
        self._n2x, self._n2y = _face_manning_squared(domain.manning)
        self._setup_forcing()
        # cell flags of this step and the next (kernels.ACTIVE / SUBCYCLED / FINE)
        self._flags = self.active.copy()
        self._flags_next = self.active.copy()
        self._n_active = max(int(self.active.sum()), 1)
        self._thresholds = np.zeros(self.params.subcycles - 1)
        self._counts = np.zeros((ny, self._thresholds.size), dtype=np.int64)
        self._stat_depths = np.array([self.params.vel_depth, self.params.arrival_depth, self.params.duration_depth])
        self._xq = np.zeros(0)
        self._yq = np.zeros(0)
        # the sub-cycled faces and FINE cells, listed for the SUBCYCLED cells recorded in _deep
        self._fine_sets = None
        self._deep = np.zeros((ny, nx), dtype=np.uint8)
        #: depth above which the cells of the current flags are SUBCYCLED (inf: none)
        self._split_depth = math.inf
        #: sub-steps wanted for the next step's deep cells (chosen from the depth distribution)
        self._subcycles_wanted = 1
        self.substeps = 0
        self.t = 0.0
        #: time of the last update of the statistics (the initial state is the first)
        self._stats_time = 0.0
        self.steps = 0
        self.limited_cell_steps = 0
        area = domain.dx * domain.dx
        self.mass = MassBalance(initial=float(self.h.sum()) * area, storage=float(self.h.sum()) * area)
        self.max_depth = self.h.copy()
        self.max_speed = np.zeros((ny, nx))
        self.max_dv = np.zeros((ny, nx))
        self.max_hr = 0.5 * self.h
        self.arrival = np.where(self.h > self.params.arrival_depth, 0.0, -1.0)
        self.duration = np.zeros((ny, nx))
        self._h_max = float(self.h.max(initial=0.0))
        self._h_shallow = self._h_max
        if self.params.subcycles > 1:
            h_all = max(self._h_max, self.params.h_min)
            ks = np.arange(2, self.params.subcycles + 1)
            deeper = np.array([[np.count_nonzero(self.h > h_all / k**2) for k in ks]], dtype=np.int64)
            self._choose_subcycles(deeper)
        self.wall_seconds = 0.0

    # setup

    def _initial_depth(self, h0, water_level) -> np.ndarray:
        z = self.domain.z
        if h0 is not None and water_level is not None:
            raise InvalidScenario("give an initial depth or an initial water level, not both")
        if water_level is not None:
            h = np.maximum(np.asarray(water_level, dtype=np.float64) - z, 0.0)
        elif h0 is not None:
            h = np.array(h0, dtype=np.float64)
        else:
            h = np.zeros(z.shape)
        h = np.ascontiguousarray(np.broadcast_to(h, z.shape), dtype=np.float64).copy()
        if np.any(h < 0) or not np.all(np.isfinite(h)):
            raise InvalidScenario("initial depths must be finite and non-negative")
        h[self.domain.blocked] = 0.0
        return h

    def _setup_forcing(self) -> None:
        f = self.forcing
        ny, nx = self.domain.shape
        shape = (ny, nx)
        self._rain_pattern = (
            np.ones(shape) if f.rain_pattern is None
            else np.ascontiguousarray(np.broadcast_to(np.asarray(f.rain_pattern, dtype=np.float64), shape))
        )
        if np.any(self._rain_pattern < 0):
            raise InvalidScenario("the rain pattern must be non-negative")
        self._loss_initial = np.ascontiguousarray(
            np.broadcast_to(np.asarray(f.initial_loss_mm, dtype=np.float64) / 1000.0, shape)
        ).copy()
        self._loss_rate = np.ascontiguousarray(
            np.broadcast_to(np.asarray(f.continuing_loss_mm_h, dtype=np.float64) / 1000.0 / 3600.0, shape)
        )
        if np.any(self._loss_initial < 0) or np.any(self._loss_rate < 0):
            raise InvalidScenario("losses must be non-negative")
        # uniform rain and losses: every active cell has the same remaining initial loss, kept here
        self._uniform = (f.rain_pattern is None and np.ndim(f.initial_loss_mm) == 0
                         and np.ndim(f.continuing_loss_mm_h) == 0)
        self._uniform_initial_left = float(np.asarray(f.initial_loss_mm)) / 1000.0 if self._uniform else 0.0
        self._uniform_rate = float(np.asarray(f.continuing_loss_mm_h)) / 1000.0 / 3600.0 if self._uniform else 0.0
        self._bkind = np.zeros(2 * ny + 2 * nx, dtype=np.int8)
        self._bstage = np.zeros(2 * ny + 2 * nx)
        self._stage_slices = []
        offsets = {"west": (0, ny), "east": (ny, ny), "north": (2 * ny, nx), "south": (2 * ny + nx, nx)}
        edge_z = {"west": self.domain.z[:, 0], "east": self.domain.z[:, -1],
                  "north": self.domain.z[0, :], "south": self.domain.z[-1, :]}
        for b in f.boundaries:
            off, length = offsets[b.side]
            stop = length if b.stop is None else b.stop
            if not 0 <= b.start < stop <= length:
                raise InvalidScenario(f"boundary range {b.start}:{stop} is outside the {b.side} edge (0:{length})")
            sl = slice(off + b.start, off + stop)
            self._bkind[sl] = BOUNDARY_KINDS[b.kind]
            if b.kind == "stage":
                self._stage_slices.append((sl, b.stage, float(edge_z[b.side][b.start:stop].min())))
        for p in f.inflows:
            if not (0 <= p.row < ny and 0 <= p.col < nx) or self.domain.blocked[p.row, p.col]:
                raise InvalidScenario(f"inflow cell ({p.row}, {p.col}) is outside the grid or blocked")
            if np.any(p.discharge.values < 0):
                raise InvalidScenario("point inflows must be non-negative (m3/s)")
        self._inflow_rows = np.array([p.row for p in f.inflows], dtype=np.int64)
        self._inflow_cols = np.array([p.col for p in f.inflows], dtype=np.int64)
        self._inflow_cum = []
        for p in f.inflows:
            t, q = p.discharge.times, p.discharge.values
            cum = np.concatenate([[0.0], np.cumsum(0.5 * (q[1:] + q[:-1]) * np.diff(t))])
            self._inflow_cum.append((t, q, cum))

    # stepping

    def _inflow_volume(self, k: int, t0: float, t1: float) -> float:
        t, q, cum = self._inflow_cum[k]

        def v(x):  # cumulative volume, constant discharge outside the series
            if x <= t[0]:
                return (x - t[0]) * q[0]
            if x >= t[-1]:
                return cum[-1] + (x - t[-1]) * q[-1]
            return float(np.interp(x, t, cum))

        return v(t1) - v(t0)

    def _stage_depth_max(self, t: float) -> float:
        deepest = 0.0
        for sl, series, zmin in self._stage_slices:
            s = series.at(t)
            self._bstage[sl] = s
            deepest = max(deepest, s - zmin)
        return deepest

    def _sub_stages(self, n_sub: int, sub_dt: float) -> np.ndarray:
        """Boundary stages at the start of each sub-step (rows), as :meth:`_stage_depth_max` sets them."""
        stages = np.repeat(self._bstage[None, :], n_sub, axis=0)
        times = self.t + sub_dt * np.arange(n_sub)
        for sl, series, _ in self._stage_slices:
            stages[:, sl] = np.interp(times, series.times, series.values)[:, None]
        return stages

    def _uniform_loss(self, rain: float, dt: float) -> float:
        """The loss of every cell under uniform rain (the same arithmetic as the per-cell grids)."""
        il = min(rain, self._uniform_initial_left)
        self._uniform_initial_left -= il
        cl = min(rain - il, self._uniform_rate * dt)
        return il + cl

    def _choose_subcycles(self, counts: np.ndarray) -> None:
        """Sub-steps k for the next step's deep cells, from ``counts[r, k - 2]`` (cells deeper than h_max / k^2).

        Least work per simulated second, 1/k + W n_k / N, with W = 4 the cost of a sub-cycled cell with
        its neighbours relative to a cell of the main step (a serial pass over lists against a
        parallel pass over rows).
        """
        self._subcycles_wanted = kernels.choose_subcycles(counts, self._n_active, 4.0)

    def _time_step(self, dt_limit: float):
        """(dt, sub-steps, sub-cycled faces and cells or None); CFL of the deep cells on the sub-steps only."""
        p = self.params
        dx = self.domain.dx
        h_all = max(self._h_max, self._stage_depth_max(self.t), p.h_min)
        dt_cfl = p.alpha * dx / math.sqrt(p.g * h_all)
        dt = min(dt_cfl, p.dt_max, dt_limit)
        self._h_all = h_all
        if self._split_depth == math.inf:
            return dt, 0, None
        ghost = kernels.mark_deep_boundaries(self._flags, self.domain.z, self._bkind, self._bstage,
                                             self._split_depth)
        # the lists are kept while the SUBCYCLED cells stay the same (same_deep_cells records new ones)
        if kernels.same_deep_cells(self._flags, self._deep) and self._fine_sets is not None:
            xf, yf, cells = self._fine_sets
            kernels.mark_fine(self._flags, cells)
        else:
            xf, yf, cells = self._fine_sets = kernels.subcycle_sets(self._flags)
        if cells.shape[0] == 0:
            return dt, 0, None
        # the main step's CFL from the deepest water it still carries (the floodplain), as ever
        h_main = max(self._h_shallow, ghost, p.h_min)
        dt = min(p.alpha * dx / math.sqrt(p.g * h_main), p.subcycles * dt_cfl, p.dt_max, dt_limit)
        n_sub = max(1, math.ceil(dt / dt_cfl - 1e-9))
        if self._xq.size < xf.shape[0] or self._yq.size < yf.shape[0]:
            self._xq = np.zeros(2 * xf.shape[0])
            self._yq = np.zeros(2 * yf.shape[0])
        return dt, n_sub, (xf, yf, cells)

    def step(self, dt_limit: float = math.inf, stats: bool = True) -> float:
        """Advance one adaptive step (at most ``dt_limit`` s); returns the step length.

        ``stats``: update the statistics on this step if ``params.stats_interval`` has passed or the
        step ends at ``dt_limit``; False leaves this step out of them.
        """
        p = self.params
        dx = self.domain.dx
        dt, n_sub, fine = self._time_step(dt_limit)
        rain = self.forcing.rain.depth_m(self.t, self.t + dt) if self.forcing.rain is not None else 0.0
        uniform_loss = self._uniform_loss(rain, dt) if self._uniform and rain > 0.0 else 0.0
        k_next = self._subcycles_wanted
        split_next = self._h_all / (k_next * k_next) if k_next > 1 else math.inf
        for j in range(self._thresholds.size):
            self._thresholds[j] = self._h_all / ((j + 2) * (j + 2))
        t_end = self.t + dt
        stats_dt = t_end - self._stats_time
        take_stats = stats and (dt >= dt_limit or stats_dt >= p.stats_interval)
        if take_stats or not stats:
            self._stats_time = t_end
        n_limited = kernels.step_momentum(self.h, self.domain.z, self._flags, self.qx, self.qy, self._qx_new,
                                          self._qy_new, self._n2x, self._n2y, self._bkind, self._bstage, dt, dx,
                                          p.theta, p.h_min, p.g, p.froude_max, self._factor, self._row_limited)
        f_in = f_out = f_neg = 0.0
        f_limited = 0
        if fine is not None:
            # the deep cells' faces in sub-steps, between the main momentum and continuity passes
            xf, yf, cells = fine
            sub_dt = dt / n_sub
            f_in, f_out, f_neg, f_limited = kernels.subcycle_steps(
                self.h, self.domain.z, self._flags, self.qx, self.qy, xf, yf, cells, self._xq, self._yq,
                self._fine_factor, self._n2x, self._n2y, self._bkind, self._sub_stages(n_sub, sub_dt), sub_dt, dx,
                p.theta, p.h_min, p.g, p.froude_max)
            self.substeps += n_sub
            # the main step's faces of the FINE cells are limited by their depths after the sub-steps
            n_limited += kernels.fine_factors(self.h, self._qx_new, self._qy_new, cells, dt / dx, self._factor,
                                              self._row_limited)
        s_h, h_max, s_rain, s_loss, s_neg, v_in, v_out, h_shallow = kernels.step_continuity(
            self.h, self._flags, self._flags_next, self._qx_new, self._qy_new, self._factor, self._row_limited,
            n_limited, dt, dx, rain, uniform_loss, self._uniform, self._rain_pattern, self._loss_initial,
            self._loss_rate, split_next, self._thresholds, self._counts, self._row_sums, take_stats, stats_dt, t_end,
            self._stat_depths, self.max_depth, self.max_speed, self.max_dv, self.max_hr, self.arrival,
            self.duration)
        v_in = v_in * dt * dx + f_in
        v_out = v_out * dt * dx + f_out
        s_neg += f_neg
        n_limited += f_limited
        if fine is not None:  # the sub-cycled faces' state goes over to the new buffers
            kernels.copy_faces(self.qx, self.qy, self._qx_new, self._qy_new, fine[0], fine[1])
        self.qx, self._qx_new = self._qx_new, self.qx
        self.qy, self._qy_new = self._qy_new, self.qy
        if fine is not None and take_stats:
            kernels.fine_statistics(self.h, self._flags, self.qx, self.qy, fine[2], t_end, stats_dt,
                                    self._stat_depths, self.max_depth, self.max_speed, self.max_dv, self.max_hr,
                                    self.arrival, self.duration)
        self._flags, self._flags_next = self._flags_next, self._flags
        self._split_depth = split_next
        if self._thresholds.size:
            self._choose_subcycles(self._counts)
        self.limited_cell_steps += n_limited
        inflow = 0.0
        area = dx * dx
        for k in range(len(self._inflow_cum)):
            vol = self._inflow_volume(k, self.t, t_end)
            r, c = self._inflow_rows[k], self._inflow_cols[k]
            self.h[r, c] += vol / area
            h_max = max(h_max, self.h[r, c])
            if self.h[r, c] > split_next:
                self._flags[r, c] |= kernels.SUBCYCLED
            else:
                h_shallow = max(h_shallow, self.h[r, c])
            inflow += vol
        self.t = t_end
        self.steps += 1
        self._h_max = h_max
        self._h_shallow = h_shallow
        m = self.mass
        m.storage = s_h * area + inflow
        m.rain += s_rain * area
        m.losses += s_loss * area
        m.roundoff_added += s_neg * area
        m.boundary_in += v_in
        m.boundary_out += v_out
        m.inflow += inflow
        if not math.isfinite(m.storage):
            raise SolverFailure(f"non-finite depth at t = {self.t:.3f} s after {self.steps} steps")
        m.max_relative_error = max(m.max_relative_error, m.relative_error)
        return dt

    def run(self, until: float, *, snapshot_times: Sequence[float] = (), gauges: GaugeRecord | None = None,
            gauge_interval: float | None = None, progress: Callable[[float, float], None] | None = None,
            should_cancel: Callable[[], bool] | None = None, report_every: float = 1.0,
            stats: bool = True) -> dict[float, np.ndarray]:
        """Advance to ``until`` s; returns depth snapshots at ``snapshot_times`` (landed on exactly).

        ``gauges`` records depths every ``gauge_interval`` s. ``progress(fraction, t)`` and
        ``should_cancel()`` are called about every ``report_every`` s of wall time; a cancel raises
        :class:`RunCancelled` with the state kept as it was.
        """
        events = sorted({float(s) for s in snapshot_times if self.t < s <= until})
        if gauges is not None and gauge_interval:
            n0 = math.floor(self.t / gauge_interval) + 1
            events = sorted(set(events) | {k * gauge_interval for k in range(n0, int(until // gauge_interval) + 1)})
        snapshots_wanted = {float(s) for s in snapshot_times}
        snapshots: dict[float, np.ndarray] = {}
        if gauges is not None and self.steps == 0:
            self._record_gauges(gauges)
        t_start, t_wall, last_report = self.t, time.perf_counter(), time.perf_counter()
        try:
            ev = 0
            while self.t < until - 1e-9:
                target = events[ev] if ev < len(events) else until
                self.step(dt_limit=target - self.t, stats=stats)
                if abs(self.t - target) <= 1e-9 * max(1.0, target):
                    self.t = target  # land exactly on output times despite round-off
                while ev < len(events) and self.t >= events[ev]:
                    if events[ev] in snapshots_wanted:
                        snapshots[events[ev]] = self.h.copy()
                    if gauges is not None and gauge_interval:
                        self._record_gauges(gauges)
                    ev += 1
                now = time.perf_counter()
                if now - last_report >= report_every:
                    last_report = now
                    if should_cancel is not None and should_cancel():
                        raise RunCancelled(f"cancelled at t = {self.t:.1f} s")
                    if progress is not None:
                        progress((self.t - t_start) / max(until - t_start, 1e-12), self.t)
        finally:
            self.wall_seconds += time.perf_counter() - t_wall
        if progress is not None:
            progress(1.0, self.t)
        return snapshots

    def _record_gauges(self, gauges: GaugeRecord) -> None:
        rows = [r for r, _ in gauges.cells]
        cols = [c for _, c in gauges.cells]
        gauges.times.append(self.t)
        gauges.depths.append(self.h[rows, cols].copy())

    @property
    def water_level(self) -> np.ndarray:
        return self.domain.z + self.h

    def velocity(self) -> tuple[np.ndarray, np.ndarray]:
        return kernels.cell_velocity(self.h, self.qx, self.qy, self.params.vel_depth)

    @property
    def cell_updates(self) -> int:
        return self.steps * self.domain.z.size


def _face_manning_squared(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """n^2 on faces: the mean of the two cells' n^2; boundary faces take their cell's."""
    n2 = n * n
    ny, nx = n2.shape
    n2x = np.empty((ny, nx + 1))
    n2x[:, 1:-1] = 0.5 * (n2[:, :-1] + n2[:, 1:])
    n2x[:, 0] = n2[:, 0]
    n2x[:, -1] = n2[:, -1]
    n2y = np.empty((ny + 1, nx))
    n2y[1:-1, :] = 0.5 * (n2[:-1, :] + n2[1:, :])
    n2y[0, :] = n2[0, :]
    n2y[-1, :] = n2[-1, :]
    return n2x, n2y
