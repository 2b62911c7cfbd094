"""DTM/DSM/nDSM: TIN rasterisation, accuracy against the vendor DTM, COG output."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate
from scipy.interpolate import LinearNDInterpolator

from lidar.cog import write_cog
from lidar.dtm import build_dsm, build_dtm, build_surfaces, hillshade, tin_surface
from lidar.grid import GridSpec
from lidar.ground import classify_ground


def test_tin_rasterisation_matches_linear_interpolation():
    rng = np.random.default_rng(3)
    x = rng.uniform(1000, 1100, 3000)
    y = rng.uniform(5000, 5080, 3000)
    z = np.sin(x / 7.0) + np.cos(y / 5.0)
    grid = GridSpec.covering((1000, 5000, 1100, 5080), 0.5)
    ours = tin_surface(x, y, z, grid)
    # scipy's LinearNDInterpolator only as a reference on a small set (far too slow in production)
    xc = grid.x0 + (np.arange(grid.width) + 0.5) * grid.cell
    yc = grid.y1 - (np.arange(grid.height) + 0.5) * grid.cell
    ref = LinearNDInterpolator(np.column_stack([x, y]), z)(*np.meshgrid(xc, yc))
    both = np.isfinite(ref)
    assert np.array_equal(np.isfinite(ours), both)
    np.testing.assert_allclose(ours[both], ref[both], atol=1e-9)


def test_tin_reproduces_a_plane_and_fills_gaps():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 50, 500)
    y = rng.uniform(0, 50, 500)
    grid = GridSpec.covering((0, 0, 50, 50), 1.0)
    dtm, support = build_dtm(x, y, 0.02 * x - 0.01 * y + 1.5, grid)
    assert np.isfinite(dtm).all() and support.mean() > 0.9
    xc = grid.x0 + (np.arange(grid.width) + 0.5)
    yc = grid.y1 - (np.arange(grid.height) + 0.5)
    xx, yy = np.meshgrid(xc, yc)
    np.testing.assert_allclose(dtm[support], (0.02 * xx - 0.01 * yy + 1.5)[support], atol=1e-9)


@pytest.fixture(scope="module")
def delft_surfaces(ahn3_points):
    pc = ahn3_points
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 1.0)
    ours = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns).classification
    return (build_surfaces(pc.x, pc.y, pc.z, ours, pc.return_number, grid),
            build_surfaces(pc.x, pc.y, pc.z, pc.classification, pc.return_number, grid))


def test_dtm_against_vendor_ground_dtm(delft_surfaces, ahn3_points):
    """Our DTM vs the DTM from AHN3's own ground class (same TIN gridding).

    Reached: on cells holding vendor ground points, bias +0.0008 m and RMSE 0.029 m; over all
    TIN-supported cells (water and under-building gaps included) bias -0.013 m, RMSE 0.084 m.
    """
    ours, vendor = delft_surfaces
    both = ours.support & vendor.support
    diff = (ours.dtm - vendor.dtm)[both]
    assert both.mean() > 0.95
    assert abs(diff.mean()) < 0.02 and np.sqrt(np.mean(diff**2)) < 0.10
    pc = ahn3_points
    ground = pc.classification == 2
    rows, cols = ours.grid.cell_index(pc.x[ground], pc.y[ground])
    measured = np.zeros(ours.grid.shape, dtype=bool)
    measured[rows, cols] = True
    diff = (ours.dtm - vendor.dtm)[measured & both]
    assert abs(diff.mean()) < 0.005 and np.sqrt(np.mean(diff**2)) < 0.04


def test_dsm_ndsm_and_hillshade(delft_surfaces):
    ours, _ = delft_surfaces
    assert np.isfinite(ours.dsm).all() and np.all(ours.dsm >= ours.dtm)
    ndsm = ours.ndsm
    assert ndsm.min() == 0.0 and 15 < ndsm.max() < 30  # Delft roofs and trees
    shade = hillshade(ours.dtm, ours.grid.cell)
    assert shade.dtype == np.uint8 and shade.shape == ours.grid.shape and 150 < np.median(shade) < 200


def test_cog_with_overviews_and_crs(ahn3_points, tmp_path):
    pc = ahn3_points
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 0.5)
    dsm = build_dsm(pc.x, pc.y, pc.z, grid)
    path = write_cog(tmp_path / "dsm.tif", dsm, grid, 28992, description="DSM", vertical_datum="NAP")
    valid, errors, _warnings = cog_validate(str(path))
    assert valid, errors
    with rasterio.open(path) as ds:
        assert ds.crs.to_epsg() == 28992 and ds.res == (0.5, 0.5) and ds.nodata == -9999.0
        assert ds.overviews(1) == [2] and ds.tags()["VERTICAL_DATUM"] == "NAP"
        assert ds.descriptions == ("DSM",)
        np.testing.assert_allclose(ds.read(1), dsm.astype(np.float32))
        assert ds.bounds == pytest.approx(grid.bounds)
