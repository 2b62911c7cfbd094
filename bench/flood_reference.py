"""The flood kernels as they were before the fused parallel kernels (commit b5fb44d): the baseline of
``bench/flood_solver.py``, measured in the same run. Not used by the server.

:func:`reference_run` drives them like the solver did then (one thread, the canal's CFL step for the
whole grid, statistics in a separate pass).
"""

from __future__ import annotations

import numba
import numpy as np

CLOSED = 0
OPEN = 1
STAGE = 2


@numba.njit(cache=True, inline="always")
def _face_flux(q0, q_before, q_after, hf, deta, dt, dx, n2, theta, g, fr_max):
    """de Almeida et al. (2012) eq. 13 with the friction of Bates et al. (2010), Froude-limited."""
    q_avg = theta * q0 + 0.5 * (1.0 - theta) * (q_before + q_after)
    friction = n2 * abs(q0)
    if friction > 0.0:
        # hf^(7/3) as hf^2 * cbrt(hf): pow() is the costliest operation of the step
        q = (q_avg - g * hf * dt * deta / dx) / (1.0 + g * dt * friction / (hf * hf * np.cbrt(hf)))
    else:
        q = q_avg - g * hf * dt * deta / dx
    if fr_max > 0.0:
        q_lim = fr_max * hf * np.sqrt(g * hf)
        if q > q_lim:
            q = q_lim
        elif q < -q_lim:
            q = -q_lim
    return q


@numba.njit(cache=True, inline="always")
def _boundary_flux(kind, stage, h_i, z_i, active_i, q0, out_sign, dt, dx, n2, h_min, g, fr_max):
    """Discharge through a boundary face (positive along the axis, like the interior faces).

    STAGE: a ghost cell beyond the face with water level ``stage`` over the same bed; water may
    enter or leave. A stage below the bed, and OPEN faces, let water leave at critical depth
    (h_c = 2/3 h, q = h_c sqrt(g h_c)), never enter.
    """
    if kind == CLOSED or active_i == 0:
        return 0.0
    if kind == STAGE and stage > z_i:
        eta_i = z_i + h_i
        hf = max(eta_i, stage) - z_i
        if hf <= h_min:
            return 0.0
        deta = (stage - eta_i) * out_sign
        return _face_flux(q0, q0, q0, hf, deta, dt, dx, n2, 1.0, g, fr_max)
    if h_i <= h_min:
        return 0.0
    hc = h_i * (2.0 / 3.0)
    return out_sign * hc * np.sqrt(g * hc)


@numba.njit(cache=True)
def momentum(h, z, active, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min, g, fr_max):
    """New face discharges from the current depths (explicit in h, semi-implicit friction)."""
    momentum_x(h, z, active, qx, qx_new, n2x, bkind, bstage, dt, dx, theta, h_min, g, fr_max)
    momentum_y(h, z, active, qy, qy_new, n2y, bkind, bstage, dt, dx, theta, h_min, g, fr_max)


@numba.njit(cache=True)
def momentum_x(h, z, active, qx, qx_new, n2x, bkind, bstage, dt, dx, theta, h_min, g, fr_max):
    ny, nx = h.shape
    for r in range(ny):
        qx_new[r, 0] = _boundary_flux(bkind[r], bstage[r], h[r, 0], z[r, 0], active[r, 0], qx[r, 0],
                                      -1.0, dt, dx, n2x[r, 0], h_min, g, fr_max)
        qx_new[r, nx] = _boundary_flux(bkind[ny + r], bstage[ny + r], h[r, nx - 1], z[r, nx - 1],
                                       active[r, nx - 1], qx[r, nx], 1.0, dt, dx, n2x[r, nx], h_min, g, fr_max)
        for c in range(1, nx):
            zi = z[r, c - 1]
            zj = z[r, c]
            eta_i = zi + h[r, c - 1]
            eta_j = zj + h[r, c]
            hf = max(eta_i, eta_j) - max(zi, zj)
            if hf <= h_min or active[r, c - 1] == 0 or active[r, c] == 0:
                qx_new[r, c] = 0.0
            else:
                qx_new[r, c] = _face_flux(qx[r, c], qx[r, c - 1], qx[r, c + 1], hf, eta_j - eta_i, dt, dx,
                                          n2x[r, c], theta, g, fr_max)


@numba.njit(cache=True)
def momentum_y(h, z, active, qy, qy_new, n2y, bkind, bstage, dt, dx, theta, h_min, g, fr_max):
    ny, nx = h.shape
    for c in range(nx):
        k = 2 * ny + c
        qy_new[0, c] = _boundary_flux(bkind[k], bstage[k], h[0, c], z[0, c], active[0, c], qy[0, c],
                                      -1.0, dt, dx, n2y[0, c], h_min, g, fr_max)
        k = 2 * ny + nx + c
        qy_new[ny, c] = _boundary_flux(bkind[k], bstage[k], h[ny - 1, c], z[ny - 1, c], active[ny - 1, c],
                                       qy[ny, c], 1.0, dt, dx, n2y[ny, c], h_min, g, fr_max)
    for r in range(1, ny):
        for c in range(nx):
            zi = z[r - 1, c]
            zj = z[r, c]
            eta_i = zi + h[r - 1, c]
            eta_j = zj + h[r, c]
            hf = max(eta_i, eta_j) - max(zi, zj)
            if hf <= h_min or active[r - 1, c] == 0 or active[r, c] == 0:
                qy_new[r, c] = 0.0
            else:
                qy_new[r, c] = _face_flux(qy[r, c], qy[r - 1, c], qy[r + 1, c], hf, eta_j - eta_i, dt, dx,
                                          n2y[r, c], theta, g, fr_max)


@numba.njit(cache=True)
def outflow_factors(h, qx, qy, dt, dx, factor):
    """Per cell, the fraction (<= 1) of its outflow it can supply from its depth; returns the count below 1."""
    ny, nx = h.shape
    limited = np.zeros(ny, dtype=np.int64)
    k = dt / dx
    for r in range(ny):
        n = 0
        for c in range(nx):
            out = (max(0.0, -qx[r, c]) + max(0.0, qx[r, c + 1]) + max(0.0, -qy[r, c]) + max(0.0, qy[r + 1, c])) * k
            if out > h[r, c]:
                factor[r, c] = h[r, c] / out
                n += 1
            else:
                factor[r, c] = 1.0
        limited[r] = n
    return limited.sum()


@numba.njit(cache=True)
def limit_outflow(qx, qy, factor):
    """Scale every face discharge by the factor of the cell it leaves (boundary inflow is unlimited)."""
    ny, nx = factor.shape
    for r in range(ny):
        for c in range(nx + 1):
            q = qx[r, c]
            if q > 0.0 and c > 0:
                qx[r, c] = q * factor[r, c - 1]
            elif q < 0.0 and c < nx:
                qx[r, c] = q * factor[r, c]
    for r in range(ny + 1):
        for c in range(nx):
            q = qy[r, c]
            if q > 0.0 and r > 0:
                qy[r, c] = q * factor[r - 1, c]
            elif q < 0.0 and r < ny:
                qy[r, c] = q * factor[r, c]


@numba.njit(cache=True)
def boundary_volumes(qx, qy, dt, dx):
    """(volume in, volume out) through the four domain edges during the step."""
    ny = qx.shape[0]
    nx = qy.shape[1]
    vin = 0.0
    vout = 0.0
    for r in range(ny):
        w = qx[r, 0]
        e = qx[r, nx]
        vin += max(0.0, w) + max(0.0, -e)
        vout += max(0.0, -w) + max(0.0, e)
    for c in range(nx):
        n = qy[0, c]
        s = qy[ny, c]
        vin += max(0.0, n) + max(0.0, -s)
        vout += max(0.0, -n) + max(0.0, s)
    return vin * dt * dx, vout * dt * dx


@numba.njit(cache=True)
def continuity(h, active, qx, qy, dt, dx, rain_depth, rain_pattern, loss_initial, loss_rate, row_sums):
    """Depth update; rain minus initial/continuing losses (rainfall-excess model) on active cells.

    ``row_sums[r]`` receives (storage depth sum, max depth, rain depth, loss depth, negative
    round-off added back) of row r, so the caller can close the mass balance exactly.
    """
    ny, nx = h.shape
    k = dt / dx
    for r in range(ny):
        s_h = 0.0
        m_h = 0.0
        s_rain = 0.0
        s_loss = 0.0
        s_neg = 0.0
        for c in range(nx):
            if active[r, c] == 0:
                continue
            hn = h[r, c] + k * (qx[r, c] - qx[r, c + 1] + qy[r, c] - qy[r + 1, c])
            if rain_depth > 0.0:
                rain = rain_depth * rain_pattern[r, c]
                il = min(rain, loss_initial[r, c])
                loss_initial[r, c] -= il
                cl = min(rain - il, loss_rate[r, c] * dt)
                hn += rain - il - cl
                s_rain += rain
                s_loss += il + cl
            if hn < 0.0:
                # only round-off can get here (outflow is limited to the depth); reported, not hidden
                s_neg -= hn
                hn = 0.0
            h[r, c] = hn
            s_h += hn
            if hn > m_h:
                m_h = hn
        row_sums[r, 0] = s_h
        row_sums[r, 1] = m_h
        row_sums[r, 2] = s_rain
        row_sums[r, 3] = s_loss
        row_sums[r, 4] = s_neg


@numba.njit(cache=True)
def update_statistics(h, qx, qy, t, vel_depth, arrival_depth, duration_depth, dt,
                      max_depth, max_speed, max_dv, max_hr, arrival, duration):
    """Running maxima (depth, speed, depth*speed, depth*(speed+0.5)), arrival time and time above a depth."""
    ny, nx = h.shape
    for r in range(ny):
        for c in range(nx):
            d = h[r, c]
            if d > max_depth[r, c]:
                max_depth[r, c] = d
            if d > duration_depth:
                duration[r, c] += dt
            if d > arrival_depth and arrival[r, c] < 0.0:
                arrival[r, c] = t
            if d > vel_depth:
                u = 0.5 * (qx[r, c] + qx[r, c + 1]) / d
                v = 0.5 * (qy[r, c] + qy[r + 1, c]) / d
                s = np.sqrt(u * u + v * v)
                if s > max_speed[r, c]:
                    max_speed[r, c] = s
                if d * s > max_dv[r, c]:
                    max_dv[r, c] = d * s
                if d * (s + 0.5) > max_hr[r, c]:
                    max_hr[r, c] = d * (s + 0.5)
            elif d * 0.5 > max_hr[r, c]:
                max_hr[r, c] = d * 0.5


def cell_velocity(h, qx, qy, vel_depth=0.01):
    """Cell-centred velocity components (u along columns, v along rows), zero where shallower than vel_depth."""
    qu = 0.5 * (qx[:, :-1] + qx[:, 1:])
    qv = 0.5 * (qy[:-1, :] + qy[1:, :])
    wet = h > vel_depth
    u = np.where(wet, qu / np.where(wet, h, 1.0), 0.0)
    v = np.where(wet, qv / np.where(wet, h, 1.0), 0.0)
    return u, v


@numba.njit(cache=True)
def step(h, z, active, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, factor, dt, dx, theta, h_min, g, fr_max,
         rain_depth, rain_pattern, loss_initial, loss_rate, row_sums):
    """One full step in one call (the Python driver's overhead matters on small grids).

    The new discharges are left in ``qx_new``/``qy_new`` (the caller swaps the buffers).
    Returns (storage depth sum, max depth, rain depth sum, loss depth sum, round-off added,
    boundary volume in, boundary volume out, cells whose outflow was limited).
    """
    momentum(h, z, active, qx, qy, qx_new, qy_new, n2x, n2y, bkind, bstage, dt, dx, theta, h_min, g, fr_max)
    n_limited = outflow_factors(h, qx_new, qy_new, dt, dx, factor)
    if n_limited > 0:
        limit_outflow(qx_new, qy_new, factor)
    v_in, v_out = boundary_volumes(qx_new, qy_new, dt, dx)
    continuity(h, active, qx_new, qy_new, dt, dx, rain_depth, rain_pattern, loss_initial, loss_rate, row_sums)
    s_h = 0.0
    m_h = 0.0
    s_rain = 0.0
    s_loss = 0.0
    s_neg = 0.0
    for r in range(row_sums.shape[0]):
        s_h += row_sums[r, 0]
        m_h = max(m_h, row_sums[r, 1])
        s_rain += row_sums[r, 2]
        s_loss += row_sums[r, 3]
        s_neg += row_sums[r, 4]
    return s_h, m_h, s_rain, s_loss, s_neg, v_in, v_out, n_limited


def reference_run(sim, until: float) -> int:
    """Advance a fresh :class:`flood.solver.Simulation` to ``until`` s with these kernels; returns the steps."""
    import math

    p = sim.params
    dx = sim.domain.dx
    ny, nx = sim.domain.shape
    h, qx, qy = sim.h, sim.qx, sim.qy
    qx_new, qy_new = np.zeros_like(qx), np.zeros_like(qy)
    factor = np.ones((ny, nx))
    row_sums = np.zeros((ny, 5))
    h_max = float(h.max())
    steps = 0
    while sim.t < until - 1e-9:
        h_all = max(h_max, sim._stage_depth_max(sim.t), p.h_min)
        dt = min(p.alpha * dx / math.sqrt(p.g * h_all), p.dt_max, until - sim.t)
        rain = sim.forcing.rain.depth_m(sim.t, sim.t + dt) if sim.forcing.rain is not None else 0.0
        out = step(h, sim.domain.z, sim.active, qx, qy, qx_new, qy_new, sim._n2x, sim._n2y, sim._bkind,
                   sim._bstage, factor, dt, dx, p.theta, p.h_min, p.g, p.froude_max, rain, sim._rain_pattern,
                   sim._loss_initial, sim._loss_rate, row_sums)
        h_max = out[1]
        qx, qx_new = qx_new, qx
        qy, qy_new = qy_new, qy
        sim.t += dt
        steps += 1
        update_statistics(h, qx, qy, sim.t, p.vel_depth, p.arrival_depth, p.duration_depth, dt, sim.max_depth,
                          sim.max_speed, sim.max_dv, sim.max_hr, sim.arrival, sim.duration)
    sim.qx, sim.qy = qx, qy
    return steps
