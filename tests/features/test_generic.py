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
