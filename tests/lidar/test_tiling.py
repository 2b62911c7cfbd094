"""Tiled processing through Dask: seamless tiles, reported failures, registered products."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from sqlalchemy import select, text

from gisserver.crs import CITY_SRID
from gisserver.errors import Conflict
from gisserver.schema import raster
from lidar.catalogue import register_products
from lidar.ground import SMRFParams
from lidar.tiling import Source, TileFailed, TileScheme, _run_tasks, run_tiled


@pytest.fixture(scope="module")
def delft_source(shared_data):
    return [Source(str(shared_data / "lidar/ahn3_delft_urban.laz"), "EPSG:28992", "NAP")]


def test_tile_assignment_with_buffers():
    scheme = TileScheme(100.0, 10.0)
    x = np.array([50.0, 95.0, 105.0, 195.0, -5.0])
    y = np.array([50.0, 50.0, 95.0, 105.0, 50.0])
    tiles = scheme.assign(x, y)
    assert tiles[(0, 0)].tolist() == [0, 1, 2, 4]
    assert tiles[(1, 0)].tolist() == [1, 2, 3]
    assert tiles[(1, 1)].tolist() == [2, 3]
    assert tiles[(-1, 0)].tolist() == [4]
    assert set(tiles) == {(0, 0), (1, 0), (1, 1), (0, 1), (2, 1), (2, 0), (-1, 0)}


def test_multi_tile_run_equals_single_tile_run(delft_source, tmp_path):
    """50 m tiles (buffers 38 m) vs one 1 km tile over the same AHN3 crop, through a LocalCluster.

    Every point gets the same class. On every cell farther than 15 m from the edge of the survey,
    seams included, the DTM is identical (1e-9 m) and the DSM matches to 1 mm (its empty cells
    are membrane-filled to a 1e-7 m tolerance). Only extrapolation at the survey edge depends on
    the tiling (DSM there within 1 cm).
    """
    kwargs = {"resolution": 1.0, "processes": False, "write_rasters": False}
    single = run_tiled(delft_source, tmp_path / "one", tile_size=1000, n_workers=1, **kwargs)
    stages = []
    multi = run_tiled(delft_source, tmp_path / "many", tile_size=50, n_workers=2,
                      progress=lambda f, stage: stages.append((round(f, 3), stage)), **kwargs)
    assert len([t for t in multi.tiles if t.points]) == 10 and len([t for t in single.tiles if t.points]) == 1
    assert multi.classes == single.classes and sum(multi.classes.values()) == 208_432
    assert stages[-1] == (1.0, "done") and [f for f, _ in stages] == sorted(f for f, _ in stages)
    a, b = single.surfaces, multi.surfaces
    assert a.grid == b.grid and np.isfinite(b.dtm).all()
    h, w = a.grid.shape
    rr, cc = np.mgrid[0:h, 0:w]
    interior = np.minimum(np.minimum(rr, h - 1 - rr), np.minimum(cc, w - 1 - cc)) * a.grid.cell >= 15
    np.testing.assert_allclose(b.dsm[interior], a.dsm[interior], atol=1e-3)
    assert np.abs(b.dsm - a.dsm).max() < 0.01
    np.testing.assert_allclose(b.dtm[interior], a.dtm[interior], atol=1e-9)
    assert np.mean(np.abs(b.dtm - a.dtm) < 1e-6) > 0.99


def test_failed_tiles_are_retried_and_reported(tmp_path):
    files = {(0, 0): tmp_path / "missing_spill.bin"}
    with pytest.raises(TileFailed) as err:
        _run_tasks(files, TileScheme(100, 38), SMRFParams(), 1.0, tmp_path, scheduler=None, n_workers=1,
                   processes=False, retries=1, progress=None)
    assert err.value.details["failures"][0]["tile"] == [0, 0]
    assert "FileNotFoundError" in err.value.details["failures"][0]["error"]


def test_city_products_written_and_registered(relocated_las, tmp_path, clean_db):
    path = relocated_las
    run = run_tiled([Source(str(path), vertical_datum="Hon Dau")], tmp_path / "out", tile_size=500,
                    resolution=1.0, target_srid=CITY_SRID, processes=False, n_workers=1)
    assert run.srid == CITY_SRID and set(run.outputs) == {"dtm", "dsm", "ndsm", "hillshade"}
    with rasterio.open(run.outputs["dtm"]) as ds:
        assert "105.75" in ds.crs.to_wkt() and ds.res == (1.0, 1.0)
    with clean_db.begin() as conn:
        ids = register_products(conn, run.outputs, prefix="q8_demo", srid=run.srid,
                                vertical_datum=run.vertical_datum, sources=run.sources)
    with clean_db.connect() as conn:
        rows = {r.kind: r for r in conn.execute(select(raster).where(raster.c.id.in_(ids.values())))}
        assert rows["dtm"].srid == CITY_SRID and rows["dtm"].resolution == 1.0
        assert rows["dtm"].vertical_datum == "Hon Dau" and rows["ndsm"].vertical_datum is None
        assert rows["dsm"].sources[0]["points"] == 208_432 and rows["dsm"].sources[0]["crs_source"] == "geotiff"
        assert rows["dtm"].width == run.grid.width and rows["dtm"].height == run.grid.height
        inside = conn.execute(
            text("SELECT ST_Contains(footprint, ST_SetSRID(ST_MakePoint(:x, :y), :srid)) FROM raster WHERE id = :id"),
            {"x": 596_030.0, "y": 1_186_100.0, "srid": CITY_SRID, "id": ids["dtm"]},
        ).scalar()
        assert inside
    # a second registration under the same names is refused as a whole
    with pytest.raises(Conflict), clean_db.begin() as conn:
        register_products(conn, run.outputs, prefix="q8_demo", srid=run.srid, vertical_datum=None, sources=[])
    with clean_db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM raster")).scalar() == 4


def test_per_tile_cogs_and_vrt_mosaic_equal_the_in_memory_mosaic(delft_source, tmp_path):
    """City-scale mode: each tile writes its COGs, the products are VRTs; same values as the mosaic."""
    kwargs = {"tile_size": 100, "resolution": 1.0, "processes": False, "n_workers": 1}
    memory = run_tiled(delft_source, tmp_path / "mem", **kwargs)
    tiled = run_tiled(delft_source, tmp_path / "vrt", mosaic_in_memory=False, **kwargs)
    assert tiled.surfaces is None and {p.suffix for p in tiled.outputs.values()} == {".vrt"}
    assert len(list((tmp_path / "vrt" / "tiles").glob("dtm_*.tif"))) == 3
    for kind in ("dtm", "dsm", "ndsm", "hillshade"):
        with rasterio.open(memory.outputs[kind]) as a, rasterio.open(tiled.outputs[kind]) as b:
            assert a.transform == b.transform and a.shape == b.shape and a.crs == b.crs
            if kind == "hillshade":
                # computed per buffered tile instead of on the mosaic: equal except at the survey edge
                diff = np.abs(a.read(1).astype(int) - b.read(1).astype(int))[1:-1, 1:-1]
                assert np.mean(diff <= 1) > 0.99
            else:
                np.testing.assert_allclose(b.read(1), a.read(1), atol=1e-4)


def test_tiles_keep_vendor_water_and_bridges_out_of_the_dtm(tmp_path):
    """The synthetic bridge over a canal as a LAS file: SMRF reclassifies the tiles, but the
    vendor's water (9) and deck (17) points never become ground, in every tile alike."""
    import laspy

    from lidar.dtm import HYDRAULIC_DTM_TAGS
    from tests.lidar.test_surfaces import WATER_LEVEL, _bridge_over_canal

    x, y, z, cls = _bridge_over_canal()
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.array([600_000.0, 1_190_000.0, 0.0])
    las = laspy.LasData(header)
    las.x, las.y, las.z = x + 600_000.0, y + 1_190_000.0, z
    las.classification = cls
    las.return_number = np.ones_like(cls)
    las.number_of_returns = np.ones_like(cls)
    path = tmp_path / "bridge.las"
    las.write(path)
    kwargs = {"resolution": 1.0, "processes": False, "n_workers": 1}
    source = [Source(str(path), "EPSG:32648")]
    one = run_tiled(source, tmp_path / "one", tile_size=1000, **kwargs)
    many = run_tiled(source, tmp_path / "many", tile_size=50, write_rasters=False, **kwargs)
    assert one.classes[9] > 0 and one.classes[17] == int((cls == 17).sum()) and one.classes == many.classes
    g = one.grid
    xc, yc = np.meshgrid(g.x0 + np.arange(g.width) + 0.5 - 600_000.0, g.y1 - np.arange(g.height) - 0.5 - 1_190_000.0)
    canal_under_bridge = (np.abs(xc - 50) < 5) & (np.abs(yc - 50) < 5)
    for run in (one, many):
        np.testing.assert_allclose(run.surfaces.dtm[canal_under_bridge], WATER_LEVEL, atol=0.08)
        assert run.surfaces.water[(np.abs(yc - 50) < 5) & (np.abs(xc - 50) > 8)].all()
        assert run.surfaces.bridge[canal_under_bridge].all()
    np.testing.assert_allclose(many.surfaces.dtm, one.surfaces.dtm, atol=1e-6)
    with rasterio.open(one.outputs["dtm"]) as ds:
        assert {k: ds.tags()[k] for k in HYDRAULIC_DTM_TAGS} == HYDRAULIC_DTM_TAGS
