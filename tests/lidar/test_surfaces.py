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
            # the vendor classes gridded the same way: water returns (9) and the deck (26) as non-ground
            build_surfaces(pc.x, pc.y, pc.z, pc.classification, pc.return_number, grid, water_classes=()))


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


# --- hydraulic DTM: water and bridges -------------------------------------------------------------

WATER_LEVEL, DECK_Z = -0.5, 3.0


def _terrain(x, y):
    """Gentle slope along x; a canal |y - 50| < 6 with vertical quay walls (top 1.0 + 0.005 x)."""
    return 1.0 + 0.005 * x


def _bridge_over_canal(seed=5):
    """100 x 100 m, 6 pts/m2: ground, a canal along x (40 % of water pulses return, class 9) and a
    bridge deck (class 17) 10 m wide (x 45-55) spanning y 38-62 at 3 m, with nothing under it."""
    rng = np.random.default_rng(seed)
    n = 60_000
    x, y = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    z = _terrain(x, y) + rng.normal(0, 0.02, n)
    cls = np.full(n, 2, np.uint8)
    canal = np.abs(y - 50) < 6
    z[canal] = WATER_LEVEL + rng.normal(0, 0.02, canal.sum())
    cls[canal] = 9
    deck = (x >= 45) & (x < 55) & (np.abs(y - 50) < 12)
    z[deck] = DECK_Z + rng.normal(0, 0.02, deck.sum())
    cls[deck] = 17
    keep = ~canal | deck | (rng.random(n) < 0.4)  # most water pulses never come back
    return x[keep], y[keep], z[keep], cls[keep]


def test_hydraulic_dtm_keeps_the_canal_open_under_a_bridge():
    x, y, z, cls = _bridge_over_canal()
    grid = GridSpec.covering((0, 0, 99.999, 99.999), 1.0)
    s = build_surfaces(x, y, z, cls, np.ones_like(cls), grid)
    xc, yc = np.meshgrid(grid.x0 + np.arange(grid.width) + 0.5, grid.y1 - np.arange(grid.height) - 0.5)
    under = (xc > 45) & (xc < 55)
    in_canal = np.abs(yc - 50) < 5
    on_bank = (np.abs(yc - 50) > 7) & (np.abs(yc - 50) < 11)
    # the DSM shows the deck, the DTM the canal and the banks under it
    assert np.all(np.abs(s.dsm[under & (np.abs(yc - 50) < 11)] - DECK_Z) < 0.1)
    np.testing.assert_allclose(s.dtm[under & in_canal], WATER_LEVEL, atol=0.08)
    np.testing.assert_allclose(s.dtm[under & on_bank], _terrain(xc, yc)[under & on_bank], atol=0.05)
    # the canal beside the bridge is one flagged water body at the water level, voids included
    assert s.water[in_canal & ~under].all() and not s.water[np.abs(yc - 50) > 7].any()
    np.testing.assert_allclose(s.dtm[in_canal], WATER_LEVEL, atol=0.08)  # lowest return per cell: noise
    assert s.bridge[under & on_bank].all() and not s.support[s.water | s.bridge].any()
    # the ground elsewhere is the TIN of the ground points
    dry = ~s.water & ~s.bridge & s.support
    assert np.abs(s.dtm[dry] - _terrain(xc, yc)[dry]).max() < 0.08
    # a flow path along the canal under the bridge: nowhere above the water level + 0.1 m
    canal_rows = s.dtm[np.abs(yc[:, 0] - 50) < 5]
    assert canal_rows.min(axis=0).max() < WATER_LEVEL + 0.1


def test_without_the_hydraulic_rules_the_bridge_dams_the_canal():
    """The same cloud with water and deck taken as ground (what a plain 'not ground' rule misses)."""
    x, y, z, cls = _bridge_over_canal()
    grid = GridSpec.covering((0, 0, 99.999, 99.999), 1.0)
    naive = build_surfaces(x, y, z, np.full_like(cls, 2), np.ones_like(cls), grid)
    xc, yc = np.meshgrid(grid.x0 + np.arange(grid.width) + 0.5, grid.y1 - np.arange(grid.height) - 0.5)
    # a 3 m dam across the canal (up to the TIN's slope at the deck's edges)
    assert naive.dtm[(np.abs(xc - 50) < 4) & (np.abs(yc - 50) < 5)].min() > WATER_LEVEL + 3.0


def test_dtm_cog_says_it_is_hydraulic(tmp_path):
    from lidar.dtm import HYDRAULIC_DTM_TAGS

    x, y, z, cls = _bridge_over_canal()
    grid = GridSpec.covering((0, 0, 99.999, 99.999), 1.0)
    s = build_surfaces(x, y, z, cls, np.ones_like(cls), grid)
    path = write_cog(tmp_path / "dtm.tif", s.dtm, grid, 32648, description="DTM", tags=HYDRAULIC_DTM_TAGS)
    with rasterio.open(path) as ds:
        assert ds.tags()["SURFACE"] == "hydraulic DTM" and "17" in ds.tags()["DTM_GROUND"]


def test_ahn3_water_and_bridge_classes_stay_out_of_the_dtm(ahn3_points):
    """Real vendor classes: 9 water (568 points in a canal that mostly returns nothing) and 26, which
    AHN3 uses for civil structures (here a street-level bridge deck, 1 114 points)."""
    pc = ahn3_points
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 1.0)
    plain = build_surfaces(pc.x, pc.y, pc.z, pc.classification, pc.return_number, grid, water_classes=(),
                           bridge_classes=())
    s = build_surfaces(pc.x, pc.y, pc.z, pc.classification, pc.return_number, grid, bridge_classes=(17, 26))
    water_z = pc.z[pc.classification == 9]
    # the canal, voids included, is one water body at the level of its returns (measured: 2 343
    # cells, a median 0.22 m below the TIN the quay edges carried across it)
    assert s.water.sum() > 2000 and 0.15 < np.median(plain.dtm[s.water] - s.dtm[s.water])
    assert abs(np.median(s.dtm[s.water]) - np.median(water_z)) < 0.02
    inside = s.water & plain.support  # never above the TIN across the water
    assert np.all(s.dtm[inside] <= plain.dtm[inside] + 1e-9)
    # under the deck: no deck point in the DTM, the deck in the DSM
    deck = s.bridge
    assert deck.sum() > 50 and not s.support[deck].any()
    assert np.all(s.dtm[deck] < s.dsm[deck] - 0.1)
    # elsewhere nothing changes
    same = ~s.water & ~s.bridge
    np.testing.assert_allclose(s.dtm[same & s.support], plain.dtm[same & s.support], atol=1e-9)


@pytest.mark.parametrize("backend", ["qhull"])
def test_default_tin_equals_the_previous_tin(ahn3_points, backend):
    """startinpy (default, MIT) against Qhull (the previous default) on the AHN3 ground: the same
    Delaunay TIN, so the same DTM (measured: max |difference| 6.8e-16 m)."""
    pc = ahn3_points
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 1.0)
    g = pc.classification == 2
    new, new_support = build_dtm(pc.x[g], pc.y[g], pc.z[g], grid)
    old, old_support = build_dtm(pc.x[g], pc.y[g], pc.z[g], grid, backend=backend)
    assert np.array_equal(new_support, old_support)
    d = np.abs(new - old)
    assert d.max() < 1e-9 and d.mean() < 1e-12


def test_tin_backends_agree_on_random_points():
    rng = np.random.default_rng(9)
    x, y = rng.uniform(0, 300, 20_000), rng.uniform(0, 200, 20_000)
    z = np.sin(x / 11.0) * np.cos(y / 7.0)
    grid = GridSpec.covering((0, 0, 300, 200), 0.5)
    a = tin_surface(x, y, z, grid)
    b = tin_surface(x, y, z, grid, backend="qhull")
    assert np.array_equal(np.isfinite(a), np.isfinite(b))
    np.testing.assert_allclose(a[np.isfinite(a)], b[np.isfinite(b)], atol=1e-9)
    with pytest.raises(ValueError, match="unknown TIN backend"):
        tin_surface(x, y, z, grid, backend="nope")


def test_tin_degenerate_inputs():
    grid = GridSpec.covering((0, 0, 10, 10), 1.0)
    # collinear points: no triangle, nothing interpolated (the membrane fills such gaps later)
    line = np.arange(5.0)
    assert np.isnan(tin_surface(line, line, line, grid)).all()
    # a repeated point (same x, y): one vertex, the lowest height kept
    x = np.array([1.0, 9.0, 1.0, 1.0])
    y = np.array([1.0, 1.0, 9.0, 1.0])
    z = np.array([5.0, 0.0, 0.0, 1.0])
    surface = tin_surface(x, y, z, grid)
    rows, cols = grid.cell_index(np.array([1.5]), np.array([1.5]))
    # barycentric weight of the corner (1, 1) at the cell centre (1.5, 1.5): 1 - 0.5/8 - 0.5/8
    assert surface[rows[0], cols[0]] == pytest.approx(1.0 * 0.875, abs=1e-9)
    assert np.nanmax(surface) <= 1.0
