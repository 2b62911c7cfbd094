"""Buildings in the city-scale processing job (``gisserver lidar process --buildings``): the same
per-tile buildings and roofs as the HTTP ingest job, stored in the job's one transaction.

The cloud is the real AHN3 Delft crop moved into Quận 8 (``relocated_las`` in conftest) with one
of its blocks in the cadastre, at 0.5 m (where some roofs are LoD2) on 100 m tiles.
"""

from __future__ import annotations

import datetime as dt

import laspy
import pytest
from click.testing import CliRunner
from geoalchemy2.shape import from_shape, to_shape
from shapely.geometry import MultiPolygon, box
from sqlalchemy import func, insert, select

from gisserver.crs import CITY_SRID
from gisserver.errors import InvalidInput
from gisserver.schema import building, job, raster
from lidar import jobs
from lidar.cli import lidar
from lidar.io import open_cloud
from lidar.tables import building_roof
from tests.lidar.conftest import RELOCATE

TILE = 100.0
#: test_tiled_buildings.py's cadastral footprint inside a tile, moved with the cloud (its other one
#: covers the stepped block, which would then be measured as one cadastral box instead)
CADASTRE = [box(85020.0 + RELOCATE[0], 447456.0 + RELOCATE[1], 85049.0 + RELOCATE[0], 447476.0 + RELOCATE[1])]


def _buildings(engine) -> dict:
    """Stored buildings: cadastral ones by id, detected ones as a list; heights, date, roof."""
    with engine.connect() as conn:
        rows = conn.execute(select(building.c.id, building.c.source, building.c.geom, building.c.height,
                                   building.c.ground_z, building.c.roof_p70, building.c.floors, building.c.lidar_date,
                                   building_roof.c.lod2, building_roof.c.roof_type)
                            .join(building_roof, building_roof.c.building_id == building.c.id, isouter=True)
                            .order_by(building.c.id)).all()
    out = {"cadastre": {}, "lidar": []}
    for r in rows:
        b = {"geom": to_shape(r.geom), "height": r.height, "ground": r.ground_z, "p70": r.roof_p70,
             "floors": r.floors, "date": r.lidar_date, "roof": (r.lod2, r.roof_type)}
        if r.source == "cadastre":
            out["cadastre"][r.id] = b
        else:
            out["lidar"].append(b)
    return out


def _roof_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(building_roof)).scalar_one()


def _assert_same(a: dict, b: dict) -> None:
    assert b["height"] == pytest.approx(a["height"], abs=0.01)
    assert b["ground"] == pytest.approx(a["ground"], abs=0.01)
    assert b["p70"] == pytest.approx(a["p70"], abs=0.01)
    assert (b["floors"], b["date"], b["roof"]) == (a["floors"], a["date"], a["roof"])


def test_processing_job_with_buildings_stores_what_the_ingest_stores(catalogue, relocated_las, database_url,
                                                                       tmp_path):
    """The ingest job, then `lidar process --per-tile --buildings` through the CLI on the same file
    and tiles: the processing job replaces the ingest's detected buildings with the same ones
    (footprint IoU > 0.99, LoD1 heights within 1 cm, same floors, LiDAR date and LoD2 roof types)
    and rewrites the cadastral footprints' heights and roofs alike, with its VRT rasters."""
    with catalogue.begin() as conn:
        cadastral_ids = [conn.execute(insert(building).values(
            source="cadastre", geom=from_shape(MultiPolygon([g]), srid=CITY_SRID)).returning(building.c.id)
        ).scalar_one() for g in CADASTRE]
        ingest_id = jobs.submit_ingest_job(conn, path=relocated_las, name="q8.las", uploaded=False,
                                           vertical_datum="Hon Dau", tile_size=TILE, resolution=0.5, owner="test")
    ingested = jobs.run_ingest_job(catalogue, ingest_id, tmp_path / "ingest", processes=False, n_workers=1)
    before = _buildings(catalogue)
    roofs_before = _roof_count(catalogue)
    assert ingested["buildings"]["cadastral_updated"] == len(cadastral_ids) and len(before["lidar"]) >= 3
    assert ingested["buildings"]["lod2"] >= 1  # LoD2 roofs compared too
    assert all(b["date"] is not None for b in before["lidar"])

    cli = CliRunner().invoke(lidar, [
        "process", str(relocated_las), "--out", str(tmp_path / "city"), "--prefix", "q8_city", "--vertical-datum",
        "Hon Dau", "--tile-size", str(TILE), "--resolution", "0.5", "--per-tile", "--buildings", "--workers", "1"],
        env={"DATABASE_URL": database_url})
    assert cli.exit_code == 0, cli.output
    stored = len(ingested["buildings"]["ids"])
    counts = ingested["buildings"]
    assert (f"{stored} buildings stored ({counts['detected']} detected, {len(cadastral_ids)} cadastral footprints "
            f"updated, {counts['lod2']} LoD2 roofs)") in cli.output

    after = _buildings(catalogue)
    with catalogue.connect() as conn:
        row = conn.execute(select(job.c.status, job.c.result).where(job.c.kind == jobs.JOB_KIND)).one()
        paths = conn.execute(select(raster.c.path).where(raster.c.name.like("q8_city_%"))).scalars().all()
    built = row.result["buildings"]
    assert row.status == "succeeded" and row.result["lidar_date"] == before["lidar"][0]["date"].isoformat()
    assert (built["replaced"], built["detected"], built["cadastral_updated"], built["lod2"]) == (
        stored, ingested["buildings"]["detected"], len(cadastral_ids), ingested["buildings"]["lod2"])
    assert len(built["ids"]) == stored and not set(built["ids"]) & set(ingested["buildings"]["ids"])
    assert len(paths) == 4 and all(p.endswith(".vrt") for p in paths)  # --per-tile: no mosaic in memory
    assert _roof_count(catalogue) == roofs_before  # the ingest's detected buildings' roofs went with them

    assert len(after["lidar"]) == len(before["lidar"]) == stored
    unmatched = list(after["lidar"])
    for a in before["lidar"]:
        b = max(unmatched, key=lambda c: a["geom"].intersection(c["geom"]).area / a["geom"].union(c["geom"]).area)
        unmatched.remove(b)
        assert a["geom"].intersection(b["geom"]).area / a["geom"].union(b["geom"]).area > 0.99
        _assert_same(a, b)
    assert set(after["cadastre"]) == set(before["cadastre"]) == set(cadastral_ids)
    for fid in cadastral_ids:
        assert before["cadastre"][fid]["height"] > 2
        _assert_same(before["cadastre"][fid], after["cadastre"][fid])


def test_buildings_need_the_city_crs(catalogue, relocated_las, database_url, tmp_path):
    with catalogue.begin() as conn, pytest.raises(InvalidInput, match="city CRS"):
        jobs.submit_processing_job(conn, sources=[{"path": str(relocated_las)}], prefix="native", target_srid=None,
                                   buildings=True)
    cli = CliRunner().invoke(lidar, ["process", str(relocated_las), "--out", str(tmp_path), "--prefix", "native",
                                     "--native", "--buildings"], env={"DATABASE_URL": database_url})
    assert cli.exit_code == 2 and "--buildings needs the city CRS" in cli.output
    with catalogue.connect() as conn:
        assert conn.execute(select(func.count()).select_from(job)).scalar_one() == 0


def test_survey_date_is_the_date_every_file_has(relocated_las, tmp_path):
    """One date for a run's buildings: the files' common acquisition date, else none."""
    las = laspy.read(relocated_las)
    paths = {}
    for name, day in (("march", dt.date(2026, 3, 1)), ("march_too", dt.date(2026, 3, 1)), ("may", dt.date(2026, 5, 4)),
                      ("unset", None)):
        las.header.creation_date = day
        las.write(tmp_path / f"{name}.las")
        if day is None:  # laspy writes today's date for None: the header's day and year (bytes 90-93) zeroed
            with open(tmp_path / f"{name}.las", "r+b") as fh:
                fh.seek(90)
                fh.write(bytes(4))
        paths[name] = open_cloud(tmp_path / f"{name}.las")
    assert jobs.survey_date([paths["march"], paths["march_too"]]) == dt.date(2026, 3, 1)
    assert jobs.survey_date([paths["march"], paths["may"]]) is None
    assert jobs.survey_date([paths["march"], paths["unset"]]) is None
    assert jobs.survey_date([paths["unset"]]) is None
