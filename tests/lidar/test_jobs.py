"""LiDAR processing jobs (progress, results, failures) and the ``lidar`` CLI group."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, select

import lidar.tables as lt
from gisserver.errors import MissingCRS
from gisserver.schema import job, raster
from lidar.cli import lidar
from lidar.jobs import run_processing_job, submit_processing_job


@pytest.fixture
def lidar_db(clean_db):
    with clean_db.begin() as conn:
        conn.execute(delete(lt.lidar_tile))
        conn.execute(delete(lt.lidar_file))
    return clean_db


def test_processing_job_reports_progress_and_registers_everything(lidar_db, relocated_las, tmp_path):
    with lidar_db.begin() as conn:
        job_id = submit_processing_job(conn, sources=[{"path": str(relocated_las), "vertical_datum": "Hon Dau"}],
                                       prefix="q8_job", tile_size=100, resolution=1.0)
    seen = []
    result = run_processing_job(lidar_db, job_id, tmp_path, processes=False, n_workers=1,
                                on_progress=lambda f, stage: seen.append(stage))
    assert {"retile", "tiles", "done"} <= set(seen)
    assert result["points"] == 208_432 and result["tiles"] == 3 and set(result["rasters"]) == {
        "dtm", "dsm", "ndsm", "hillshade"}
    with lidar_db.connect() as conn:
        row = conn.execute(select(job).where(job.c.id == job_id)).mappings().one()
        assert row["status"] == "succeeded" and float(row["progress"]) == 100 and row["finished_at"]
        assert conn.execute(select(func.count()).select_from(raster)).scalar() == 4
        tiles = conn.execute(select(lt.lidar_tile.c.status).where(lt.lidar_tile.c.job_id == job_id)).scalars().all()
        assert tiles == ["done"] * 3


def test_failed_job_is_recorded_and_registers_nothing(lidar_db, ahn3_path, tmp_path):
    with lidar_db.begin() as conn:
        job_id = submit_processing_job(conn, sources=[{"path": str(ahn3_path)}], prefix="no_crs")
    with pytest.raises(MissingCRS):
        run_processing_job(lidar_db, job_id, tmp_path, processes=False, n_workers=1)
    with lidar_db.connect() as conn:
        row = conn.execute(select(job).where(job.c.id == job_id)).mappings().one()
        assert row["status"] == "failed" and row["error"].startswith("missing-crs:")
        assert conn.execute(select(func.count()).select_from(raster)).scalar() == 0


def test_cli_info_and_errors(ahn3_path):
    runner = CliRunner()
    ok = runner.invoke(lidar, ["info", str(ahn3_path), "--crs", "EPSG:28992"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["point_count"] == 208_432
    bad = runner.invoke(lidar, ["info", str(ahn3_path)])
    assert bad.exit_code == 2 and "error: the file has no CRS" in bad.output


def test_cli_index(lidar_db, relocated_las, database_url):
    result = CliRunner().invoke(lidar, ["index", str(relocated_las), "--vertical-datum", "Hon Dau"],
                                env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    with lidar_db.connect() as conn:
        assert conn.execute(select(lt.lidar_file.c.point_count)).scalar() == 208_432
