"""Runs as persistent jobs on the real PostGIS: queue, progress, cancel, results, worker crash."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio
from affine import Affine
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from geoalchemy2.shape import from_shape
from shapely.geometry import box
from sqlalchemy import func, insert, select, text

from flood import jobs
from flood.solver import SolverParams
from flood.tables import FLOOD_TABLES, flood_extent, flood_run
from gisserver import migrate
from gisserver.config import PROJECT_ROOT
from gisserver.crs import CITY_SRID, city_crs
from gisserver.errors import Conflict
from gisserver.schema import job, metadata, raster
from migrations.filters import include_object

FLOOD_NAMES = {t.name for t in FLOOD_TABLES}


def _dtm(path, ny=40, nx=60, dx=5.0):
    """A canal along the west edge (bed -1.5 m), streets rising from +0.8 m, a hollow at +0.6 m."""
    z = np.tile(np.linspace(0.8, 2.0, nx), (ny, 1))
    z[:, :3] = -1.5
    yy, xx = np.mgrid[0:ny, 0:nx]
    z = np.where(np.hypot(yy - 20, xx - 35) < 5, 0.6, z)
    z[30:34, 40:46] = -9999.0  # no data (a hole in the survey)
    transform = Affine(dx, 0, 602000.0, 0, -dx, 1191000.0)
    with rasterio.open(path, "w", driver="GTiff", width=nx, height=ny, count=1, dtype="float32",
                       crs=city_crs(), transform=transform, nodata=-9999.0) as dst:
        dst.write(z.astype("float32"), 1)
    footprint = box(602000.0, 1191000.0 - ny * dx, 602000.0 + nx * dx, 1191000.0)
    return {"name": f"dtm_{path.stem}", "kind": "dtm", "path": str(path), "resolution": dx, "srid": CITY_SRID,
            "width": nx, "height": ny, "footprint": from_shape(footprint, srid=CITY_SRID)}


@pytest.fixture
def queue(clean_db, tmp_path):
    with clean_db.begin() as conn:
        conn.execute(text("TRUNCATE flood_extent, flood_run, flood_scenario RESTART IDENTITY CASCADE"))
        raster_id = conn.execute(insert(raster).values(**_dtm(tmp_path / "dtm.tif")).returning(raster.c.id)).scalar()
        jobs.register_default_scenarios(conn)
    return clean_db, raster_id


def _flood_diff(engine):
    with engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        diff = compare_metadata(mc, metadata)
    return [d for d in diff if FLOOD_NAMES & set(_names(d))]


def _names(item):
    if isinstance(item, list):
        for sub in item:
            yield from _names(sub)
        return
    for part in item:
        table = getattr(part, "table", None)
        if table is not None:
            yield table.name
        name = getattr(part, "name", None)
        if isinstance(name, str):
            yield name
        if isinstance(part, str):
            yield part


def test_flood_migration_matches_tables_and_round_trips(db_engine):
    assert _flood_diff(db_engine) == []
    # the chain is linear (0001 ... 0006): going below 0003 removes the flood tables
    migrate.downgrade(db_engine, "0002")
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('public.flood_run')")).scalar() is None
        assert conn.execute(text("SELECT to_regclass('public.job')")).scalar() is not None
    migrate.upgrade(db_engine)
    assert _flood_diff(db_engine) == []
    with db_engine.connect() as conn:
        srid = conn.execute(text("SELECT Find_SRID('public', 'flood_extent', 'geom')")).scalar()
        gist = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_flood_extent_geom'")).scalar()
    assert srid == CITY_SRID and "gist" in gist.lower()


def test_scenario_versions_are_immutable(queue):
    engine, _ = queue
    from flood.scenarios import DEFAULT_SCENARIOS, Scenario

    s = DEFAULT_SCENARIOS["design-5y"]
    with engine.begin() as conn:
        assert jobs.register_scenario(conn, s) == jobs.register_scenario(conn, s)
        changed = Scenario.from_dict({**s.as_dict(), "initial_loss_mm": 0.0})
        with pytest.raises(Conflict):
            jobs.register_scenario(conn, changed)
        new_id = jobs.register_scenario(conn, Scenario.from_dict({**changed.as_dict(), "version": 2}))
        run_id = jobs.submit_run(conn, scenario_key="design-5y", raster_id=queue[1])
        assert conn.execute(select(flood_run.c.scenario_id).where(flood_run.c.id == run_id)).scalar() == new_id


def test_run_executes_with_progress_results_and_extents(queue, tmp_path):
    engine, raster_id = queue
    params = {"duration_s": 1800.0, "snapshot_interval_s": 900.0, "gauges": [[20, 35], [20, 1]],
              "open_sides": ["east"]}
    with engine.begin() as conn:
        run_id = jobs.submit_run(conn, scenario_key="design-10y-slr2050", raster_id=raster_id, params=params,
                                 owner="planner1")
        assert jobs.run_status(conn, run_id)["status"] == "queued"
    assert jobs.claim_next(engine, "w1") == run_id
    assert jobs.claim_next(engine, "w2") is None  # one worker per run
    result = jobs.execute_run(engine, run_id, tmp_path / "out", report_every=0.2)
    assert result["mass_balance"]["max_relative_error"] < 1e-3
    assert result["solver"] == dataclasses.asdict(SolverParams())  # recorded with the run
    with engine.connect() as conn:
        status = jobs.run_status(conn, run_id)
        extents = conn.execute(
            select(flood_extent.c.min_depth, flood_extent.c.area_m2, func.ST_SRID(flood_extent.c.geom),
                   func.ST_IsValid(flood_extent.c.geom)).where(flood_extent.c.run_id == run_id)
        ).all()
        job_row = conn.execute(select(job).where(job.c.kind == jobs.JOB_KIND)).mappings().one()
    assert status["status"] == "succeeded" and status["progress"] == 100.0
    assert job_row["status"] == "succeeded" and job_row["result"]["steps"] == result["steps"]
    assert extents and all(srid == CITY_SRID and valid for _, _, srid, valid in extents)
    assert sum(a for _, a, _, _ in extents) == pytest.approx(result["flooded_area_m2"])
    assert sorted(result["time_steps"]) == ["1800", "900"]
    for path in result["files"].values():
        with rasterio.open(path) as src:
            assert src.crs is not None and src.width == 60
    assert {g["gauge"] for g in result["gauges"]} == {"g0", "g1"}
    # the canal gauge follows the tide (+0.30 m sea-level rise), above the bed at -1.5 m
    assert max(g["depth_m"] for g in result["gauges"] if g["gauge"] == "g1") > 1.5


def test_cancel_queued_and_running_runs(queue, tmp_path):
    engine, raster_id = queue
    with engine.begin() as conn:
        first = jobs.submit_run(conn, scenario_key="design-2y", raster_id=raster_id)
        second = jobs.submit_run(conn, scenario_key="design-2y", raster_id=raster_id)
        assert jobs.request_cancel(conn, first) == "cancelled"
    assert jobs.claim_next(engine, "w1") == second
    with engine.begin() as conn:
        assert jobs.request_cancel(conn, second) == "cancelling"
    assert jobs.execute_run(engine, second, tmp_path, report_every=0.0) == {"status": "cancelled"}
    with engine.connect() as conn:
        assert jobs.run_status(conn, first)["status"] == "cancelled"
        assert jobs.run_status(conn, second)["status"] == "cancelled"
    assert jobs.claim_next(engine, "w1") is None


def _wait_for(predicate, timeout=120.0):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_runs_survive_a_worker_killed_mid_run(queue, database_url, tmp_path):
    engine, raster_id = queue
    # long enough (several seconds of wall time) to be caught mid-run: one simulated hour on this
    # 2,400-cell grid takes well under the 1 s between progress reports since the solver sub-cycles
    params = {"duration_s": 12 * 3600.0}
    with engine.begin() as conn:
        first = jobs.submit_run(conn, scenario_key="design-10y", raster_id=raster_id, params=params)
        second = jobs.submit_run(conn, scenario_key="design-2y", raster_id=raster_id, params=params)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "flood.worker", "--database-url", database_url, "--output", str(tmp_path),
             "--once", "--stale-after", "3600"],
            cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )

    def progressing():
        with engine.connect() as conn:
            s = jobs.run_status(conn, first)
        return s["status"] == "running" and s["progress"] > 0

    try:
        assert _wait_for(progressing), log.read_text()
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    with engine.connect() as conn:
        assert jobs.run_status(conn, first)["status"] == "running"  # orphaned, not lost
        assert jobs.run_status(conn, second)["status"] == "queued"
    engine.dispose()  # a "restarted server": fresh connections, nothing kept in memory
    time.sleep(1.5)
    assert jobs.recover_stale(engine, stale_after_s=1.0) == 1
    assert jobs.work(engine, tmp_path, once=True, stale_after_s=3600) == 2
    with engine.connect() as conn:
        a, b = jobs.run_status(conn, first), jobs.run_status(conn, second)
    assert a["status"] == b["status"] == "succeeded"
    assert a["attempts"] == 2 and b["attempts"] == 1
    assert a["result"]["mass_balance"]["max_relative_error"] < 1e-3


def test_affected_parcels_buildings_and_roads_with_depths(queue, tmp_path):
    from shapely.geometry import LineString, MultiLineString, MultiPolygon

    from flood import impacts
    from gisserver.schema import building, parcel, road

    engine, raster_id = queue
    with engine.begin() as conn:
        run_id = jobs.submit_run(conn, scenario_key="design-10y-slr2050", raster_id=raster_id,
                                 params={"duration_s": 1800.0})
    jobs.claim_next(engine, "w1")
    result = jobs.execute_run(engine, run_id, tmp_path)
    with rasterio.open(result["files"]["max_depth"]) as src:
        depth, transform = src.read(1), src.transform
    x0, y0 = 602000.0, 1191000.0  # DTM corner; ground rises from +0.8 m (west) to +2.0 m (east)
    west = MultiPolygon([box(x0 + 20, y0 - 60, x0 + 60, y0 - 20)])
    east = MultiPolygon([box(x0 + 285, y0 - 60, x0 + 299, y0 - 20)])
    with engine.begin() as conn:
        conn.execute(insert(parcel), [
            {"ward_code": "26734", "sheet_no": 1, "parcel_no": 1, "geom": from_shape(west, srid=CITY_SRID)},
            {"ward_code": "26734", "sheet_no": 1, "parcel_no": 2, "geom": from_shape(east, srid=CITY_SRID)},
        ])
        conn.execute(insert(building), [{"geom": from_shape(MultiPolygon([box(x0 + 30, y0 - 50, x0 + 45, y0 - 35)]),
                                                            srid=CITY_SRID)}])
        conn.execute(insert(road), [{"name": "Đường số 1", "geom": from_shape(
            MultiLineString([LineString([(x0 + 16, y0 - 100), (x0 + 290, y0 - 100)])]), srid=CITY_SRID)}])
    with engine.connect() as conn:
        parcels = impacts.affected_features(conn, run_id, "parcels", depth, transform)
        buildings = impacts.affected_features(conn, run_id, "buildings", depth, transform)
        roads = impacts.affected_features(conn, run_id, "roads", depth, transform)
    assert parcels["feature_id"].tolist()[0] == 1
    west_row = parcels.iloc[0]
    assert west_row["max_depth_m"] > 0.5 and west_row["wet_fraction"] == 1.0
    assert len(buildings) == 1 and buildings.iloc[0]["max_depth_m"] > 0.5
    assert len(roads) == 1 and 0 < roads.iloc[0]["wet_fraction"] < 1  # the road climbs out of the water
    csv = impacts.export(parcels, tmp_path / "parcels.csv")
    gpkg = impacts.export(roads, tmp_path / "roads.gpkg")
    assert csv.read_text().splitlines()[0].startswith("layer,feature_id,max_depth_m")
    import pyogrio

    back = pyogrio.read_dataframe(gpkg)
    assert len(back) == 1 and back.crs is not None


def test_buildings_from_the_cadastre_block_or_raise_the_terrain(queue, tmp_path):
    from shapely.geometry import MultiPolygon

    from flood import terrain
    from gisserver.schema import building

    engine, raster_id = queue
    x0, y0 = 602000.0, 1191000.0
    footprint = MultiPolygon([box(x0 + 40, y0 - 80, x0 + 60, y0 - 60)])  # 4 x 4 cells, in the tidal area
    with engine.begin() as conn:
        conn.execute(insert(building), [{"height": 12.0, "geom": from_shape(footprint, srid=CITY_SRID)}])
        run_id = jobs.submit_run(conn, scenario_key="tide-alert-3", raster_id=raster_id,
                                 params={"duration_s": 600.0, "buildings": "blocked", "initial_level": 1.6})
    with engine.connect() as conn:
        with rasterio.open(tmp_path / "dtm.tif") as src:
            transform, shape, z = src.transform, src.shape, src.read(1).astype(float)
        found = terrain.buildings_in(conn, transform, shape)
    assert len(found) == 1 and found[0][1] == 12.0
    mask = terrain.footprint_mask([g for g, _ in found], transform, shape)
    assert mask.sum() == 16 and mask[12:16, 8:12].all()
    raised = terrain.raise_buildings(z, found, transform)
    assert np.allclose(raised[mask] - z[mask], 12.0) and np.array_equal(raised[~mask], z[~mask])
    jobs.claim_next(engine, "w1")
    result = jobs.execute_run(engine, run_id, tmp_path / "out")
    with rasterio.open(result["files"]["max_depth"]) as src:
        depth = src.read(1)
    assert np.all(np.isnan(depth[mask]))  # blocked: never wet, no value
    ring = np.zeros(shape, dtype=bool)
    ring[11:17, 7:13] = True
    ring &= ~mask
    assert np.nanmin(depth[ring]) > 0.3  # the water stands around it
