"""All or nothing: a failed, corrupt or interrupted load leaves the previous version untouched."""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData, Table, select, text

from gisserver.errors import InvalidFile, InvalidGeometry, RuleViolation
from layers.ingest import load_layer
from tests.layers.conftest import PARCEL_MAP, parcel_frame


def _state(engine, table="parcel"):
    with engine.connect() as conn:
        t = Table(table, MetaData(), autoload_with=conn)
        rows = conn.execute(select(t.c.parcel_no, t.c.address).order_by(t.c.parcel_no)).all()
        layer = conn.execute(text("SELECT data_version, feature_count FROM layer WHERE name = 'parcels'")).one()
        audits = conn.execute(text("SELECT count(*) FROM audit_log WHERE action = 'layer.load'")).scalar()
    return [tuple(r) for r in rows], tuple(layer), audits


@pytest.fixture
def loaded(catalogue, tmp_path):
    path = tmp_path / "v1.gpkg"
    parcel_frame(6).to_file(path, driver="GPKG")
    load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP)
    return _state(catalogue)


def test_audit_entry_per_load(catalogue, loaded):
    with catalogue.connect() as conn:
        row = conn.execute(text(
            "SELECT actor, action, target_type, target_id, after, detail FROM audit_log WHERE action = 'layer.load'"
        )).mappings().one()
    assert (row["actor"], row["target_type"], row["target_id"]) == ("tester", "layer", "parcels")
    assert row["after"]["feature_count"] == 6
    assert row["detail"]["mode"] == "replace" and row["detail"]["loaded"] == 6 and row["detail"]["read"] == 6
    assert loaded[1][1] == 6


def test_failure_halfway_keeps_previous_version(catalogue, loaded, tmp_path):
    """policy=fail on a bad feature in the middle, after several batches were already sent by COPY."""
    path = tmp_path / "v2.gpkg"
    frame = parcel_frame(40, bowtie_at=25)
    frame["SoThua"] = frame["SoThua"] + 100
    frame.to_file(path, driver="GPKG")
    with pytest.raises(InvalidGeometry, match="feature 26"):
        load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP, policy="fail", batch_size=4)
    assert _state(catalogue) == loaded


def test_corrupt_file_midway_keeps_previous_version(catalogue, loaded, tmp_path):
    path = tmp_path / "v2.fgb"
    parcel_frame(400).to_file(path, driver="FlatGeobuf", SPATIAL_INDEX="NO")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # truncated transfer
    with pytest.raises(InvalidFile):
        load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP, batch_size=16)
    assert _state(catalogue) == loaded


def test_garbage_file_is_invalid(catalogue, loaded, tmp_path):
    path = tmp_path / "v2.gpkg"
    path.write_bytes(b"SQLite format 3\x00" + b"\x13" * 5000)
    with pytest.raises(InvalidFile):
        load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP)
    assert _state(catalogue) == loaded


def test_interrupted_load_keeps_previous_version(catalogue, loaded, tmp_path):
    path = tmp_path / "v2.gpkg"
    parcel_frame(50).to_file(path, driver="GPKG")

    def interrupt(done, total):
        if done >= 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP, batch_size=10, progress=interrupt)
    assert _state(catalogue) == loaded


def test_duplicate_parcel_numbers_break_a_register_rule(catalogue, loaded, tmp_path):
    path = tmp_path / "dup.gpkg"
    frame = parcel_frame(4)
    frame["SoThua"] = [1, 2, 2, 3]
    frame.to_file(path, driver="GPKG")
    with pytest.raises(RuleViolation) as err:
        load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP)
    assert err.value.status == 422
    assert _state(catalogue) == loaded


def test_append_mode(catalogue, loaded, tmp_path):
    path = tmp_path / "more.gpkg"
    frame = parcel_frame(3)
    frame["SoThua"] = [7, 8, 9]
    frame.to_file(path, driver="GPKG")
    report = load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP, mode="append")
    rows, (version, count), audits = _state(catalogue)
    assert report.loaded == 3 and count == 9 and version == loaded[1][0] + 1 and audits == 2
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_generic_layer_replace_swaps_tables_and_failure_keeps_old(catalogue, tmp_path):
    import geopandas as gpd
    from shapely.geometry import Point

    def frame(n, extra):
        data = {"ten": [f"Trạm {i}" for i in range(n)], "cong_suat": [float(i) for i in range(n)]}
        data.update(extra)
        return gpd.GeoDataFrame(data, geometry=[Point(106.69 + i * 1e-4, 10.77) for i in range(n)], crs="EPSG:4326")

    v1 = tmp_path / "v1.geojson"
    frame(3, {}).to_file(v1)
    first = load_layer(catalogue, v1, "tram_bom", actor="tester", title="Trạm bơm")
    assert first.created and first.kind == "generic"
    v2 = tmp_path / "v2.gpkg"
    frame(5, {"Năm xây": [2001, 2002, 2003, 2004, 2005]}).to_file(v2, driver="GPKG")
    second = load_layer(catalogue, v2, "tram_bom", actor="tester")
    assert not second.created and second.data_version == first.data_version + 1
    with catalogue.connect() as conn:
        assert conn.execute(text("SELECT count(*), sum(nam_xay) FROM layerdata.tram_bom")).one() == (5, 10015)
        tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'layerdata'")).scalars().all()
        props = conn.execute(text("SELECT properties, title FROM layer WHERE name = 'tram_bom'")).one()
        indexes = conn.execute(text(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'layerdata' ORDER BY indexname"
        )).scalars().all()
    assert tables == ["tram_bom"]
    assert [p["name"] for p in props[0]] == ["ten", "cong_suat", "nam_xay"] and props[1] == "Trạm bơm"
    assert indexes == ["ix_tram_bom_geom", "ix_tram_bom_geom_3857", "pk_tram_bom"]
    bad = tmp_path / "bad.geojson"
    broken = frame(4, {})
    broken.loc[2, "geometry"] = None
    broken.to_file(bad)
    with pytest.raises(Exception, match="feature 2"):
        load_layer(catalogue, bad, "tram_bom", actor="tester", policy="fail")
    with catalogue.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM layerdata.tram_bom")).scalar() == 5
        assert conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'layerdata'")).scalar() == 1


def _parcel_indexes(engine):
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'parcel' ORDER BY 1"
        )).scalars().all()


def test_big_replace_rebuilds_indexes_and_rolls_back_cleanly(catalogue, loaded, tmp_path):
    """The big-load path (indexes dropped, COPY, rebuilt) - forced here with a threshold of 1."""
    indexes = _parcel_indexes(catalogue)
    assert {"ix_parcel_geom", "ix_parcel_geom_3857", "uq_parcel_current_number"} <= set(indexes)
    dup = tmp_path / "dup.gpkg"
    frame = parcel_frame(4)
    frame["SoThua"] = [1, 2, 2, 3]
    frame.to_file(dup, driver="GPKG")
    with pytest.raises(RuleViolation, match="uq_parcel_current_number"):
        load_layer(catalogue, dup, "parcels", actor="tester", mapping=PARCEL_MAP, index_rebuild_threshold=1)
    assert _state(catalogue) == loaded and _parcel_indexes(catalogue) == indexes
    good = tmp_path / "v2.gpkg"
    parcel_frame(9).to_file(good, driver="GPKG")
    report = load_layer(catalogue, good, "parcels", actor="tester", mapping=PARCEL_MAP, index_rebuild_threshold=1)
    assert report.loaded == 9 and _parcel_indexes(catalogue) == indexes


def test_replace_with_an_empty_file_empties_the_layer(catalogue, loaded, tmp_path):
    path = tmp_path / "empty.gpkg"
    parcel_frame(6).iloc[:0].to_file(path, driver="GPKG")
    report = load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP)
    assert (report.read, report.loaded, report.feature_count) == (0, 0, 0)
    rows, (version, count), audits = _state(catalogue)
    assert rows == [] and count == 0 and version == loaded[1][0] + 1 and audits == 2


def test_orphan_table_in_layerdata_is_a_conflict(catalogue, tmp_path):
    from gisserver.errors import Conflict

    with catalogue.begin() as conn:
        conn.execute(text("CREATE TABLE layerdata.mo_coi (id int)"))
    path = tmp_path / "x.gpkg"
    parcel_frame(2).to_file(path, driver="GPKG")
    with pytest.raises(Conflict, match="not in the layer catalogue"):
        load_layer(catalogue, path, "mo_coi", actor="tester")
    with catalogue.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM layer WHERE name = 'mo_coi'")).scalar() == 0
