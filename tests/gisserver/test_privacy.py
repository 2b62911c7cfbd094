"""Personal data (the land user's name) is shown to staff only, in every query service."""

from __future__ import annotations

from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon, box
from sqlalchemy import insert

from gisserver import schema
from gisserver.crs import CITY_SRID, transformer
from layers.catalogue import bump_version
from tests.conftest import auth


def test_owner_name_only_for_staff(client, catalogue, make_user):
    with catalogue.begin() as conn:
        conn.execute(insert(schema.parcel).values(
            ward_code="26734", sheet_no=3, parcel_no=12, land_use="ODT", owner_name="Nguyễn Văn A",
            address="12 Lê Lợi", geom=from_shape(MultiPolygon([box(603470, 1191440, 603490, 1191460)]),
                                                 srid=CITY_SRID)))
        bump_version(conn, "parcels")
    lon, lat = transformer(CITY_SRID, 4326).transform(603480.0, 1191450.0)
    _, officer = make_user("officer")
    _, citizen = make_user("public")
    urls = [f"/api/identify?lon={lon}&lat={lat}", "/ogc/collections/parcels/items?f=json",
            "/api/parcels/lookup?ward=26734&sheet=3&parcel=12"]
    for url in urls:
        for headers in ({}, auth(citizen)):
            body = client.get(url, headers=headers).json
            props = [f["properties"] for f in body.get("features", [body])]
            assert props and all("owner_name" not in p for p in props), url
            assert all(p.get("address") == "12 Lê Lợi" for p in props), url
        body = client.get(url, headers=auth(officer)).json
        props = [f["properties"] for f in body.get("features", [body])]
        assert [p["owner_name"] for p in props] == ["Nguyễn Văn A"], url
    html = client.get("/ogc/collections/parcels/items?f=html").get_data(as_text=True)
    assert "Nguyễn Văn A" not in html and "12 Lê Lợi" in html
