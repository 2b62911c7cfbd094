"""Spatial query endpoints against real PostGIS: identify, lookup, nearest, within, intersects."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gisserver.crs import CITY_SRID, transformer
from tests.conftest import auth
from tests.features.conftest import X0, Y0


def lonlat(x, y):
    return transformer(CITY_SRID, 4326).transform(x, y)


def ids(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [f["id"] for f in resp.json["features"]]


def test_identify_at_lon_lat_finds_the_current_parcel(client, sample):
    lon, lat = lonlat(X0 + 10, Y0 + 10)
    resp = client.get(f"/api/identify?lon={lon}&lat={lat}")
    assert ids(resp) == [1]  # the retired version (id 6) with the same footprint is not current
    feature = resp.json["features"][0]
    assert feature["layer"] == "parcels"
    assert feature["properties"]["address"] == "Số 1 Lê Lợi, Phường Bến Thành"
    assert feature["properties"]["distance_m"] == 0
    assert resp.headers["Content-Crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"


def test_identify_in_city_crs_with_tolerance(client, sample):
    # 5 m east of parcel 3: nothing at the point, parcel 3 within 10 m
    x, y = X0 + 65, Y0 + 10
    assert ids(client.get(f"/api/identify?x={x}&y={y}&crs=EPSG:9210")) == []
    assert ids(client.get(f"/api/identify?x={x}&y={y}&tolerance=10")) == [3]
    both = client.get(f"/api/identify?x={x}&y={y}&tolerance=30")
    assert ids(both) == [3, 2]  # nearest first
    # several layers in one call
    resp = client.get(f"/api/identify?x={X0 + 10}&y={Y0 + 2}&tolerance=15&layers=parcels,roads")
    assert [(f["layer"], f["id"]) for f in resp.json["features"]] == [("parcels", 1), ("parcels", 2), ("roads", 1)]


def test_identify_sees_new_data_after_a_version_bump(client, sample):
    from layers.catalogue import bump_version

    url = f"/api/identify?x={X0 + 500}&y={Y0 + 500}"
    assert ids(client.get(url)) == []
    with sample.begin() as conn:
        conn.execute(text(
            "INSERT INTO parcel (id, ward_code, sheet_no, parcel_no, geom) VALUES "
            "(99, '26734', 9, 9, ST_GeomFromText(:wkt, :srid))"),
            {"wkt": f"MULTIPOLYGON((({X0 + 490} {Y0 + 490}, {X0 + 510} {Y0 + 490}, {X0 + 510} {Y0 + 510}, "
                    f"{X0 + 490} {Y0 + 490})))", "srid": CITY_SRID})
        bump_version(conn, "parcels")
    try:
        assert ids(client.get(url)) == [99]
    finally:
        with sample.begin() as conn:
            conn.execute(text("DELETE FROM parcel WHERE id = 99"))
            bump_version(conn, "parcels")
    assert ids(client.get(url)) == []


def test_identify_survives_dropped_connections(client, sample):
    url = f"/api/identify?x={X0 + 10}&y={Y0 + 10}"
    assert ids(client.get(url)) == [1]
    with sample.connect() as conn:  # e.g. a database restart: every identify connection is killed
        killed = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'gisserver-identify' AND datname = current_database()")).scalar()
    assert killed >= 1
    assert ids(client.get(url)) == [1]
    assert ids(client.get(url)) == [1]


def test_identify_survives_a_dropped_connection_when_it_must_recompile(client, sample):
    from layers.catalogue import bump_version

    url = f"/api/identify?x={X0 + 10}&y={Y0 + 10}"
    with sample.begin() as conn:
        bump_version(conn, "parcels")
    # the query runs on connection A, sees the new version and compiles on a second one, B; both
    # go back to the pool (B first), so the next request queries on B and compiles on A
    assert ids(client.get(url)) == [1]
    with sample.begin() as conn:  # A dropped by the server while idle, and the layer reloaded
        pids = conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'gisserver-identify' "
            "AND datname = current_database() ORDER BY backend_start")).scalars().all()
        assert len(pids) == 2
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
        bump_version(conn, "parcels")
    assert ids(client.get(url)) == [1]
    assert ids(client.get(url)) == [1]


def test_identify_bad_input_is_problem_json(client, sample):
    for url in ("/api/identify", "/api/identify?lon=200&lat=10", "/api/identify?lon=abc&lat=1",
                "/api/identify?x=1&y=2&crs=EPSG:999999", "/api/identify?lon=106&lat=10&tolerance=-1",
                "/api/identify?lon=106&lat=10&limit=0", "/api/identify?lon=106&lat=10&out-crs=foo",
                "/api/identify?lon=106&lat=10&layers=" + ",".join(["parcels"] * 20)):
        resp = client.get(url)
        assert resp.status_code == 400, url
        assert resp.content_type == "application/problem+json"
    resp = client.get("/api/identify?lon=106&lat=10&layers=no_such_layer")
    assert resp.status_code == 404 and resp.content_type == "application/problem+json"


def test_identify_respects_access_levels(client, sample, make_user):
    url = f"/api/identify?x={X0 + 10}&y={Y0 + 50}&tolerance=1&layers=power_lines"
    assert client.get(url).status_code == 404
    _, token = make_user("officer")
    assert ids(client.get(url, headers=auth(token))) == [1]


def test_parcel_lookup(client, sample):
    resp = client.get("/api/parcels/lookup?ward=26734&sheet=5&parcel=1")
    assert resp.status_code == 200
    assert resp.json["id"] == 1 and resp.json["properties"]["address"] == "Số 1 Lê Lợi, Phường Bến Thành"
    assert "owner_name" not in resp.json["properties"]
    assert client.get("/api/parcels/lookup?ward=26734&sheet=5&parcel=77").status_code == 404
    assert client.get("/api/parcels/lookup?ward=26734&sheet=x&parcel=1").status_code == 400
    assert client.get("/api/parcels/lookup?sheet=5&parcel=1").status_code == 400
    # a quote in the ward code is a value, not SQL
    resp = client.get("/api/parcels/lookup?ward=26734'--&sheet=5&parcel=1")
    assert resp.status_code == 404


def test_parcel_vertex_in_city_crs_equals_stored_coordinates(client, sample):
    resp = client.get("/api/parcels/lookup?ward=26734&sheet=5&parcel=2&out-crs=EPSG:9210")
    ring = resp.json["geometry"]["coordinates"][0][0]
    assert "crs" not in resp.json["geometry"]
    assert [X0 + 20, Y0] in ring and [X0 + 40, Y0 + 20] in ring
    assert resp.headers["Content-Crs"] == "<http://www.opengis.net/def/crs/EPSG/0/9210>"


def test_parcel_vertex_in_crs84_matches_pyproj(client, sample):
    resp = client.get("/api/parcels/lookup?ward=26734&sheet=5&parcel=2")
    ring = resp.json["geometry"]["coordinates"][0][0]
    expected = lonlat(X0 + 20, Y0)
    assert min(abs(lon - expected[0]) + abs(lat - expected[1]) for lon, lat in ring) < 1e-7
    # EPSG:4326 is latitude first
    resp = client.get("/api/parcels/lookup?ward=26734&sheet=5&parcel=2&out-crs=EPSG:4326")
    ring = resp.json["geometry"]["coordinates"][0][0]
    assert min(abs(lat - expected[1]) + abs(lon - expected[0]) for lat, lon in ring) < 1e-7


def test_nearest_is_ordered_by_distance(client, sample):
    lon, lat = lonlat(X0 + 290, Y0 + 100)
    resp = client.get(f"/api/layers/roads/nearest?lon={lon}&lat={lat}&k=2")
    assert ids(resp) == [2, 1]
    d = [f["properties"]["distance_m"] for f in resp.json["features"]]
    assert d[0] == pytest.approx(10, abs=0.01) and d[1] > d[0]
    resp = client.get(f"/api/layers/parcels/nearest?x={X0 + 100}&y={Y0 + 10}&k=3")
    assert ids(resp) == [3, 2, 1]
    assert ids(client.get(f"/api/layers/parcels/nearest?x={X0 + 100}&y={Y0 + 10}&k=3&max-distance=50")) == [3]
    assert client.get(f"/api/layers/parcels/nearest?x={X0}&y={Y0}&k=0").status_code == 400
    assert client.get(f"/api/layers/parcels/nearest?x={X0}&y={Y0}&k=abc").status_code == 400


def test_within_distance_in_metres(client, sample):
    # 30 m from the centre of parcel 1: parcels 1, 2 and 4 (their edges are within 30 m), not 3
    resp = client.get(f"/api/layers/parcels/within?x={X0 + 10}&y={Y0 + 10}&distance=15")
    assert sorted(ids(resp)) == [1, 2, 4]
    assert resp.json["numberMatched"] == 3
    resp = client.get(f"/api/layers/parcels/within?x={X0 + 10}&y={Y0 + 10}&distance=15&filter=land_use='ODT'")
    assert ids(resp) == [1]
    assert client.get(f"/api/layers/parcels/within?x={X0}&y={Y0}").status_code == 400
    assert client.get(f"/api/layers/parcels/within?x={X0}&y={Y0}&distance=1e9").status_code == 400


def test_intersects_geojson_body(client, sample):
    corners = [lonlat(X0 + 15, Y0 + 5), lonlat(X0 + 25, Y0 + 5), lonlat(X0 + 25, Y0 + 15), lonlat(X0 + 15, Y0 + 15)]
    polygon = {"type": "Polygon", "coordinates": [[list(c) for c in corners + corners[:1]]]}
    resp = client.post("/api/layers/parcels/intersects", json=polygon)
    assert sorted(ids(resp)) == [1, 2]
    feature = {"type": "Feature", "properties": {}, "geometry": {
        "type": "LineString", "coordinates": [[X0 - 5, Y0 + 30], [X0 + 5, Y0 + 30]]}}
    resp = client.post("/api/layers/parcels/intersects?crs=EPSG:9210&out-crs=EPSG:3857", json=feature)
    assert ids(resp) == [4]
    assert resp.headers["Content-Crs"] == "<http://www.opengis.net/def/crs/EPSG/0/3857>"
    for bad in ({"type": "Polygon", "coordinates": [[1, 2]]}, {"type": "Circle"}, [1, 2]):
        resp = client.post("/api/layers/parcels/intersects", json=bad)
        assert resp.status_code == 400 and resp.content_type == "application/problem+json"
    resp = client.post("/api/layers/parcels/intersects", data="not json", content_type="application/json")
    assert resp.status_code == 400


@pytest.mark.parametrize("url", [
    "/ogc/collections/parcels/items?bbox=1e30,1e30,2e30,2e30&bbox-crs=EPSG:3405",
    "/ogc/collections/parcels/items?bbox=-1e30,-1e30,1e30,1e30&bbox-crs=EPSG:3857",
    "/ogc/collections/parcels/items?bbox=-180,-90,180,90&crs=EPSG:3857",
    "/api/identify?x=1e300&y=1e300&crs=EPSG:3405",
    "/api/identify?x=1e20&y=5&crs=EPSG:3857",
    "/api/layers/parcels/nearest?x=1e300&y=1e300&crs=EPSG:3405",
    "/api/layers/parcels/within?x=1e300&y=1e300&crs=EPSG:3405&distance=5",
    "/ogc/collections/parcels/items?filter=S_INTERSECTS(geometry, POINT(1e300 1e300))&filter-crs=EPSG:3405",
    "/ogc/collections/parcels/items?filter=S_INTERSECTS(geometry, POLYGON((0 0, 1 1, 0 0)))",
    "/ogc/collections/parcels/items?filter=area / 0 > 1",
    "/ogc/collections/parcels/items?filter=parcel_no > 99999999999999999999",
    "/ogc/collections/parcels/items?filter=S_DWITHIN(geometry, POINT(106 10), 10, meters)",
    "/ogc/collections/parcels/items?offset=99999999999999999999",
    "/ogc/collections/parcels/items/99999999999999999999",
    "/api/parcels/lookup?ward=x&sheet=1&parcel=99999999999",
])
def test_absurd_values_are_client_errors(client, sample, url):
    """Coordinates outside a CRS's domain, division by zero, huge numbers: an answer, never a 500."""
    resp = client.get(url)
    assert resp.status_code < 500, resp.get_data(as_text=True)
    if resp.status_code >= 400:
        assert resp.content_type == "application/problem+json"
