"""Sharing between agencies: a district officer cannot read another district's restricted layer in
any service, can after a grant, and loses it after revocation (cached tiles included)."""

from __future__ import annotations

import morecantile
import pytest
from geoalchemy2.shape import from_shape
from shapely.geometry import LineString, MultiLineString
from sqlalchemy import insert, text

from gisserver import schema
from gisserver.crs import CITY_SRID, transformer
from layers.catalogue import bump_version
from layers.sharing import create_agency, set_owner
from tests.conftest import auth

# a telecom duct by Ben Thanh market, in the city CRS
DUCT = LineString([(603400.0, 1191400.0), (603560.0, 1191500.0)])
LON, LAT = transformer(CITY_SRID, 4326).transform(603480.0, 1191450.0)


@pytest.fixture
def districts(catalogue, make_user):
    with catalogue.begin() as conn:
        q1 = create_agency(conn, "Q1", "UBND Quận 1", "district", actor="test")
        q8 = create_agency(conn, "Q8", "UBND Quận 8", "district", actor="test")
        conn.execute(insert(schema.telecom).values(kind="fibre duct", operator="VNPT",
                                                   geom=from_shape(MultiLineString([DUCT]), srid=CITY_SRID)))
        bump_version(conn, "telecom")
        set_owner(conn, "telecom", q8, actor="test")
    _, q8_officer = make_user("officer", agency_id=q8)
    _, q1_officer = make_user("officer", agency_id=q1)
    return {"q1": q1, "q8": q8, "q8_officer": q8_officer, "q1_officer": q1_officer}


def _tile():
    t = morecantile.tms.get("WebMercatorQuad").tile(LON, LAT, 16)
    return f"/tiles/telecom/{t.z}/{t.x}/{t.y}.mvt"


def _services(client, token):
    """Status codes of every service reading the telecom layer, as this caller."""
    h = auth(token)
    collections = client.get("/ogc/collections?f=json", headers=h).json["collections"]
    wms_caps = client.get("/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0", headers=h).get_data(as_text=True)
    identify = client.get(f"/api/identify?lon={LON}&lat={LAT}&layers=telecom&tolerance=5", headers=h)
    return {
        "collections": any(c["id"] == "telecom" for c in collections),
        "items": client.get("/ogc/collections/telecom/items?f=json", headers=h).status_code,
        "tile": client.get(_tile(), headers=h).status_code,
        "wms_caps": "<Name>telecom</Name>" in wms_caps,
        "identify": identify.status_code,
    }


def test_grant_and_revoke_apply_to_every_service(client, districts):
    owner = _services(client, districts["q8_officer"])
    assert owner == {"collections": True, "items": 200, "tile": 200, "wms_caps": True, "identify": 200}
    before = _services(client, districts["q1_officer"])
    assert before == {"collections": False, "items": 404, "tile": 404, "wms_caps": False, "identify": 404}

    # Q1 cannot share a layer it does not own
    denied = client.post("/api/layers/telecom/grants", json={"agency_id": districts["q1"], "permission": "read"},
                         headers=auth(districts["q1_officer"]))
    assert denied.status_code == 404  # it cannot even see the layer
    resp = client.post("/api/layers/telecom/grants", json={"agency_id": districts["q1"], "permission": "read"},
                       headers=auth(districts["q8_officer"]))
    assert resp.status_code == 201, resp.json
    grant_id = resp.json["id"]
    assert _services(client, districts["q1_officer"]) == owner

    assert client.delete(f"/api/layers/telecom/grants/{grant_id}",
                         headers=auth(districts["q8_officer"])).status_code == 204
    # the tile is in the cache now; revocation still applies to it
    assert _services(client, districts["q1_officer"]) == before


def test_grants_are_audited_and_listed(client, districts, catalogue):
    h = auth(districts["q8_officer"])
    gid = client.post("/api/layers/telecom/grants", json={"agency_id": districts["q1"], "permission": "edit"},
                      headers=h).json["id"]
    assert client.post("/api/layers/telecom/grants", json={"agency_id": districts["q1"], "permission": "edit"},
                       headers=h).status_code == 409
    listed = client.get("/api/layers/telecom/grants", headers=h).json["grants"]
    assert [g["agency_code"] for g in listed] == ["Q1"] and listed[0]["permission"] == "edit"
    client.delete(f"/api/layers/telecom/grants/{gid}", headers=h)
    assert client.get("/api/layers/telecom/grants", headers=h).json["grants"] == []
    with catalogue.connect() as conn:
        actions = conn.execute(text(
            "SELECT action FROM audit_log WHERE target_type = 'layer' AND target_id = 'telecom' ORDER BY id"
        )).scalars().all()
    assert actions == ["layer.owner", "layer.grant", "layer.revoke"]


@pytest.mark.parametrize("body", [
    {"agency_id": "x", "permission": "read"},
    {"permission": "read"},
    {"agency_id": 1, "permission": "own"},
    {"agency_id": 1, "permission": "read", "area": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}},
    {"agency_id": 1, "permission": "read", "area": "everything"},
])
def test_bad_grant_requests_are_4xx(client, districts, body):
    resp = client.post("/api/layers/telecom/grants", json=body, headers=auth(districts["q8_officer"]))
    assert 400 <= resp.status_code < 500 and resp.content_type == "application/problem+json"


def test_planner_and_anonymous_cannot_share(client, districts, make_user):
    _, planner = make_user("planner", agency_id=districts["q8"])
    body = {"agency_id": districts["q1"], "permission": "read"}
    assert client.post("/api/layers/telecom/grants", json=body, headers=auth(planner)).status_code == 403
    assert client.post("/api/layers/telecom/grants", json=body).status_code == 401


def test_area_limited_grant_shows_only_the_area(client, districts, catalogue):
    """A grant on an area (e.g. a district boundary) shows the grantee the features in it only."""
    far = LineString([(610000.0, 1195000.0), (610100.0, 1195050.0)])  # ~8 km away
    with catalogue.begin() as conn:
        conn.execute(insert(schema.telecom).values(kind="fibre duct", operator="Viettel",
                                                   geom=from_shape(MultiLineString([far]), srid=CITY_SRID)))
        bump_version(conn, "telecom")
    to_lonlat = transformer(CITY_SRID, 4326)
    ring = [to_lonlat.transform(x, y) for x, y in
            [(603300, 1191300), (603700, 1191300), (603700, 1191700), (603300, 1191700), (603300, 1191300)]]
    area = {"type": "Polygon", "coordinates": [ring]}
    resp = client.post("/api/layers/telecom/grants",
                       json={"agency_id": districts["q1"], "permission": "read", "area": area},
                       headers=auth(districts["q8_officer"]))
    assert resp.status_code == 201, resp.json
    owner_items = client.get("/ogc/collections/telecom/items?f=json", headers=auth(districts["q8_officer"])).json
    q1_items = client.get("/ogc/collections/telecom/items?f=json", headers=auth(districts["q1_officer"])).json
    assert {f["properties"]["operator"] for f in owner_items["features"]} == {"VNPT", "Viettel"}
    assert [f["properties"]["operator"] for f in q1_items["features"]] == ["VNPT"]
    far_lon, far_lat = to_lonlat.transform(610050.0, 1195025.0)
    far_hit = client.get(f"/api/identify?lon={far_lon}&lat={far_lat}&layers=telecom&tolerance=5",
                         headers=auth(districts["q1_officer"]))
    assert far_hit.status_code == 200 and far_hit.json["features"] == []
    near_hit = client.get(f"/api/identify?lon={LON}&lat={LAT}&layers=telecom&tolerance=5",
                          headers=auth(districts["q1_officer"]))
    assert [f["properties"]["operator"] for f in near_hit.json["features"]] == ["VNPT"]
