"""Kernel details that the verification cases do not pin down: the vectorizable cube root, and the
statistics taken every ``SolverParams.stats_interval`` instead of every step."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from flood import kernels
from flood.errors import InvalidScenario
from flood.solver import SolverParams
from tests.flood.test_subcycling import _design


@numba.njit
def _cube_roots(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = kernels._cbrt(x[i])
    return out


def test_cube_root_agrees_with_libm_to_round_off():
    # face depths span h_min (1e-6 in the dam-break tests) to tens of metres
    rng = np.random.default_rng(11)
    x = np.concatenate([np.logspace(-7, 4, 20_001), 10 ** rng.uniform(-7, 4, 200_000), [1e-3, 1.0, 8.0, 27.0]])
    ours = _cube_roots(x)
    exact = np.cbrt(x)
    # measured: 9.7e-16 at most, i.e. a few units in the last place
    assert np.max(np.abs(ours - exact) / exact) < 2e-15


@pytest.fixture(scope="module")
def every_step_and_sampled():
    runs = {}
    for interval in (0.0, 5.0):
        sim = _design(60, SolverParams(stats_interval=interval))
        sim.run(900.0, snapshot_times=[450.0])
        runs[interval] = sim
    return runs[0.0], runs[5.0]


def test_sampled_statistics_leave_the_flow_unchanged(every_step_and_sampled):
    every, sampled = every_step_and_sampled
    assert every.steps == sampled.steps and every.substeps == sampled.substeps
    for name in ("h", "qx", "qy"):
        assert np.array_equal(getattr(every, name), getattr(sampled, name)), name
    assert every.mass.as_dict() == sampled.mass.as_dict()


def test_sampled_maxima_are_maxima_over_a_subset_of_the_steps(every_step_and_sampled):
    every, sampled = every_step_and_sampled
    wet = every.max_depth > 0.01
    assert wet.sum() > 500
    for name in ("max_depth", "max_speed", "max_dv", "max_hr"):
        a, b = getattr(every, name), getattr(sampled, name)
        assert np.all(b <= a), name
        # a step lasts ~0.3-1 s here: sampling every 5 s misses little of a slowly rising flood
        assert np.mean((a - b)[wet]) <= 0.02 * np.mean(a[wet]), name
    # the last step of the run is always sampled
    assert np.array_equal(sampled.max_depth >= sampled.h, np.ones_like(wet))


def test_sampled_arrival_and_duration_are_within_one_interval(every_step_and_sampled):
    every, sampled = every_step_and_sampled
    interval = sampled.params.stats_interval
    arrived = sampled.arrival >= 0
    assert arrived.sum() > 100
    assert np.all(every.arrival[arrived] >= 0)
    late = sampled.arrival[arrived] - every.arrival[arrived]
    assert late.min() >= 0.0
    # at most one interval and a step late (a cell that stays above the depth once it is reached)
    assert np.quantile(late, 0.99) <= interval + every.params.dt_max
    wet = (every.duration > 0) | (sampled.duration > 0)
    diff = np.abs(sampled.duration - every.duration)[wet]
    assert np.quantile(diff, 0.99) <= interval + every.params.dt_max


def test_statistics_interval_is_validated():
    with pytest.raises(InvalidScenario):
        SolverParams(stats_interval=-1.0)
    with pytest.raises(InvalidScenario):
        SolverParams(stats_interval=float("inf"))
