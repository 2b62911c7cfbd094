"""The lean WSGI path for identify answers exactly what the Flask view answers, and declines the rest."""

from __future__ import annotations

import pytest
from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon, box
from sqlalchemy import insert, text

from gisserver import schema
from gisserver.crs import CITY_SRID, transformer
from gisserver.fastpath import FastPath, query_args
from layers.catalogue import bump_version
from tests.conftest import auth

X, Y = 603480.0, 1191450.0


@pytest.fixture
def parcel(catalogue):
    with catalogue.begin() as conn:
        conn.execute(insert(schema.parcel).values(
            ward_code="26734", sheet_no=3, parcel_no=12, land_use="ODT", owner_name="Nguyễn Văn A",
            address="12 Lê Lợi", geom=from_shape(MultiPolygon([box(X - 10, Y - 10, X + 10, Y + 10)]),
                                                 srid=CITY_SRID)))
        bump_version(conn, "parcels")
    return catalogue


def fast_path(app) -> FastPath:
    assert isinstance(app.wsgi_app, FastPath)
    return app.wsgi_app


def through_flask(client, url, headers):
    """The same request with an unrelated cookie: the fast path leaves every cookie request to Flask."""
    client.set_cookie("unrelated", "1")
    try:
        return client.get(url, headers=headers)
    finally:
        client.delete_cookie("unrelated")


def test_fast_identify_answers_the_same_bytes_as_the_flask_view(app, client, parcel, make_user):
    lon, lat = transformer(CITY_SRID, 4326).transform(X, Y)
    _, officer = make_user("officer")
    _, citizen = make_user("public")
    urls = [f"/api/identify?lon={lon}&lat={lat}", f"/api/identify?x={X}&y={Y}&out-crs=EPSG:9210",
            f"/api/identify?x={X + 15}&y={Y}&tolerance=10&layers=parcels,roads&limit=5",
            f"/api/identify?x={X + 500}&y={Y}"]
    fast = fast_path(app)
    for url in urls:
        for headers in ({}, auth(citizen), auth(officer)):
            before = fast.answered
            quick = client.get(url, headers=headers)
            assert fast.answered == before + 1, url  # answered before Flask
            slow = through_flask(client, url, headers)
            assert fast.answered == before + 1, url  # and this one by the Flask view
            assert quick.status_code == slow.status_code == 200, (url, quick.get_data(as_text=True))
            assert quick.get_data() == slow.get_data(), url
            for header in ("Content-Type", "Content-Crs", "Content-Length"):
                assert quick.headers[header] == slow.headers[header], (url, header)
    # what each caller sees is still decided per caller: the land user's name for staff only
    officer_view = client.get(urls[0], headers=auth(officer)).json["features"][0]["properties"]
    public_view = client.get(urls[0]).json["features"][0]["properties"]
    assert officer_view["owner_name"] == "Nguyễn Văn A"
    assert "owner_name" not in public_view and public_view["address"] == "12 Lê Lợi"


def test_errors_go_to_flask_and_keep_their_problem_document(app, client, parcel):
    fast = fast_path(app)
    before = fast.answered
    cases = {
        "/api/identify?lon=200&lat=10": 400,
        "/api/identify?x=1&y=2&crs=EPSG:999999": 400,
        "/api/identify?x=1&y=2&layers=nope": 404,
        "/api/identify?x=1&x=2&y=3": 200,  # a repeated parameter: Flask's first-wins rule decides
    }
    for url, status in cases.items():
        resp = client.get(url)
        assert resp.status_code == status, (url, resp.get_data(as_text=True))
        if status >= 400:
            assert resp.headers["Content-Type"] == "application/problem+json"
    assert client.get("/api/identify?x=1&y=2", headers={"Authorization": "Bearer gis_1_wrong"}).status_code == 401
    assert client.get("/api/identify?x=1&y=2", headers={"Authorization": "Basic abc"}).status_code == 401
    assert fast.answered == before


def test_access_rules_apply_on_the_fast_path(app, client, parcel, make_user):
    _, officer = make_user("officer")
    url = f"/api/identify?x={X}&y={Y}"
    with parcel.begin() as conn:
        conn.execute(text("UPDATE layer SET access_level = 'internal' WHERE name = 'parcels'"))
    try:
        assert client.get(url).status_code == 404  # anonymous callers do not learn the layer exists
        fast = fast_path(app)
        before = fast.answered
        assert [f["id"] for f in client.get(url, headers=auth(officer)).json["features"]]
        assert fast.answered == before + 1
    finally:
        with parcel.begin() as conn:
            conn.execute(text("UPDATE layer SET access_level = 'public' WHERE name = 'parcels'"))


def test_session_logins_are_served_by_flask(app, client, parcel, make_user):
    make_user("officer", username="fast.officer")
    assert client.post("/auth/login", json={"username": "fast.officer", "password": "s3cret-pass"}).status_code == 200
    fast = fast_path(app)
    before = fast.answered
    props = client.get(f"/api/identify?x={X}&y={Y}").json["features"][0]["properties"]
    assert props["owner_name"] == "Nguyễn Văn A"  # the session's role, which only Flask reads
    assert fast.answered == before


def test_query_args():
    assert query_args("x=1&y=2&layers=parcels%2Croads") == {"x": "1", "y": "2", "layers": "parcels,roads"}
    assert query_args("x=1&x=2") is None
    assert query_args("x=%FF") is None
    assert query_args("") == {}
