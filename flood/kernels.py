"""Numba kernels of the local-inertial shallow-water scheme: pure functions on arrays.

Grid layout (row-major raster, ``ny`` rows by ``nx`` columns, square cells of size ``dx``):

* ``h``, ``z``: cell depth and bed level;
* ``flags`` (uint8) per cell: ``ACTIVE`` (holds water; 0 = blocked cell, e.g. a building),
  ``SUBCYCLED`` (a deep cell whose faces are advanced in sub-steps, see below) and ``FINE`` (a cell
  touching a sub-cycled face);
* ``qx`` (ny, nx+1): unit discharge (m2/s) through the faces between columns, positive towards
  increasing column; column 0 is the west boundary face, column ``nx`` the east one;
* ``qy`` (ny+1, nx): the same between rows, positive towards increasing row; row 0 is the
  north boundary face (top of a north-up raster), row ``ny`` the south one.

Boundary faces are described by ``bkind`` / ``bstage`` vectors of length 2*ny + 2*nx, ordered
west (ny), east (ny), north (nx), south (nx).

One step is two or three passes over the rows, each parallel over rows (``prange``) and deterministic
(a row's results depend only on the previous state, sums are added in row order):

1. :func:`momentum`: new face discharges (Bates et al. 2010 with the de Almeida et al. 2012 theta
   scheme and semi-implicit Manning friction) into scratch arrays, and for each cell the fraction
   of its outflow it can supply from its depth (computed while the row's faces are in cache);
2. :func:`limit_outflow` (only the rows where a cell would empty): scales each discharge by the
   factor of the cell it leaves, so mass is conserved and depths never go negative;
3. :func:`continuity`: depths with rain and losses, boundary volumes, the row sums of the mass
   balance and, on the steps that take them, the running statistics, in one pass.

The inner loops over a row's faces and cells are written without branches (selects) so that they
vectorize (AVX2: four cells at once); that is why the face flux takes its cube root from
:func:`_cbrt` (multiplications only) rather than from libm, and why the statistics, which branch
(they write only the maxima that grow: memory traffic is their cost), are taken every
``SolverParams.stats_interval`` rather than every step.

Local time stepping (sub-cycling): faces touching a ``SUBCYCLED`` cell are skipped by the main
passes and advanced by :func:`subcycle_step` in ``m`` sub-steps of ``dt / m`` between the main
momentum pass and the main continuity pass (so with ``m = 1`` every face is computed from the same
depths, as in the plain step), with their own outflow limiter; every face's discharge is applied to
both of its cells with the same duration, so mass is conserved exactly. :func:`subcycle_sets`
lists those faces and cells (kept while the sub-cycled cells stay the same, :func:`same_deep_cells`),
:func:`fine_factors` limits the FINE cells' main-step faces by their depths after the sub-steps and
:func:`fine_statistics` closes their statistics.
"""

from __future__ import annotations

import numba
import numpy as np

CLOSED = 0
OPEN = 1
STAGE = 2

ACTIVE = 1
SUBCYCLED = 2
FINE = 4

#: grids smaller than this run the serial kernels (thread start-up costs more than it saves)
PARALLEL_MIN_CELLS = 40_000

# columns of the per-row sums filled by continuity / finish_fine_cells
ROW_STORAGE, ROW_MAX, ROW_RAIN, ROW_LOSS, ROW_NEG, ROW_IN, ROW_OUT, ROW_SHALLOW = range(8)
ROW_COLUMNS = 8


# --- face discharges ---------------------------------------------------------------------------


@numba.njit(cache=True, inline="always", error_model="numpy")
def _cbrt(x):
    """Cube root of a positive normal float64 to ~1e-15 (relative), with multiplications only.

    ``np.cbrt`` is a libm call that keeps the face loops scalar: it was ~70 % of the x-face loop
    (3.2-3.4 ms on 500 x 500 cells, 0.95 ms with a square root in its place); this one vectorizes.
    Initial guess of x^(-1/3) from the exponent bits (within ~4 %), then four Newton steps on
    r^-3 = x (each squares the error).
    """
    high = np.uint32(np.float64(x).view(np.uint64) >> np.uint64(32))  # sign, exponent, top of the mantissa
    r = np.uint64(np.uint64(np.uint32(0x553EF0FF) - high // np.uint32(3)) << np.uint64(32)).view(np.float64)
    for _ in range(4):
        r = r * (4.0 / 3.0 - (1.0 / 3.0) * x * (r * r * r))
    return x * r * r


@numba.njit(cache=True, inline="always", error_model="numpy")
def _unlimited_flux(q0, q_before, q_after, hf, deta, gdt, gdt_dx, n2, c_theta, c_side):
    """de Almeida et al. (2012) eq. 13 with the friction of Bates et al. (2010), before the Froude limit.

    ``q = (q_avg - g hf dt deta/dx) / (1 + g dt n2 |q0| / hf^(7/3))`` written with one division,
    hf^(7/3) as hf^2 cbrt(hf); no branches (a select), so that the face loops vectorize.
    """
    q = c_theta * q0 + c_side * (q_before + q_after) - gdt_dx * hf * deta
    friction = gdt * n2 * abs(q0)
    hf73 = hf * hf * _cbrt(hf)
    return q * hf73 / (hf73 + friction) if friction > 0.0 else q


@numba.njit(cache=True, inline="always")
def _froude_limited(q, hf, fr2g):
    """``q`` limited to Froude number sqrt(fr2g / g): compares squares, takes the root only when it acts."""
    if fr2g > 0.0:
        lim2 = fr2g * hf * hf * hf
        if q * q > lim2:
            return np.sqrt(lim2) if q > 0.0 else -np.sqrt(lim2)
    return q


@numba.njit(cache=True, inline="always")
def _face_flux(q0, q_before, q_after, hf, deta, gdt, gdt_dx, n2, c_theta, c_side, fr2g):
    """The discharge of one face: :func:`_unlimited_flux`, Froude-limited."""
    return _froude_limited(_unlimited_flux(q0, q_before, q_after, hf, deta, gdt, gdt_dx, n2, c_theta, c_side),
                           hf, fr2g)


@numba.njit(cache=True, inline="always")
def _interior_flux(zi, zj, hi, hj, q0, q_before, q_after, n2, gdt, gdt_dx, c_theta, c_side, h_min, fr2g):
    eta_i = zi + hi
    eta_j = zj + hj
    hf = max(eta_i, eta_j) - max(zi, zj)
    if hf <= h_min:
        return 0.0
    return _face_flux(q0, q_before, q_after, hf, eta_j - eta_i, gdt, gdt_dx, n2, c_theta, c_side, fr2g)


@numba.njit(cache=True, inline="always")
def _boundary_flux(kind, stage, h_i, z_i, q0, out_sign, gdt, gdt_dx, n2, h_min, g, fr2g):
    """Discharge through a boundary face of an active cell (positive along the axis, like interior faces).

    STAGE: a ghost cell beyond the face with water level ``stage`` over the same bed; water may
    enter or leave. A stage below the bed, and OPEN faces, let water leave at critical depth
    (h_c = 2/3 h, q = h_c sqrt(g h_c)), never enter.
    """
    if kind == CLOSED:
        return 0.0
    if kind == STAGE and stage > z_i:
        eta_i = z_i + h_i
        hf = max(eta_i, stage) - z_i
        if hf <= h_min:
            return 0.0
        deta = (stage - eta_i) * out_sign
        return _face_flux(q0, q0, q0, hf, deta, gdt, gdt_dx, n2, 1.0, 0.0, fr2g)
    if h_i <= h_min:
        return 0.0
    hc = h_i * (2.0 / 3.0)
    return out_sign * hc * np.sqrt(g * hc)


@numba.njit(cache=True, inline="always")
def _x_face(r, c, h, z, flags, qx, n2x, bkind, bstage, gdt, gdt_dx, c_theta, c_side, h_min, g, fr2g, coarse):
    """Discharge of x-face (r, c), or 0 where it is not advanced by this pass (``coarse`` selects the pass)."""
    nx = h.shape[1]
    if c == 0 or c == nx:
        cell = 0 if c == 0 else nx - 1
        f = flags[r, cell]
        if (f & ACTIVE) == 0 or ((f & SUBCYCLED) == 0) != coarse:
            return 0.0
        k = r if c == 0 else h.shape[0] + r
        return _boundary_flux(bkind[k], bstage[k], h[r, cell], z[r, cell], qx[r, c], -1.0 if c == 0 else 1.0,
                              gdt, gdt_dx, n2x[r, c], h_min, g, fr2g)
    fi = flags[r, c - 1]
    fj = flags[r, c]
    if (fi & fj & ACTIVE) == 0 or (((fi | fj) & SUBCYCLED) == 0) != coarse:
        return 0.0
    return _interior_flux(z[r, c - 1], z[r, c], h[r, c - 1], h[r, c], qx[r, c], qx[r, c - 1], qx[r, c + 1],
                          n2x[r, c], gdt, gdt_dx, c_theta, c_side, h_min, fr2g)


@numba.njit(cache=True, inline="always")
def _y_face(r, c, h, z, flags, qy, n2y, bkind, bstage, gdt, gdt_dx, c_theta, c_side, h_min, g, fr2g, coarse):
    """Discharge of y-face (r, c), or 0 where it is not advanced by this pass."""
    ny, nx = h.shape
    if r == 0 or r == ny:
        cell = 0 if r == 0 else ny - 1
        f = flags[cell, c]
        if (f & ACTIVE) == 0 or ((f & SUBCYCLED) == 0) != coarse:
            return 0.0
        k = 2 * ny + c if r == 0 else 2 * ny + nx + c
        return _boundary_flux(bkind[k], bstage[k], h[cell, c], z[cell, c], qy[r, c], -1.0 if r == 0 else 1.0,
                              gdt, gdt_dx, n2y[r, c], h_min, g, fr2g)
    fi = flags[r - 1, c]
    fj = flags[r, c]
    if (fi & fj & ACTIVE) == 0 or (((fi | fj) & SUBCYCLED) == 0) != coarse:
        return 0.0
    return _interior_flux(z[r - 1, c], z[r, c], h[r - 1, c], h[r, c], qy[r, c], qy[r - 1, c], qy[r + 1, c],
                          n2y[r, c], gdt, gdt_dx, c_theta, c_side, h_min, fr2g)


@numba.njit(cache=True)
def _momentum_row(r, h, z, flags, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min, g, fr_max):
    """x-faces of row r (if r < ny) and y-faces of face row r (between cell rows r-1 and r)."""
    r = np.int64(r)  # a prange index may be unsigned; mixed with signed ints it would become a float
    ny, nx = h.shape
    gdt = g * dt
    gdt_dx = gdt / dx
    c_side = 0.5 * (1.0 - theta)
    fr2g = fr_max * fr_max * g
    if r < ny:
        qx_new[r, 0] = _x_face(r, 0, h, z, flags, qx, n2x, bkind, bstage, gdt, gdt_dx, theta, c_side, h_min, g,
                               fr2g, True)
        qx_new[r, nx] = _x_face(r, nx, h, z, flags, qx, n2x, bkind, bstage, gdt, gdt_dx, theta, c_side, h_min, g,
                                fr2g, True)
        _x_faces_row(r, h, z, flags, qx, qx_new, n2x, gdt, gdt_dx, theta, c_side, h_min, fr2g)
    if r == 0 or r == ny:
        for c in range(nx):
            qy_new[r, c] = _y_face(r, c, h, z, flags, qy, n2y, bkind, bstage, gdt, gdt_dx, theta, c_side, h_min, g,
                                   fr2g, True)
        return
    _y_faces_row(r, h, z, flags, qy, qy_new, n2y, gdt, gdt_dx, theta, c_side, h_min, fr2g)


# The interior face loops compute every face and select (no branches), which lets them vectorize;
# a face that is not advanced gets depth 1 (a finite flux, discarded) and discharge 0. The Froude
# limit's root costs as much as the rest of the loop: the loop only counts the faces over the limit
# and a scalar pass limits them when there are any (rarely).


@numba.njit(cache=True, error_model="numpy")
def _x_faces_row(r, h, z, flags, qx, qx_new, n2x, gdt, gdt_dx, c_theta, c_side, h_min, fr2g):
    """Interior x-faces of row r advanced by the main step (both cells active, neither sub-cycled)."""
    nx = h.shape[1]
    over = 0
    for c in range(1, nx):
        fi = flags[r, c - 1]
        fj = flags[r, c]
        zi = z[r, c - 1]
        zj = z[r, c]
        eta_i = zi + h[r, c - 1]
        eta_j = zj + h[r, c]
        hf = max(eta_i, eta_j) - max(zi, zj)
        wet = ((fi & fj & ACTIVE) != 0) & (((fi | fj) & SUBCYCLED) == 0) & (hf > h_min)
        hf = hf if wet else 1.0
        q = _unlimited_flux(qx[r, c], qx[r, c - 1], qx[r, c + 1], hf, eta_j - eta_i, gdt, gdt_dx, n2x[r, c],
                            c_theta, c_side)
        q = q if wet else 0.0
        over += q * q > fr2g * hf * hf * hf
        qx_new[r, c] = q
    if fr2g > 0.0 and over > 0:
        for c in range(1, nx):
            zi = z[r, c - 1]
            zj = z[r, c]
            hf = max(zi + h[r, c - 1], zj + h[r, c]) - max(zi, zj)
            qx_new[r, c] = _froude_limited(qx_new[r, c], hf, fr2g)


@numba.njit(cache=True, error_model="numpy")
def _y_faces_row(r, h, z, flags, qy, qy_new, n2y, gdt, gdt_dx, c_theta, c_side, h_min, fr2g):
    """Interior y-faces of face row r (0 < r < ny) advanced by the main step."""
    nx = h.shape[1]
    over = 0
    for c in range(nx):
        fi = flags[r - 1, c]
        fj = flags[r, c]
        zi = z[r - 1, c]
        zj = z[r, c]
        eta_i = zi + h[r - 1, c]
        eta_j = zj + h[r, c]
        hf = max(eta_i, eta_j) - max(zi, zj)
        wet = ((fi & fj & ACTIVE) != 0) & (((fi | fj) & SUBCYCLED) == 0) & (hf > h_min)
        hf = hf if wet else 1.0
        q = _unlimited_flux(qy[r, c], qy[r - 1, c], qy[r + 1, c], hf, eta_j - eta_i, gdt, gdt_dx, n2y[r, c],
                            c_theta, c_side)
        q = q if wet else 0.0
        over += q * q > fr2g * hf * hf * hf
        qy_new[r, c] = q
    if fr2g > 0.0 and over > 0:
        for c in range(nx):
            zi = z[r - 1, c]
            zj = z[r, c]
            hf = max(zi + h[r - 1, c], zj + h[r, c]) - max(zi, zj)
            qy_new[r, c] = _froude_limited(qy_new[r, c], hf, fr2g)


#: rows of the momentum pass per task: each task computes its rows' outflow factors as soon as
#: the faces below a row are known (while they are in cache); the last row of a task waits for
#: the next task's first face row and is done after the parallel loop
MOMENTUM_ROWS_PER_TASK = 32


@numba.njit(cache=True)
def _momentum_rows(r0, r1, h, z, flags, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min, g,
                   fr_max, factor, row_limited):
    """Face rows r0:r1 (see :func:`_momentum_row`), then the outflow factors of cell rows r0:r1-1."""
    k = dt / dx
    for r in range(r0, r1):
        _momentum_row(r, h, z, flags, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min, g,
                      fr_max)
        if r > r0:
            row_limited[r - 1] = _factor_row(r - 1, h, flags, qx_new, qy_new, k, factor)


@numba.njit(cache=True, parallel=True)
def momentum(h, z, flags, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min, g, fr_max, factor,
             row_limited):
    """New face discharges from the current depths (explicit in h, semi-implicit friction), rows in parallel,
    and the outflow factors of the cells (:func:`_factor_row`); returns the count of limited cells.

    Faces touching a SUBCYCLED cell get 0 here (they are advanced by :func:`subcycle_step`).
    """
    ny = h.shape[0]
    n_tasks = (ny + MOMENTUM_ROWS_PER_TASK - 1) // MOMENTUM_ROWS_PER_TASK
    for j in numba.prange(n_tasks):
        r0 = np.int64(j) * MOMENTUM_ROWS_PER_TASK
        r1 = min(r0 + MOMENTUM_ROWS_PER_TASK, ny) + (1 if r0 + MOMENTUM_ROWS_PER_TASK >= ny else 0)
        _momentum_rows(r0, r1, h, z, flags, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min,
                       g, fr_max, factor, row_limited)
    for j in range(n_tasks - 1):
        r = (j + 1) * MOMENTUM_ROWS_PER_TASK - 1
        row_limited[r] = _factor_row(r, h, flags, qx_new, qy_new, dt / dx, factor)
    return row_limited.sum()


@numba.njit(cache=True)
def momentum_serial(h, z, flags, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min, g, fr_max,
                    factor, row_limited):
    _momentum_rows(0, h.shape[0] + 1, h, z, flags, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta,
                   h_min, g, fr_max, factor, row_limited)
    return row_limited.sum()


# --- outflow limiter ---------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def _factor_row(r, h, flags, qx, qy, k, factor):
    """Outflow factors of row r, written only if one is below 1 (rows without are not read); the count below 1.

    FINE cells are not counted: their depth changes in the sub-steps, :func:`fine_factors` sets them.
    """
    r = np.int64(r)
    nx = h.shape[1]
    n = 0
    for c in range(nx):
        out = (max(0.0, -qx[r, c]) + max(0.0, qx[r, c + 1]) + max(0.0, -qy[r, c]) + max(0.0, qy[r + 1, c])) * k
        n += (out > h[r, c]) & ((flags[r, c] & FINE) == 0)
    if n > 0:
        for c in range(nx):
            out = (max(0.0, -qx[r, c]) + max(0.0, qx[r, c + 1]) + max(0.0, -qy[r, c]) + max(0.0, qy[r + 1, c])) * k
            factor[r, c] = h[r, c] / out if out > h[r, c] else 1.0
    return n


@numba.njit(cache=True)
def fine_factors(h, qx, qy, cells, k, factor, row_limited):
    """Outflow factors of the FINE cells over their faces of the main step, from their depths after the sub-steps.

    A row whose factors were not written (none below 1) gets them (1) before its first factor below
    1. Returns the count below 1.
    """
    n_limited = 0
    for i in range(cells.shape[0]):
        r, c = cells[i, 0], cells[i, 1]
        out = (max(0.0, -qx[r, c]) + max(0.0, qx[r, c + 1]) + max(0.0, -qy[r, c]) + max(0.0, qy[r + 1, c])) * k
        f = h[r, c] / out if out > h[r, c] else 1.0
        if row_limited[r] == 0 and f < 1.0:
            factor[r, :] = 1.0
        if row_limited[r] > 0 or f < 1.0:
            factor[r, c] = f
        if f < 1.0:
            row_limited[r] += 1
            n_limited += 1
    return n_limited


# Per-cell helpers below take only scalars: statistics in a per-cell helper taking the arrays as
# arguments measured 10-20x slower than the same code in the loop (numba's reference counting of
# array arguments is the likely cause).


@numba.njit(cache=True, inline="always")
def _limited(q, f_up, f_down, up_inside, down_inside):
    """A discharge scaled by the factor of the cell it leaves (inflow from outside the grid is unlimited)."""
    if q > 0.0 and up_inside:
        return q * f_up
    if q < 0.0 and down_inside:
        return q * f_down
    return q


@numba.njit(cache=True)
def _limit_row(r, qx, qy, factor, row_limited):
    """Scale the faces of row r (x-faces, and the y-faces above it) by the factor of the cell they leave.

    Rows without a limited cell (``row_limited``) have factor 1 and are skipped.
    """
    r = np.int64(r)
    ny, nx = factor.shape
    if r < ny and row_limited[r] > 0:
        for c in range(nx + 1):
            qx[r, c] = _limited(qx[r, c], factor[r, max(c - 1, 0)], factor[r, min(c, nx - 1)], c > 0, c < nx)
    above = r > 0 and row_limited[r - 1] > 0
    below = r < ny and row_limited[r] > 0
    if above or below:
        for c in range(nx):
            f_up = factor[r - 1, c] if above else 1.0
            f_down = factor[r, c] if below else 1.0
            qy[r, c] = _limited(qy[r, c], f_up, f_down, r > 0, r < ny)


@numba.njit(cache=True, parallel=True)
def limit_outflow(qx, qy, factor, row_limited):
    """Scale every face discharge by the factor of the cell it leaves (boundary inflow is unlimited)."""
    for r in numba.prange(factor.shape[0] + 1):
        _limit_row(r, qx, qy, factor, row_limited)


@numba.njit(cache=True)
def limit_outflow_serial(qx, qy, factor, row_limited):
    for r in range(factor.shape[0] + 1):
        _limit_row(r, qx, qy, factor, row_limited)


# --- continuity --------------------------------------------------------------------------------


@numba.njit(cache=True)
def _row_statistics(r, c0, c1, fine, h, flags, qx, qy, t, dt, stat_depths,
                    max_depth, max_speed, max_dv, max_hr, arrival, duration):
    """Running maxima of depth, speed, depth*speed, depth*(speed+0.5); arrival time; time above a depth.

    For the active cells of row r in columns c0:c1 that are FINE (``fine``) or not. Speed is the
    cell-centred |q| / d (one root, one division).
    """
    vel_depth, arrival_depth, duration_depth = stat_depths[0], stat_depths[1], stat_depths[2]
    want = FINE if fine else 0
    for c in range(c0, c1):
        f = flags[r, c]
        if (f & ACTIVE) == 0 or (f & FINE) != want:
            continue
        d = h[r, c]
        if d > max_depth[r, c]:
            max_depth[r, c] = d
        if d > duration_depth:
            duration[r, c] += dt
        if d > arrival_depth and arrival[r, c] < 0.0:
            arrival[r, c] = t
        if d > vel_depth:
            qu = 0.5 * (qx[r, c] + qx[r, c + 1])
            qv = 0.5 * (qy[r, c] + qy[r + 1, c])
            s = np.sqrt(qu * qu + qv * qv) / d
            if s > max_speed[r, c]:
                max_speed[r, c] = s
            if d * s > max_dv[r, c]:
                max_dv[r, c] = d * s
            if d * (s + 0.5) > max_hr[r, c]:
                max_hr[r, c] = d * (s + 0.5)
        elif d * 0.5 > max_hr[r, c]:
            max_hr[r, c] = d * 0.5


@numba.njit(cache=True)
def _row_rain(r, rain_depth, rain_pattern, loss_initial, loss_rate, dt, flags, gain):
    """Rain minus initial then continuing losses on the active cells of row r into ``gain``; (rain, loss) sums."""
    s_rain = 0.0
    s_loss = 0.0
    for c in range(flags.shape[1]):
        if flags[r, c] & ACTIVE:
            rain = rain_depth * rain_pattern[r, c]
            il = min(rain, loss_initial[r, c])
            loss_initial[r, c] -= il
            cl = min(rain - il, loss_rate[r, c] * dt)
            gain[c] = rain - il - cl
            s_rain += rain
            s_loss += il + cl
        else:
            gain[c] = 0.0
    return s_rain, s_loss


@numba.njit(cache=True, error_model="numpy")
def _row_counts(r, h, thresholds, counts):
    """Cells of row r deeper than each threshold (blocked cells hold no water, thresholds are positive)."""
    for j in range(thresholds.size):
        level = thresholds[j]
        n = 0
        for c in range(h.shape[1]):
            n += h[r, c] > level
        counts[r, j] = n


@numba.njit(cache=True)
def _row_edge_volumes(r, qx, qy):
    """(in, out) unit volumes per second through the grid-edge faces of row r."""
    ny, nx = qx.shape[0], qy.shape[1]
    ql = qx[r, 0]
    qr = qx[r, nx]
    vin = max(0.0, ql) + max(0.0, -qr)
    vout = max(0.0, -ql) + max(0.0, qr)
    if r == 0:
        for c in range(nx):
            vin += max(0.0, qy[0, c])
            vout += max(0.0, -qy[0, c])
    if r == ny - 1:
        for c in range(nx):
            vin += max(0.0, -qy[ny, c])
            vout += max(0.0, qy[ny, c])
    return vin, vout


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _row_depths(r, h, flags, flags_next, qx, qy, k, gain, cell_gain, uniform_gain, h_split):
    """New depths of row r, its next flags; (depth sum, round-off added, active cells, max depth, max not deep).

    ``reassoc`` only lets the row sums be added in vector lanes (deterministic: the same for any
    number of threads). The maxima are taken on the bit patterns: for depths >= 0 their order is the
    order of the int64 patterns, and an integer maximum vectorizes where a float one does not.
    """
    s_h = 0.0
    s_neg = 0.0
    n_active = 0
    m_h = np.int64(0)
    m_shallow = np.int64(0)
    for c in range(h.shape[1]):
        active = (flags[r, c] & ACTIVE) != 0
        h_old = h[r, c]
        hn = h_old + k * (qx[r, c] - qx[r, c + 1] + qy[r, c] - qy[r + 1, c])
        hn += gain[c] if cell_gain else uniform_gain
        # only round-off can make a depth negative (outflow is limited to the depth); reported, not hidden
        negative = active & (hn < 0.0)
        s_neg -= hn if negative else 0.0
        hn = (0.0 if hn < 0.0 else hn) if active else h_old
        h[r, c] = hn
        deep = hn > h_split
        flags_next[r, c] = (ACTIVE | (SUBCYCLED if deep else 0)) if active else 0
        s_h += hn
        n_active += active
        bits = np.float64(hn).view(np.int64)
        m_h = max(m_h, bits)
        m_shallow = max(m_shallow, 0 if deep else bits)
    return s_h, s_neg, n_active, np.int64(m_h).view(np.float64), np.int64(m_shallow).view(np.float64)


@numba.njit(cache=True)
def _continuity_row(r, h, flags, flags_next, qx, qy, dt, dx, rain_depth, uniform_loss, uniform, rain_pattern,
                    loss_initial, loss_rate, h_split, thresholds, counts, row_sums, do_stats, stats_dt, t,
                    stat_depths, max_depth, max_speed, max_dv, max_hr, arrival, duration):
    r = np.int64(r)
    nx = h.shape[1]
    gain = np.zeros(nx)
    cell_gain = rain_depth > 0.0 and not uniform
    s_rain = s_loss = 0.0
    if cell_gain:
        s_rain, s_loss = _row_rain(r, rain_depth, rain_pattern, loss_initial, loss_rate, dt, flags, gain)
    uniform_gain = rain_depth - uniform_loss if rain_depth > 0.0 else 0.0
    s_h, s_neg, n_active, m_h, m_shallow = _row_depths(r, h, flags, flags_next, qx, qy, dt / dx, gain, cell_gain,
                                                       uniform_gain, h_split)
    if rain_depth > 0.0 and uniform:
        s_rain = n_active * rain_depth
        s_loss = n_active * uniform_loss
    s_in, s_out = _row_edge_volumes(r, qx, qy)
    _row_counts(r, h, thresholds, counts)
    if do_stats:
        _row_statistics(r, 0, nx, False, h, flags, qx, qy, t, stats_dt, stat_depths,
                        max_depth, max_speed, max_dv, max_hr, arrival, duration)
    row_sums[r, ROW_STORAGE] = s_h
    row_sums[r, ROW_MAX] = m_h
    row_sums[r, ROW_RAIN] = s_rain
    row_sums[r, ROW_LOSS] = s_loss
    row_sums[r, ROW_NEG] = s_neg
    row_sums[r, ROW_IN] = s_in
    row_sums[r, ROW_OUT] = s_out
    row_sums[r, ROW_SHALLOW] = m_shallow


@numba.njit(cache=True, parallel=True)
def continuity(h, flags, flags_next, qx, qy, dt, dx, rain_depth, uniform_loss, uniform, rain_pattern, loss_initial,
               loss_rate, h_split, thresholds, counts, row_sums, do_stats, stats_dt, t, stat_depths, max_depth,
               max_speed, max_dv, max_hr, arrival, duration):
    """Depth update from the (limited) face discharges, rain and losses; statistics; row sums.

    Rain is ``rain_depth`` times ``rain_pattern`` minus initial then continuing losses, or, when
    ``uniform``, the same loss ``uniform_loss`` on every active cell (the driver keeps the one
    remaining initial loss, which saves reading three grids per step). ``flags_next`` gets the
    cells deeper than ``h_split`` marked SUBCYCLED; ``counts[r, j]`` the cells of row r deeper than
    ``thresholds[j]``. ``row_sums[r]`` receives the ROW_* sums. ``stat_depths``: velocity, arrival
    and duration depths of the statistics (updated when ``do_stats``; FINE cells are left to
    :func:`fine_statistics`, their sub-cycled faces' discharges are elsewhere).
    """
    for r in numba.prange(h.shape[0]):
        _continuity_row(r, h, flags, flags_next, qx, qy, dt, dx, rain_depth, uniform_loss, uniform, rain_pattern,
                        loss_initial, loss_rate, h_split, thresholds, counts, row_sums, do_stats, stats_dt, t,
                        stat_depths, max_depth, max_speed, max_dv, max_hr, arrival, duration)


@numba.njit(cache=True)
def continuity_serial(h, flags, flags_next, qx, qy, dt, dx, rain_depth, uniform_loss, uniform, rain_pattern,
                      loss_initial, loss_rate, h_split, thresholds, counts, row_sums, do_stats, stats_dt, t,
                      stat_depths, max_depth, max_speed, max_dv, max_hr, arrival, duration):
    for r in range(h.shape[0]):
        _continuity_row(r, h, flags, flags_next, qx, qy, dt, dx, rain_depth, uniform_loss, uniform, rain_pattern,
                        loss_initial, loss_rate, h_split, thresholds, counts, row_sums, do_stats, stats_dt, t,
                        stat_depths, max_depth, max_speed, max_dv, max_hr, arrival, duration)


@numba.njit(cache=True)
def step_momentum(h, z, flags, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min, g, fr_max,
                  factor, row_limited):
    """First half of a step: :func:`momentum` with the outflow factors, in parallel on large grids.

    Returns the count of cells whose outflow will be limited.
    """
    if h.size >= PARALLEL_MIN_CELLS:
        return momentum(h, z, flags, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min, g,
                        fr_max, factor, row_limited)
    return momentum_serial(h, z, flags, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min, g,
                           fr_max, factor, row_limited)


@numba.njit(cache=True)
def step_continuity(h, flags, flags_next, qx_new, qy_new, factor, row_limited, n_limited, dt, dx, rain_depth,
                    uniform_loss, uniform, rain_pattern, loss_initial, loss_rate, h_split, thresholds, counts,
                    row_sums, do_stats, stats_dt, t, stat_depths, max_depth, max_speed, max_dv, max_hr, arrival,
                    duration):
    """Second half of a step: outflow limiter (when ``n_limited``), continuity, statistics, in parallel on
    large grids.

    Returns :func:`row_totals` (depth sums; boundary volumes as sums of unit discharge, to be
    multiplied by dt * dx).
    """
    if h.size >= PARALLEL_MIN_CELLS:
        if n_limited > 0:
            limit_outflow(qx_new, qy_new, factor, row_limited)
        continuity(h, flags, flags_next, qx_new, qy_new, dt, dx, rain_depth, uniform_loss, uniform, rain_pattern,
                   loss_initial, loss_rate, h_split, thresholds, counts, row_sums, do_stats, stats_dt, t,
                   stat_depths, max_depth, max_speed, max_dv, max_hr, arrival, duration)
    else:
        if n_limited > 0:
            limit_outflow_serial(qx_new, qy_new, factor, row_limited)
        continuity_serial(h, flags, flags_next, qx_new, qy_new, dt, dx, rain_depth, uniform_loss, uniform,
                          rain_pattern, loss_initial, loss_rate, h_split, thresholds, counts, row_sums, do_stats,
                          stats_dt, t, stat_depths, max_depth, max_speed, max_dv, max_hr, arrival, duration)
    return row_totals(row_sums)


@numba.njit(cache=True)
def choose_subcycles(counts, n_active, weight):
    """Sub-steps k (1 to counts.shape[1] + 1) with the least work per simulated second, ``1/k + weight n_k / N``.

    ``counts[r, k - 2]``: cells of row r deeper than h_max / k^2 (those would be sub-cycled, taking k
    steps where the rest takes one).
    """
    best_k = 1
    best = 1.0
    for j in range(counts.shape[1]):
        n = 0
        for r in range(counts.shape[0]):
            n += counts[r, j]
        k = j + 2
        cost = 1.0 / k + weight * n / n_active
        if cost < best:
            best = cost
            best_k = k
    return best_k


@numba.njit(cache=True)
def copy_faces(src_x, src_y, dst_x, dst_y, xf, yf):
    """Carry the listed faces' discharges over from one buffer to the other (sub-cycled faces' state)."""
    for i in range(xf.shape[0]):
        dst_x[xf[i, 0], xf[i, 1]] = src_x[xf[i, 0], xf[i, 1]]
    for i in range(yf.shape[0]):
        dst_y[yf[i, 0], yf[i, 1]] = src_y[yf[i, 0], yf[i, 1]]


@numba.njit(cache=True)
def row_totals(row_sums):
    """(storage depth sum, max depth, rain depth, loss depth, round-off added, boundary in, out, max not deep)."""
    s_h = s_rain = s_loss = s_neg = v_in = v_out = 0.0
    m_h = m_shallow = 0.0
    for r in range(row_sums.shape[0]):
        s_h += row_sums[r, ROW_STORAGE]
        m_h = max(m_h, row_sums[r, ROW_MAX])
        s_rain += row_sums[r, ROW_RAIN]
        s_loss += row_sums[r, ROW_LOSS]
        s_neg += row_sums[r, ROW_NEG]
        v_in += row_sums[r, ROW_IN]
        v_out += row_sums[r, ROW_OUT]
        m_shallow = max(m_shallow, row_sums[r, ROW_SHALLOW])
    return s_h, m_h, s_rain, s_loss, s_neg, v_in, v_out, m_shallow


# --- local time stepping of deep cells ---------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _mark_deep_boundary(flags, z, bkind, bstage, k, r, c, h_split):
    """A stage deeper than ``h_split`` over an active edge cell sub-cycles it; returns the ghost depth left coarse."""
    if bkind[k] != STAGE or (flags[r, c] & ACTIVE) == 0:
        return 0.0
    ghost = bstage[k] - z[r, c]
    if ghost > h_split:
        flags[r, c] |= SUBCYCLED
        return 0.0
    return ghost if (flags[r, c] & SUBCYCLED) == 0 else 0.0


@numba.njit(cache=True)
def _mark_boundaries(flags, z, bkind, bstage, h_split):
    ny, nx = flags.shape
    ghost = 0.0
    for r in range(ny):
        ghost = max(ghost, _mark_deep_boundary(flags, z, bkind, bstage, r, r, 0, h_split))
        ghost = max(ghost, _mark_deep_boundary(flags, z, bkind, bstage, ny + r, r, nx - 1, h_split))
    for c in range(nx):
        ghost = max(ghost, _mark_deep_boundary(flags, z, bkind, bstage, 2 * ny + c, 0, c, h_split))
        ghost = max(ghost, _mark_deep_boundary(flags, z, bkind, bstage, 2 * ny + nx + c, ny - 1, c, h_split))
    return ghost


@numba.njit(cache=True, inline="always")
def _add_fine_cell(flags, r, c, cells, n):
    if (flags[r, c] & ACTIVE) != 0 and (flags[r, c] & FINE) == 0:
        flags[r, c] |= FINE
        cells[n, 0] = r
        cells[n, 1] = c
        return n + 1
    return n


@numba.njit(cache=True)
def _is_deep(flags, r, c):
    ny, nx = flags.shape
    return 0 <= r < ny and 0 <= c < nx and (flags[r, c] & SUBCYCLED) != 0


@numba.njit(cache=True)
def _fine_mask(flags, r, c):
    """Which faces of a FINE cell are sub-cycled: 1 west, 2 east, 4 north, 8 south."""
    me = _is_deep(flags, r, c)
    mask = 0
    if me or _is_deep(flags, r, c - 1):
        mask |= 1
    if me or _is_deep(flags, r, c + 1):
        mask |= 2
    if me or _is_deep(flags, r - 1, c):
        mask |= 4
    if me or _is_deep(flags, r + 1, c):
        mask |= 8
    return mask


@numba.njit(cache=True)
def mark_deep_boundaries(flags, z, bkind, bstage, h_split):
    """Mark edge cells under a stage deeper than ``h_split`` SUBCYCLED; returns the largest stage depth
    over the edge cells left in the main step."""
    return _mark_boundaries(flags, z, bkind, bstage, h_split)


@numba.njit(cache=True, error_model="numpy")
def same_deep_cells(flags, deep):
    """Whether the SUBCYCLED cells of ``flags`` are those recorded in ``deep``; records them if not."""
    ny, nx = flags.shape
    n_changed = 0
    for r in range(ny):
        for c in range(nx):
            n_changed += (flags[r, c] & SUBCYCLED) != deep[r, c]
    if n_changed > 0:
        for r in range(ny):
            for c in range(nx):
                deep[r, c] = flags[r, c] & SUBCYCLED
    return n_changed == 0


@numba.njit(cache=True)
def mark_fine(flags, cells):
    """Mark the listed cells FINE (the flags of a step whose SUBCYCLED cells are those of the list)."""
    for i in range(cells.shape[0]):
        flags[cells[i, 0], cells[i, 1]] |= FINE


@numba.njit(cache=True)
def subcycle_sets(flags):
    """List the sub-cycled faces (those of SUBCYCLED cells) and mark and list the FINE cells.

    Returns (x-faces (n, 2), y-faces (n, 2) as (row, col), cells (n, 3) as (row, col, mask of
    sub-cycled faces)). Faces and cells are listed once.
    """
    ny, nx = flags.shape
    n_deep = 0
    for r in range(ny):
        for c in range(nx):
            if flags[r, c] & SUBCYCLED:
                n_deep += 1
    xf = np.empty((2 * n_deep, 2), dtype=np.int64)
    yf = np.empty((2 * n_deep, 2), dtype=np.int64)
    cells = np.empty((5 * n_deep, 3), dtype=np.int64)
    counts = np.zeros(3, dtype=np.int64)
    for r in range(ny):
        for c in range(nx):
            if flags[r, c] & SUBCYCLED:
                _list_deep_cell(flags, r, c, xf, yf, cells, counts)
    for i in range(counts[2]):
        cells[i, 2] = _fine_mask(flags, cells[i, 0], cells[i, 1])
    return xf[:counts[0]], yf[:counts[1]], cells[:counts[2]]


@numba.njit(cache=True)
def _list_deep_cell(flags, r, c, xf, yf, cells, counts):
    """The faces of deep cell (r, c) and the cells around it; ``counts``: x-faces, y-faces, cells so far."""
    ny, nx = flags.shape
    # each face once: the left/top faces of a deep cell, its right/bottom ones unless that neighbour is deep
    xf[counts[0], 0], xf[counts[0], 1] = r, c
    counts[0] += 1
    if c == nx - 1 or (flags[r, c + 1] & SUBCYCLED) == 0:
        xf[counts[0], 0], xf[counts[0], 1] = r, c + 1
        counts[0] += 1
    if r == 0 or (flags[r - 1, c] & SUBCYCLED) == 0:
        yf[counts[1], 0], yf[counts[1], 1] = r, c
        counts[1] += 1
    yf[counts[1], 0], yf[counts[1], 1] = r + 1, c
    counts[1] += 1
    n = _add_fine_cell(flags, r, c, cells, counts[2])
    if c > 0:
        n = _add_fine_cell(flags, r, c - 1, cells, n)
    if c < nx - 1:
        n = _add_fine_cell(flags, r, c + 1, cells, n)
    if r > 0:
        n = _add_fine_cell(flags, r - 1, c, cells, n)
    if r < ny - 1:
        n = _add_fine_cell(flags, r + 1, c, cells, n)
    counts[2] = n


@numba.njit(cache=True)
def _fine_momentum_x(h, z, flags, qx, xf, xq, n2x, bkind, bstage, gdt, gdt_dx, theta, c_side, h_min, g, fr2g):
    ny, nx = h.shape
    for i in range(xf.shape[0]):
        r, c = xf[i, 0], xf[i, 1]
        q = 0.0
        if c == 0 or c == nx:
            cell = 0 if c == 0 else nx - 1
            k = r if c == 0 else ny + r
            if flags[r, cell] & ACTIVE:
                q = _boundary_flux(bkind[k], bstage[k], h[r, cell], z[r, cell], qx[r, c], -1.0 if c == 0 else 1.0,
                                   gdt, gdt_dx, n2x[r, c], h_min, g, fr2g)
        elif flags[r, c - 1] & flags[r, c] & ACTIVE:
            q = _interior_flux(z[r, c - 1], z[r, c], h[r, c - 1], h[r, c], qx[r, c], qx[r, c - 1], qx[r, c + 1],
                               n2x[r, c], gdt, gdt_dx, theta, c_side, h_min, fr2g)
        xq[i] = q


@numba.njit(cache=True)
def _fine_momentum_y(h, z, flags, qy, yf, yq, n2y, bkind, bstage, gdt, gdt_dx, theta, c_side, h_min, g, fr2g):
    ny, nx = h.shape
    for i in range(yf.shape[0]):
        r, c = yf[i, 0], yf[i, 1]
        q = 0.0
        if r == 0 or r == ny:
            cell = 0 if r == 0 else ny - 1
            k = 2 * ny + c if r == 0 else 2 * ny + nx + c
            if flags[cell, c] & ACTIVE:
                q = _boundary_flux(bkind[k], bstage[k], h[cell, c], z[cell, c], qy[r, c], -1.0 if r == 0 else 1.0,
                                   gdt, gdt_dx, n2y[r, c], h_min, g, fr2g)
        elif flags[r - 1, c] & flags[r, c] & ACTIVE:
            q = _interior_flux(z[r - 1, c], z[r, c], h[r - 1, c], h[r, c], qy[r, c], qy[r - 1, c], qy[r + 1, c],
                               n2y[r, c], gdt, gdt_dx, theta, c_side, h_min, fr2g)
        yq[i] = q


@numba.njit(cache=True)
def _fine_factors(h, qx, qy, cells, factor, k):
    """Outflow limiter factors of the FINE cells over their sub-cycled faces; returns the count below 1."""
    n_limited = 0
    for i in range(cells.shape[0]):
        r, c, mask = cells[i, 0], cells[i, 1], cells[i, 2]
        out = 0.0
        if mask & 1:
            out += max(0.0, -qx[r, c])
        if mask & 2:
            out += max(0.0, qx[r, c + 1])
        if mask & 4:
            out += max(0.0, -qy[r, c])
        if mask & 8:
            out += max(0.0, qy[r + 1, c])
        out *= k
        if out > h[r, c]:
            factor[r, c] = h[r, c] / out
            n_limited += 1
        else:
            factor[r, c] = 1.0
    return n_limited


@numba.njit(cache=True)
def _fine_limit_faces(faces, q_state, factor, along_rows, limited):
    """Scale the listed faces by the factor of the cell they leave; returns (in, out) through grid edges."""
    ny, nx = factor.shape
    last = nx if along_rows else ny
    vin = 0.0
    vout = 0.0
    for i in range(faces.shape[0]):
        r, c = faces[i, 0], faces[i, 1]
        q = q_state[r, c]
        if limited:
            if along_rows:
                q = _limited(q, factor[r, max(c - 1, 0)], factor[r, min(c, nx - 1)], c > 0, c < nx)
            else:
                q = _limited(q, factor[max(r - 1, 0), c], factor[min(r, ny - 1), c], r > 0, r < ny)
            q_state[r, c] = q
        j = c if along_rows else r
        if j == 0 or j == last:
            sign = 1.0 if j == 0 else -1.0
            vin += max(0.0, sign * q)
            vout += max(0.0, -sign * q)
    return vin, vout


@numba.njit(cache=True)
def subcycle_step(h, z, flags, qx, qy, xf, yf, cells, xq, yq, factor, n2x, n2y, bkind, bstage, dt, dx, theta, h_min,
                  g, fr_max):
    """One sub-step of ``dt`` on the sub-cycled faces and their FINE cells (the rest of the grid is held).

    Same scheme as the main step: momentum (theta scheme, friction, Froude limit) with all new
    values from the old ones, an outflow limiter over the sub-cycled faces of each FINE cell, depth
    update. Returns (boundary volume in, volume out, round-off added back (depth sum), limited cells).
    """
    gdt = g * dt
    gdt_dx = gdt / dx
    c_side = 0.5 * (1.0 - theta)
    fr2g = fr_max * fr_max * g
    _fine_momentum_x(h, z, flags, qx, xf, xq, n2x, bkind, bstage, gdt, gdt_dx, theta, c_side, h_min, g, fr2g)
    _fine_momentum_y(h, z, flags, qy, yf, yq, n2y, bkind, bstage, gdt, gdt_dx, theta, c_side, h_min, g, fr2g)
    for i in range(xf.shape[0]):
        qx[xf[i, 0], xf[i, 1]] = xq[i]
    for i in range(yf.shape[0]):
        qy[yf[i, 0], yf[i, 1]] = yq[i]
    k = dt / dx
    n_limited = _fine_factors(h, qx, qy, cells, factor, k)
    x_in, x_out = _fine_limit_faces(xf, qx, factor, True, n_limited > 0)
    y_in, y_out = _fine_limit_faces(yf, qy, factor, False, n_limited > 0)
    neg = 0.0
    for i in range(cells.shape[0]):
        r, c, mask = cells[i, 0], cells[i, 1], cells[i, 2]
        net = 0.0
        if mask & 1:
            net += qx[r, c]
        if mask & 2:
            net -= qx[r, c + 1]
        if mask & 4:
            net += qy[r, c]
        if mask & 8:
            net -= qy[r + 1, c]
        hn = h[r, c] + k * net
        if hn < 0.0:
            neg -= hn
            hn = 0.0
        h[r, c] = hn
    return (x_in + y_in) * dt * dx, (x_out + y_out) * dt * dx, neg, n_limited


@numba.njit(cache=True)
def subcycle_steps(h, z, flags, qx, qy, xf, yf, cells, xq, yq, factor, n2x, n2y, bkind, stages, dt, dx, theta,
                   h_min, g, fr_max):
    """``stages.shape[0]`` sub-steps of ``dt`` (:func:`subcycle_step`), sub-step i with boundary stages ``stages[i]``.

    Returns the sums of their (volume in, volume out, round-off added, limited cells).
    """
    v_in = v_out = neg = 0.0
    n_limited = 0
    for i in range(stages.shape[0]):
        a, b, c, d = subcycle_step(h, z, flags, qx, qy, xf, yf, cells, xq, yq, factor, n2x, n2y, bkind, stages[i],
                                   dt, dx, theta, h_min, g, fr_max)
        v_in += a
        v_out += b
        neg += c
        n_limited += d
    return v_in, v_out, neg, n_limited


@numba.njit(cache=True)
def fine_statistics(h, flags, qx, qy, cells, t, dt, stat_depths, max_depth, max_speed, max_dv, max_hr, arrival,
                    duration):
    """Statistics of the FINE cells once their sub-cycled faces are final (rows spanned by the list)."""
    ny, nx = h.shape
    lo = np.full(ny, nx, dtype=np.int64)
    hi = np.full(ny, -1, dtype=np.int64)
    for i in range(cells.shape[0]):
        r, c = cells[i, 0], cells[i, 1]
        lo[r] = min(lo[r], c)
        hi[r] = max(hi[r], c)
    for r in range(ny):
        if hi[r] >= lo[r]:
            _row_statistics(r, lo[r], hi[r] + 1, True, h, flags, qx, qy, t, dt, stat_depths,
                            max_depth, max_speed, max_dv, max_hr, arrival, duration)


def cell_velocity(h, qx, qy, vel_depth=0.01):
    """Cell-centred velocity components (u along columns, v along rows), zero where shallower than vel_depth."""
    qu = 0.5 * (qx[:, :-1] + qx[:, 1:])
    qv = 0.5 * (qy[:-1, :] + qy[1:, :])
    wet = h > vel_depth
    u = np.where(wet, qu / np.where(wet, h, 1.0), 0.0)
    v = np.where(wet, qv / np.where(wet, h, 1.0), 0.0)
    return u, v
