"""SMRF ground classification on real urban ALS, its kernels, and the accuracy measures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lidar.evaluate import cohen_kappa, detection_f1, ground_accuracy
from lidar.ground import GROUND, HIGH_NOISE, LOW_NOISE, SMRFParams, classify_ground
from lidar.inpaint import fill_missing
from lidar.morphology import dilate_disk, erode_disk, open_disk


def _classify(pc, params=None):
    return classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns, params=params)


def test_smrf_on_ahn3_delft_meets_targets(ahn3_points):
    """Scored against AHN3 vendor classes (2 ground vs 1/6/26), water excluded.

    Reached: total error 1.59 %, kappa 0.967 (Type I 0.81 %, Type II 2.16 %); the targets of
    issue 3 are 2.5 % and 0.94. The bounds below sit just above what we reach, so a regression fails.
    """
    acc = ground_accuracy(_classify(ahn3_points).ground, ahn3_points.classification)
    assert acc.n == 208_432 - 568
    assert acc.total_error <= 0.0165
    assert acc.kappa >= 0.966
    assert acc.type1 <= 0.0085 and acc.type2 <= 0.0225


def test_published_smrf_parameters_are_worse_here(ahn3_points):
    """Pingel's published optimum still passes the issue's TE bound but not the tuned figures."""
    acc = ground_accuracy(_classify(ahn3_points, SMRFParams.pingel_2013()).ground, ahn3_points.classification)
    assert 0.02 < acc.total_error < 0.03 and 0.94 < acc.kappa < 0.95


def test_noise_and_low_outliers(ahn3_points):
    pc = ahn3_points
    rng = np.random.default_rng(7)
    ground_idx = np.flatnonzero(pc.classification == 2)
    pick = rng.choice(ground_idx, 60, replace=False)
    x = np.concatenate([pc.x, pc.x[pick[:30]] + 0.3, pc.x[pick[30:]] - 0.3])
    y = np.concatenate([pc.y, pc.y[pick[:30]], pc.y[pick[30:]]])
    # multipath low outliers 8 m under the street, birds 300 m above it
    z = np.concatenate([pc.z, pc.z[pick[:30]] - 8.0, pc.z[pick[30:]] + 300.0])
    ones = np.ones(60, np.uint8)
    rn = np.concatenate([pc.return_number, ones])
    nr = np.concatenate([pc.number_of_returns, ones])
    result = classify_ground(x, y, z, rn, nr)
    n = len(pc)
    assert np.all(result.classification[n:n + 30] == LOW_NOISE)
    assert np.all(result.classification[n + 30:] == HIGH_NOISE)
    # the outliers do not disturb the rest
    acc = ground_accuracy(result.classification[:n] == GROUND, pc.classification)
    assert acc.total_error <= 0.0165


def test_ground_needs_last_returns(ahn3_points):
    result = _classify(ahn3_points)
    first_of_many = ahn3_points.return_number < ahn3_points.number_of_returns
    assert not np.any(result.ground & first_of_many)


@pytest.mark.parametrize("radius", [1, 2, 5, 9])
def test_disk_morphology_equals_scipy(radius):
    z = np.random.default_rng(radius).normal(size=(41, 57))
    yy, xx = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    disk = xx * xx + yy * yy <= radius * radius
    np.testing.assert_array_equal(
        erode_disk(z, radius), ndimage.grey_erosion(z, footprint=disk, mode="constant", cval=np.inf))
    np.testing.assert_array_equal(
        dilate_disk(z, radius), ndimage.grey_dilation(z, footprint=disk, mode="constant", cval=-np.inf))
    assert np.all(open_disk(z, radius) <= z)


def test_membrane_inpainting_reproduces_a_plane():
    yy, xx = np.mgrid[0:200, 0:300]
    plane = 0.1 * xx - 0.05 * yy + 3.0
    hole = np.zeros(plane.shape, dtype=bool)
    hole[40:160, 50:250] = True  # a 120 x 200 cell hole, bigger than any building
    filled = fill_missing(np.where(hole, np.nan, plane))
    assert np.abs(filled - plane).max() < 0.002


def test_accuracy_measures():
    ref = np.array([2, 2, 2, 2, 1, 1, 6, 6, 9, 7])
    pred = np.array([1, 1, 1, 0, 1, 0, 0, 0, 1, 0], dtype=bool)
    acc = ground_accuracy(pred, ref)
    assert (acc.n, acc.ground_as_object, acc.object_as_ground) == (8, 1, 1)
    assert acc.type1 == 0.25 and acc.type2 == 0.25 and acc.total_error == 0.25
    assert acc.kappa == pytest.approx(0.5)
    assert cohen_kappa(pred[:8], ref[:8] == 2) == pytest.approx(0.5)
    f1 = detection_f1(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert f1.precision == 0.5 and f1.recall == 0.5 and f1.f1 == 0.5


def test_shared_openings_equal_separate_openings():
    from lidar.morphology import openings

    z = np.random.default_rng(11).normal(size=(60, 45))
    for radius, opened in zip(range(1, 10), openings(z, range(1, 10)), strict=True):
        np.testing.assert_array_equal(opened, open_disk(z, radius))


def test_smrf_without_classes_on_a_bridge_over_a_canal():
    """Without vendor classes: a deck 3 m above the terrain is an object to SMRF (narrower than its
    window), while the canal's water returns are ground (the documented limit: water is not
    recognised, only levelled where it returns)."""
    from tests.lidar.test_surfaces import _bridge_over_canal

    x, y, z, cls = _bridge_over_canal()
    ones = np.ones_like(cls)
    result = classify_ground(x, y, z, ones, ones)
    assert not np.any(result.ground[cls == 17])
    assert result.ground[cls == 9].mean() > 0.9
    acc = ground_accuracy(result.ground, np.where(cls == 9, 2, cls))
    assert acc.total_error < 0.01
