"""Migration 0002 (file/tile index) round trip, file index, buildings stored in PostGIS."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, func, select, text, update

import lidar.tables as lt
from gisserver import migrate
from gisserver.crs import CITY_SRID
from gisserver.errors import Conflict, InvalidInput
from gisserver.schema import building, metadata
from lidar.buildings import detect_buildings
from lidar.dtm import build_surfaces
from lidar.grid import GridSpec
from lidar.ground import classify_ground
from lidar.io import open_cloud
from lidar.store import index_file, record_tiles, store_buildings, update_cadastral_heights
from lidar.tiling import Source, run_tiled
from migrations.filters import include_object

LIDAR_NAMES = {t.name for t in lt.LIDAR_TABLES}


def _lidar_diff(engine):
    with engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        diff = compare_metadata(mc, metadata)
    return [d for d in diff if LIDAR_NAMES & set(_names(d))]


def _names(item):
    if isinstance(item, list | tuple):
        for sub in item:
            yield from _names(sub)
        return
    for attr in ("name",):
        value = getattr(item, attr, None)
        if isinstance(value, str):
            yield value
    table = getattr(item, "table", None)
    if table is not None:
        yield table.name
    if isinstance(item, str):
        yield item


def test_migration_0002_round_trip(db_engine):
    assert _lidar_diff(db_engine) == []
    with db_engine.connect() as conn:
        indexes = set(conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename LIKE 'lidar_%'")).scalars())
    assert {"ix_lidar_file_footprint", "ix_lidar_tile_geom"} <= indexes
    migrate.downgrade(db_engine, "0001")
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('public.lidar_file')")).scalar() is None
    migrate.upgrade(db_engine)
    assert _lidar_diff(db_engine) == []


@pytest.fixture
def lidar_db(clean_db):
    with clean_db.begin() as conn:
        conn.execute(delete(lt.lidar_tile))
        conn.execute(delete(lt.lidar_file))
    return clean_db


def test_index_file(lidar_db, relocated_las, ahn3_path):
    with lidar_db.begin() as conn:
        file_id = index_file(conn, relocated_las, vertical_datum="Hon Dau", chunk_size=65_537)
    with lidar_db.connect() as conn:
        row = conn.execute(select(lt.lidar_file).where(lt.lidar_file.c.id == file_id)).mappings().one()
        assert row["point_count"] == 208_432 and row["source_srid"] == CITY_SRID and row["crs_source"] == "geotiff"
        assert row["classes"]["6"] == 33_312 and row["vertical_datum"] == "Hon Dau"
        assert 12 < row["density"] < 16 and row["z_min"] == pytest.approx(-0.606)
        area = conn.execute(select(func.ST_Area(lt.lidar_file.c.footprint))).scalar()
        assert area == pytest.approx(72.3 * 228.5, rel=0.01)
    with pytest.raises(Conflict), lidar_db.begin() as conn:
        index_file(conn, relocated_las)
    # a file outside the city cannot be placed in the city index, and nothing is written
    with pytest.raises(InvalidInput), lidar_db.begin() as conn:
        index_file(conn, ahn3_path, crs="EPSG:28992")
    with lidar_db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(lt.lidar_file)).scalar() == 1


def test_tiles_and_buildings_stored(lidar_db, relocated_las, tmp_path):
    run = run_tiled([Source(str(relocated_las))], tmp_path, tile_size=100, resolution=1.0, target_srid=CITY_SRID,
                    processes=False, n_workers=1, write_rasters=False)
    pc = open_cloud(relocated_las).read_all(target_srid=CITY_SRID)
    cls = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns).classification
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 0.5)
    dtm = build_surfaces(pc.x, pc.y, pc.z, cls, pc.return_number, grid).dtm
    buildings, _ = detect_buildings(pc.x, pc.y, pc.z, cls, pc.number_of_returns, dtm, grid)
    with lidar_db.begin() as conn:
        n_tiles = record_tiles(conn, run, 100)
        ids = store_buildings(conn, buildings, srid=CITY_SRID, lidar_date=dt.date(2014, 3, 4))
    assert n_tiles == 3 and len(ids) == len(buildings) == 7
    with lidar_db.connect() as conn:
        tiles = conn.execute(select(lt.lidar_tile.c.point_count, lt.lidar_tile.c.ground_count)).all()
        assert sum(t.point_count for t in tiles) == 208_432
        # tiles keep the vendor's water (9) and bridge (17) points out of the ground
        assert sum(t.ground_count for t in tiles) == int(np.count_nonzero((cls == 2) & ~np.isin(pc.classification,
                                                                                                (9, 17))))
        rows = conn.execute(select(building).where(building.c.source == "lidar")).mappings().all()
        assert len(rows) == 7 and all(r["lidar_date"] == dt.date(2014, 3, 4) for r in rows)
        assert all(r["roof_p50"] <= r["roof_p70"] <= r["roof_p90"] and r["floors"] >= 1 for r in rows)
        areas = conn.execute(select(func.sum(func.ST_Area(building.c.geom)))).scalar()
        assert areas == pytest.approx(sum(b.area for b in buildings), rel=1e-6)

    # the same outlines as cadastral footprints: heights are filled in, the geometry is kept
    with lidar_db.begin() as conn:
        conn.execute(update(building).where(building.c.source == "lidar").values(
            source="cadastre", height=None, roof_p70=None, lidar_date=None))
        assert update_cadastral_heights(conn, pc.x, pc.y, pc.z, cls, dtm, grid,
                                        lidar_date=dt.date(2014, 3, 4)) == 7
    with lidar_db.connect() as conn:
        rows = conn.execute(select(building.c.height, building.c.roof_p70, building.c.lidar_date)
                            .where(building.c.source == "cadastre")).all()
        heights = sorted(round(r.height, 3) for r in rows)
        assert heights == sorted(round(b.height, 3) for b in buildings)
        assert all(r.lidar_date == dt.date(2014, 3, 4) for r in rows)
