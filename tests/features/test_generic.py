"""Generic (user-loaded) layers in the layerdata schema are queried like canonical ones."""

from __future__ import annotations

from sqlalchemy import insert, text

from gisserver import schema
from gisserver.crs import CITY_SRID


def test_generic_layer_items_filter_and_identify(client, catalogue):
    with catalogue.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS layerdata"))
        conn.execute(text(
            "CREATE TABLE layerdata.truong_hoc (fid serial PRIMARY KEY, ten text, so_hoc_sinh integer, "
            f"geom geometry(Point, {CITY_SRID}))"))
        conn.execute(text(
            "INSERT INTO layerdata.truong_hoc (ten, so_hoc_sinh, geom) VALUES "
            "('Trường Tiểu học Bến Thành', 850, ST_SetSRID(ST_MakePoint(603480, 1191450), :s)), "
            "('Trường THCS Văn Lang', 1200, ST_SetSRID(ST_MakePoint(603900, 1191800), :s))"), {"s": CITY_SRID})
        conn.execute(insert(schema.layer).values(
            name="truong_hoc", title="Schools", title_vi="Trường học", kind="generic", table_schema="layerdata",
            table_name="truong_hoc", geometry_type="Point", srid=CITY_SRID, access_level="public",
            properties=[{"name": "ten", "type": "string"}, {"name": "so_hoc_sinh", "type": "integer"}]))
    assert "truong_hoc" in {c["id"] for c in client.get("/ogc/collections").json["collections"]}
    queryables = client.get("/ogc/collections/truong_hoc/queryables").json["properties"]
    assert queryables["so_hoc_sinh"]["type"] == "integer" and queryables["fid"]["x-ogc-role"] == "id"
    resp = client.get("/ogc/collections/truong_hoc/items?filter=so_hoc_sinh > 1000")
    assert [f["properties"]["ten"] for f in resp.json["features"]] == ["Trường THCS Văn Lang"]
    resp = client.get("/ogc/collections/truong_hoc/items?ten=Trường Tiểu học Bến Thành&crs=EPSG:9210")
    assert resp.json["features"][0]["geometry"]["coordinates"] == [603480, 1191450]
    resp = client.get("/api/identify?x=603485&y=1191450&tolerance=10&layers=truong_hoc")
    assert [f["id"] for f in resp.json["features"]] == [1]
    assert resp.json["features"][0]["properties"]["distance_m"] == 5.0
    resp = client.get("/api/layers/truong_hoc/nearest?x=603900&y=1191700&k=1")
    assert resp.json["features"][0]["properties"]["ten"] == "Trường THCS Văn Lang"


def test_identify_writes_every_column_type_as_the_items_endpoint_does(client, catalogue):
    """identify's features are written by PostgreSQL; items' by Python: the same JSON values."""
    with catalogue.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS layerdata"))
        conn.execute(text(
            "CREATE TABLE layerdata.kiem_tra (fid serial PRIMARY KEY, ten text, gia numeric(12, 2), "
            "ty_le real, do_cao double precision, con_hieu_luc boolean, ngay date, luc timestamptz, "
            "luc_dia_phuong timestamp, so_lon bigint, "
            f"geom geometry(Point, {CITY_SRID}))"))
        conn.execute(text(
            "INSERT INTO layerdata.kiem_tra (ten, gia, ty_le, do_cao, con_hieu_luc, ngay, luc, luc_dia_phuong, "
            "so_lon, geom) VALUES "
            "(:ten, 1250000.50, 0.1, 2.345678901234, true, '2026-11-27', '2026-11-27 08:30:00+07', "
            " '2026-11-27 08:30:00', 9007199254740993, ST_SetSRID(ST_MakePoint(603480, 1191450), :s)), "
            "('Số 2', 7, 1e-7, -0.5, false, '1975-04-30', '2026-11-27 08:30:00.123456+07', "
            " '2026-11-27 08:30:00.5', -1, ST_SetSRID(ST_MakePoint(603481, 1191450), :s)), "
            "(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ST_SetSRID(ST_MakePoint(603482, 1191450), :s))"),
            {"s": CITY_SRID, "ten": 'Nhà "A" \\ Phường Bến Thành\nTầng 2\t✓'})
        conn.execute(insert(schema.layer).values(
            name="kiem_tra", title="Types", kind="generic", table_schema="layerdata", table_name="kiem_tra",
            geometry_type="Point", srid=CITY_SRID, access_level="public", properties=[]))
    found = client.get("/api/identify?x=603480&y=1191450&tolerance=5&layers=kiem_tra")
    assert found.status_code == 200
    features = found.json["features"]
    assert [f["id"] for f in features] == [1, 2, 3]
    for feature in features:
        item = client.get(f"/ogc/collections/kiem_tra/items/{feature['id']}").json
        props = dict(feature["properties"])
        assert props.pop("distance_m") == feature["id"] - 1
        assert props == item["properties"]
        assert feature["geometry"] == item["geometry"] and feature["layer"] == "kiem_tra"
    first = features[0]["properties"]
    assert first["ten"] == 'Nhà "A" \\ Phường Bến Thành\nTầng 2\t✓'
    assert first["luc"] == "2026-11-27T01:30:00Z" and first["luc_dia_phuong"] == "2026-11-27T08:30:00"
    assert features[1]["properties"]["luc"] == "2026-11-27T01:30:00.123456Z"
    assert first["gia"] == 1250000.5 and first["so_lon"] == 9007199254740993 and first["ngay"] == "2026-11-27"
