"""Bad input never makes a 500: every licensing POST/PATCH gets each field replaced by odd values."""

from __future__ import annotations

import pytest
from shapely.geometry import mapping

from tests.licensing.helpers import line, rect
from tests.licensing.test_api import users  # noqa: F401  (fixture)

ODD = (None, 0, -7, 2.5, True, "x" * 3000, "", [], {}, [1, "a"], {"type": "Point", "coordinates": [1]})


@pytest.fixture
def world(users):  # noqa: F811
    officer = users["officer"]
    body = {"ward_code": "26734", "sheet_no": 9, "parcel_no": 1, "geometry": mapping(rect(0, 0, 20, 20))}
    a = officer.post("/api/register/parcels", json=body).json["created"][0]["id"]
    b = officer.post("/api/register/parcels", json={**body, "parcel_no": 2,
                                                     "geometry": mapping(rect(20, 0, 40, 20))}).json["created"][0]["id"]
    d = users["public"].post("/api/dossiers", json={"kind": "construction_permit"}).json["id"]
    return a, b, d


def _cases(a, b, d):
    poly = mapping(rect(0, 0, 25, 20))
    return [
        ("officer", "post", "/api/register/parcels",
         {"ward_code": "26734", "sheet_no": 9, "parcel_no": 50, "geometry": mapping(rect(100, 0, 120, 20)),
          "land_use": "ODT", "legal_area": 400, "address": "1 Lê Lợi", "owner_name": "A", "attributes": {},
          "source": {"kind": "survey", "reference": "KS", "issued_on": "2026-01-01"}, "note": "n", "crs": "EPSG:9210"}),
        ("officer", "post", f"/api/register/parcels/{a}/split",
         {"line": mapping(line((10, -1), (10, 21))), "numbers": [60, 61], "source": {"kind": "decision",
                                                                                     "reference": "QD"}}),
        ("officer", "post", "/api/register/merge", {"parcel_ids": [a, b], "parcel_no": 70, "land_use": "ODT"}),
        ("officer", "post", f"/api/register/parcels/{a}/adjust", {"neighbour_id": b, "geometry": poly}),
        ("officer", "post", f"/api/register/parcels/{a}/attributes", {"changes": {"land_use": "TMD"}}),
        ("officer", "post", f"/api/register/parcels/{a}/rrr",
         {"kind": "restriction", "type": "corridor", "share": 0.5, "description": "d", "source": {"kind": "other",
                                                                                                  "reference": "r"}}),
        ("officer", "post", "/api/register/parties", {"name": "B", "kind": "person", "id_number": "1",
                                                      "address": "x"}),
        ("admin", "post", "/api/rules/far_limit", {"data": {"max_far": 6}, "effective_from": "2040-01-01",
                                                   "legal_basis": "x", "verify": True, "title": "t", "note": "n"}),
        ("admin", "post", "/api/corridors/generate", {"kinds": ["water"]}),
        ("officer", "post", "/api/checks",
         {"parcel_id": a, "footprint": mapping(rect(1, 1, 9, 9)), "floors": 2, "height": 7.0,
          "floor_elevation": 2.5, "use": "civil", "existing_urban": False, "subdivision_lots": [], "crs": "EPSG:9210"}),
        ("public", "post", "/api/dossiers", {"kind": "construction_permit", "title": "t", "parcel_id": a,
                                             "applicant_name": "n", "applicant_contact": "c", "data": {}}),
        ("public", "patch", f"/api/dossiers/{d}", {"title": "t", "parcel_id": a, "data": {"k": 1}}),
        ("public", "post", f"/api/dossiers/{d}/transitions", {"to": "submitted", "note": "n"}),
        ("officer", "post", f"/api/dossiers/{d}/check",
         {"footprint": mapping(rect(1, 1, 9, 9)), "floors": 2, "height": 7.0, "crs": "EPSG:9210"}),
    ]


def test_no_field_value_makes_a_500(users, world):  # noqa: F811
    failures = []
    for role, method, url, body in _cases(*world):
        client = users[role]
        for key in body:
            for odd in ODD:
                headers = {"If-Match": "*"} if method == "patch" else {}
                resp = getattr(client, method)(url, json={**body, key: odd}, headers=headers)
                if resp.status_code >= 500:
                    failures.append((url, key, repr(odd)[:40], resp.status_code))
        for odd in ODD:
            resp = getattr(client, method)(url, json=odd)
            if resp.status_code >= 500:
                failures.append((url, "<body>", repr(odd)[:40], resp.status_code))
    assert failures == [], "\n".join(map(str, failures))
