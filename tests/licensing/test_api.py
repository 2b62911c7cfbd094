"""The licensing HTTP API: roles, problem+json errors, register, rules, checks (JSON/HTML/PDF), dossiers."""

from __future__ import annotations

import io

import pytest
from shapely.geometry import mapping

from tests.conftest import auth
from tests.licensing.helpers import add_red_line, add_road, add_zone, line, rect

ROLES = ("public", "officer", "planner", "admin")
PDF = b"%PDF-1.4\n" + b"1" * 500 + b"\n%%EOF\n"


@pytest.fixture
def users(app, lic_db):
    """A test client per role, logged in through its session (the login view itself is tested with
    the foundation; here it would only add argon2 time)."""
    from gisserver.security import create_user

    clients = {}
    with lic_db.begin() as conn:
        for role in ROLES:
            user_id = create_user(conn, f"{role}_api", role)
            c = app.test_client()
            with c.session_transaction() as sess:
                sess["user"] = {"id": user_id, "username": f"{role}_api", "role": role, "agency_id": None}
            clients[role] = c
    return clients


def _create(c, no, geom, **extra):
    body = {"ward_code": "26734", "sheet_no": 3, "parcel_no": no, "geometry": mapping(geom), "land_use": "ODT",
            **extra}
    return c.post("/api/register/parcels", json=body)


def test_register_api_roles_errors_and_lineage(client, users, make_user):
    officer = users["officer"]
    assert _create(client, 1, rect(0, 0, 20, 20)).status_code == 401
    assert _create(users["public"], 1, rect(0, 0, 20, 20)).status_code == 403
    _, token = make_user("officer")  # bearer tokens work as well as sessions
    created = client.post("/api/register/parcels", headers=auth(token), json={
        "ward_code": "26734", "sheet_no": 3, "parcel_no": 1, "geometry": mapping(rect(0, 0, 20, 20)),
        "source": {"kind": "survey", "reference": "KS-01"}})
    assert created.status_code == 201
    parcel_id = created.json["created"][0]["id"]
    overlap = _create(officer, 2, rect(10, 10, 30, 30))
    assert overlap.status_code == 422 and overlap.content_type == "application/problem+json"
    assert overlap.json["code"] == "rule-violation" and overlap.json["geometry"]["type"] == "Polygon"
    bowtie = {"type": "Polygon", "coordinates": [[[600000, 1190000], [600010, 1190010], [600010, 1190000],
                                                  [600000, 1190010], [600000, 1190000]]]}
    bad = officer.post("/api/register/parcels", json={"ward_code": "26734", "sheet_no": 3, "parcel_no": 5,
                                                      "geometry": bowtie})
    assert bad.status_code == 400 and bad.json["code"] == "invalid-geometry"
    assert officer.post("/api/register/parcels", data="x").status_code == 400
    split = officer.post(f"/api/register/parcels/{parcel_id}/split",
                         json={"line": mapping(line((10, -1), (10, 21))), "note": "tách thửa"})
    assert split.status_code == 201 and len(split.json["created"]) == 2
    child = split.json["created"][0]["id"]
    lineage = users["planner"].get(f"/api/register/parcels/{child}/lineage")
    assert [e["parent_id"] for e in lineage.json["edges"]] == [parcel_id]
    listing = officer.get("/api/register/parcels", query_string={"ward": "26734", "at": split.json["at"]})
    assert [f["properties"]["parcel_no"] for f in listing.json["features"]] == [2, 3]
    assert officer.get("/api/register/parcels", query_string={"at": "yesterday"}).status_code == 400
    history = officer.get(f"/api/register/parcels/{parcel_id}/history")
    assert [h["action"] for h in history.json] == ["parcel.split", "parcel.create"]
    assert officer.get("/api/register/parcels/999999").status_code == 404


def test_rules_api_admin_only_and_validated(client, users):
    listing = client.get("/api/rules")
    assert listing.status_code == 200
    assert {"density_individual_house", "setback_red_line"} <= {r["rule_id"] for r in listing.json}
    body = {"data": {"max_far": 6}, "effective_from": "2031-01-01", "note": "test"}
    admin = users["admin"]
    assert users["planner"].post("/api/rules/far_limit", json=body).status_code == 403
    bad = admin.post("/api/rules/far_limit", json={**body, "data": {"max_far": "six"}})
    assert bad.status_code == 400 and "max_far" in bad.json["detail"]
    assert admin.post("/api/rules/far_limit", json={**body, "effective_from": "soon"}).status_code == 400
    ok = admin.post("/api/rules/far_limit", json=body)
    assert ok.status_code == 201 and ok.json["version"] == 2
    assert [v["version"] for v in client.get("/api/rules/far_limit").json] == [1, 2]
    assert client.get("/api/rules/nope").status_code == 404


def test_check_api_json_html_pdf(client, users, lic_db):
    with lic_db.begin() as conn:
        road = add_road(conn, [(-100, -10), (100, -10)], row_width=12)
        add_red_line(conn, [(-100, -4), (100, -4)], road_id=road)
        add_zone(conn, rect(-100, -4, 100, 100), max_density=0.8, max_far=5, max_floors=5, max_height=21,
                 subdivision_zone=2)
    officer = users["officer"]
    parcel_id = _create(officer, 1, rect(0, -4, 10, 21)).json["created"][0]["id"]
    body = {"parcel_id": parcel_id, "footprint": mapping(rect(0, -5, 10, 12)), "floors": 6, "height": 22,
            "floor_elevation": 2.4}
    resp = users["public"].post("/api/checks", json=body)
    assert resp.status_code == 200 and resp.json["overall"] == "fail"
    failing = {r["rule"] for r in resp.json["results"] if r["status"] == "fail"}
    assert {"inside_parcel", "red_line_crossing", "zone_floors", "zone_height"} <= failing
    html = officer.post("/api/checks?format=html", json=body)
    assert html.status_code == 200 and html.mimetype == "text/html"
    page = html.get_data(as_text=True)
    assert "<svg" in page and "QCVN 01:2021" in page and "inside_parcel" in page
    pdf = officer.post("/api/checks?format=pdf", json=body)
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert client.post("/api/checks", json=body).status_code == 401
    assert officer.post("/api/checks?format=docx", json=body).status_code == 400
    for bad in ({"floors": "many"}, {"crs": "EPSG:0"}, {"footprint": {"type": "Point", "coordinates": [1, 2]}}):
        assert officer.post("/api/checks", json={**body, **bad}).status_code == 400
    assert officer.post("/api/checks", json={**body, "parcel_id": 999999}).status_code == 404


def test_dossier_api_etag_transitions_attachments_public(client, users):
    citizen, officer = users["public"], users["officer"]
    created = citizen.post("/api/dossiers", json={"kind": "construction_permit_house", "title": "Nhà 4 tầng",
                                                  "applicant_name": "Lê Văn C"})
    assert created.status_code == 201 and created.headers["ETag"] == '"1"'
    dossier_id, code = created.json["id"], created.json["code"]
    assert citizen.post("/api/dossiers", json={"kind": "spaceport"}).status_code == 400
    url = f"/api/dossiers/{dossier_id}"
    assert citizen.patch(url, json={"title": "x"}).status_code == 428
    stale = citizen.patch(url, json={"title": "x"}, headers={"If-Match": '"7"'})
    assert stale.status_code == 412 and stale.json["code"] == "version-mismatch"
    ok = citizen.patch(url, json={"title": "Nhà 5 tầng"}, headers={"If-Match": created.headers["ETag"]})
    assert ok.status_code == 200 and ok.headers["ETag"] == '"2"'
    upload = citizen.post(f"{url}/attachments", content_type="multipart/form-data",
                          data={"file": (io.BytesIO(PDF), "ban-ve.pdf", "application/pdf")})
    assert upload.status_code == 201 and len(upload.json["sha256"]) == 64
    wrong = citizen.post(f"{url}/attachments", content_type="multipart/form-data",
                         data={"file": (io.BytesIO(b"<html>"), "x.pdf", "application/pdf")})
    assert wrong.status_code == 415
    with officer.get(f"{url}/attachments/{upload.json['id']}") as download:
        assert download.status_code == 200 and download.data == PDF
    submit = citizen.post(f"{url}/transitions", json={"to": "submitted"})
    assert submit.status_code == 200 and submit.json["state"] == "submitted"
    assert citizen.post(f"{url}/transitions", json={"to": "accepted"}).status_code == 403
    assert officer.post(f"{url}/transitions", json={"to": "issued"}).status_code == 409
    accepted = officer.post(f"{url}/transitions", json={"to": "accepted"})
    assert accepted.status_code == 200 and accepted.json["due_date"]
    public = client.get(f"/public/dossiers/{code}")
    assert public.status_code == 200 and public.json["state"] == "accepted"
    assert "Lê Văn C" not in public.get_data(as_text=True) and "applicant_name" not in public.json
    assert client.get("/public/dossiers/HS2026-NOTREAL1").status_code == 404
    assert citizen.get("/api/dossiers/overdue").status_code == 403
    overdue = officer.get("/api/dossiers/overdue", query_string={"today": "2099-01-01"})
    assert [d["code"] for d in overdue.json] == [code]
    history = citizen.get(f"{url}/history")
    assert [h["action"] for h in history.json][:2] == ["dossier.accepted", "dossier.submitted"]
    assert users["planner"].get(url).json["allowed_transitions"] == ["under_review"]


def test_register_api_merge_adjust_attributes_rrr_and_corridors(users, lic_db):
    officer = users["officer"]
    a = _create(officer, 1, rect(0, 0, 20, 20)).json["created"][0]["id"]
    b = _create(officer, 2, rect(20, 0, 40, 20)).json["created"][0]["id"]
    party = officer.post("/api/register/parties", json={"name": "Công ty TNHH A", "kind": "organization"})
    assert party.status_code == 201
    assert officer.post("/api/register/parties", json={"name": ""}).status_code == 400
    rrr = officer.post(f"/api/register/parcels/{a}/rrr", json={"kind": "right", "type": "land_use_right",
                                                               "party_id": party.json["id"], "share": 1})
    assert rrr.status_code == 201
    assert officer.post(f"/api/register/parcels/{a}/rrr", json={"kind": "gift", "type": "x"}).status_code == 400
    adjusted = officer.post(f"/api/register/parcels/{a}/adjust",
                            json={"neighbour_id": b, "geometry": mapping(rect(0, 0, 25, 20))})
    assert adjusted.status_code == 201
    new_a, new_b = (c["id"] for c in adjusted.json["created"])
    assert officer.post(f"/api/register/parcels/{new_a}/adjust",
                        json={"neighbour_id": "x", "geometry": mapping(rect(0, 0, 25, 20))}).status_code == 400
    changed = officer.post(f"/api/register/parcels/{new_a}/attributes", json={"changes": {"address": "12 Lê Lợi"}})
    assert changed.status_code == 201
    v3 = changed.json["created"][0]["id"]
    versions = officer.get(f"/api/register/parcels/{v3}/versions")
    assert [f["properties"]["current"] for f in versions.json["features"]] == [False, False, True]
    one = officer.get(f"/api/register/parcels/{v3}")
    assert one.json["properties"]["rrr"][0]["type"] == "land_use_right"
    merged = officer.post("/api/register/merge", json={"parcel_ids": [v3, new_b], "parcel_no": 7})
    assert merged.status_code == 201 and merged.json["created"][0]["parcel_no"] == 7
    assert officer.post("/api/register/merge", json={"parcel_ids": "1,2"}).status_code == 400
    again = officer.post("/api/register/merge", json={"parcel_ids": [v3, new_b]})
    assert again.status_code == 409 and again.content_type == "application/problem+json"
    assert officer.post("/api/corridors/generate", json={}).status_code == 403
    generated = users["admin"].post("/api/corridors/generate", json={"kinds": ["water"]})
    assert generated.status_code == 200 and generated.json == {"water": 0}
    assert users["admin"].post("/api/corridors/generate", json={"kinds": ["lava"]}).status_code == 400
    retired_check = officer.post("/api/checks", json={"parcel_id": a, "footprint": mapping(rect(1, 1, 9, 9)),
                                                      "floors": 2, "height": 7})
    assert retired_check.status_code == 409
    assert users["public"].get("/api/register/parcels").status_code == 403


def test_dossier_check_is_kept_with_the_dossier(users, lic_db):
    officer = users["officer"]
    parcel_id = _create(officer, 1, rect(0, 0, 20, 20)).json["created"][0]["id"]
    d = users["public"].post("/api/dossiers", json={"kind": "construction_permit_house", "parcel_id": parcel_id})
    url = f"/api/dossiers/{d.json['id']}"
    body = {"footprint": mapping(rect(2, 2, 18, 18)), "floors": 3, "height": 11.0, "floor_elevation": 2.4}
    assert users["public"].post(f"{url}/check", json=body).status_code == 403
    done = officer.post(f"{url}/check", json=body)
    assert done.status_code == 200 and done.json["parcel"]["id"] == parcel_id
    kept = officer.get(url)
    assert kept.json["data"]["check"]["overall"] == done.json["overall"] and kept.json["version"] == 2
    history = officer.get(f"{url}/history").json
    assert history[0]["action"] == "dossier.check" and history[0]["after"]["overall"] == done.json["overall"]
    assert officer.post(f"{url}/check", json={**body, "floors": "x"}).status_code == 400
    empty = users["public"].post("/api/dossiers", json={"kind": "construction_permit_house"}).json["id"]
    assert officer.post(f"/api/dossiers/{empty}/check", json=body).status_code == 400
