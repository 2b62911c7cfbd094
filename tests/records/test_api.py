"""HTTP API of the land records: roles, problem+json errors (400/401/403/404/422), audited writes."""

from __future__ import annotations

import pytest
from shapely.geometry import mapping

from licensing import certificates as gcn
from licensing import register
from licensing.dossiers import Actor, create_dossier
from tests.conftest import auth
from tests.records.helpers import E0, N0, add_building, line, rect
from tests.records.test_certificates import approved_dossier

PROBLEM = "application/problem+json"


class _Users(dict):
    """Tokens by role, made on first use (each user costs an argon2 hash)."""

    def __init__(self, make_user):
        super().__init__()
        self.make_user = make_user

    def __missing__(self, role):
        self[role] = self.make_user(role)[1]
        return self[role]


@pytest.fixture
def users(records_db, make_user):
    return _Users(make_user)


def _problem(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    return resp.get_json()


def test_house_numbering_endpoints(client, records_db, users):
    street = {"name": "Đường số 9", "geometry": mapping(line((0, 0), (200, 0))), "ward_code": "27001"}
    _problem(client.post("/api/records/streets", json=street), 401)
    _problem(client.post("/api/records/streets", json=street, headers=auth(users["planner"])), 403)
    bad = client.post("/api/records/streets", json={**street, "geometry": {"type": "Point", "coordinates": [E0, N0]}},
                      headers=auth(users["officer"]))
    assert "LineString" in _problem(bad, 400)["detail"]
    _problem(client.post("/api/records/streets", json={**street, "colour": "red"}, headers=auth(users["officer"])),
             400)
    resp = client.post("/api/records/streets", json=street, headers=auth(users["officer"]))
    assert resp.status_code == 201
    sid = resp.get_json()["id"]
    with records_db.begin() as conn:
        for x0 in (4.5, 20.5, 24.5):
            add_building(conn, x0, -10, x0 + 3, -2)
        add_building(conn, 4.5, 2, 7.5, 10)
    resp = client.post(f"/api/records/streets/{sid}/numbering", json={}, headers=auth(users["officer"]))
    assert resp.status_code == 200
    assert sorted(n["label"] for n in resp.get_json()["assigned"]) == ["12", "14", "3", "4"]
    numbers = client.get(f"/api/records/streets/{sid}/numbers", headers=auth(users["planner"])).get_json()["numbers"]
    n14 = next(n for n in numbers if n["label"] == "14")
    fc = client.get(f"/api/records/streets/{sid}/numbers?f=geojson", headers=auth(users["planner"]))
    assert fc.mimetype == "application/geo+json"
    assert {f["properties"]["label"] for f in fc.get_json()["features"]} == {"3", "4", "12", "14"}
    assert fc.get_json()["features"][0]["geometry"]["type"] == "Point"
    kiosk = client.post(f"/api/records/streets/{sid}/numbers",
                        json={"access_point": {"type": "Point", "coordinates": [E0 + 24, N0 - 2]}},
                        headers=auth(users["officer"]))
    assert kiosk.status_code == 201 and kiosk.get_json()["label"] == "12A"
    wrong = client.post(f"/api/records/house-numbers/{n14['id']}/renumber", json={"label": "15", "reason": "x"},
                        headers=auth(users["officer"]))
    assert "parity" in _problem(wrong, 422)["detail"]
    ok = client.post(f"/api/records/house-numbers/{n14['id']}/renumber", json={"label": "16", "reason": "survey"},
                     headers=auth(users["officer"]))
    assert ok.status_code == 201 and ok.get_json()["label"] == "16"
    history = client.get(f"/api/records/house-numbers/{n14['id']}/history", headers=auth(users["officer"]))
    assert {e["action"] for e in history.get_json()["history"]} >= {"house_number.assign", "house_number.retire"}
    _problem(client.get("/api/records/streets/9999", headers=auth(users["officer"])), 404)
    _problem(client.get("/api/records/house-numbers/9999", headers=auth(users["officer"])), 404)
    _problem(client.get("/api/records/house-numbers/99999999999999999999", headers=auth(users["officer"])), 404)
    _problem(client.post("/api/records/streets/9999/numbering", json={}, headers=auth(users["officer"])), 404)
    for bad in ({"max_distance": "far"}, {"building_ids": [2**70]}, {"dossier_id": 2**70}, {"colour": 1}):
        _problem(client.post(f"/api/records/streets/{sid}/numbering", json=bad, headers=auth(users["officer"])), 400)
    _problem(client.post(f"/api/records/streets/{sid}/numbers", json={"building_id": 2**70},
                         headers=auth(users["officer"])), 400)
    with records_db.begin() as conn:
        dossier = create_dossier(conn, Actor("o", "officer"), kind="construction_permit_house")["id"]
    cert = client.post(f"/api/records/house-numbers/{kiosk.get_json()['id']}/certificates",
                       json={"dossier_id": dossier}, headers=auth(users["officer"]))
    assert cert.status_code == 201
    page = client.get(f"/api/records/number-certificates/{cert.get_json()['id']}", headers=auth(users["planner"]))
    assert page.mimetype == "text/html" and "Số 12A, Đường số 9" in page.get_data(as_text=True)
    _problem(client.get("/api/records/number-certificates/999", headers=auth(users["planner"])), 404)
    _problem(client.post(f"/api/records/house-numbers/{kiosk.get_json()['id']}/certificates",
                         json={"dossier_id": 999}, headers=auth(users["officer"])), 400)
    found = client.get(f"/api/records/addresses?x={E0 + 22}&y={N0 - 5}", headers=auth(users["officer"]))
    assert found.get_json()["label"] == "12"
    _problem(client.get("/api/records/addresses?x=abc&y=1", headers=auth(users["officer"])), 400)


@pytest.fixture
def land(records_db):
    with records_db.begin() as conn:
        ids = [register.create_parcel(conn, "officer", ward_code="27001", sheet_no=3, parcel_no=n, land_use="ODT",
                                      geom=rect(20 * i, 0, 20 * (i + 1), 20))["created"][0]["id"]
               for i, n in enumerate((11, 12))]
        party = register.create_party(conn, "officer", name="Phạm Minh Đức")
        other = register.create_party(conn, "officer", name="Công ty CP Bến Nghé", kind="organization")
    return ids, party, other


def test_allocation_endpoints(client, records_db, users, land):
    ids, party, other = land
    lease = {"decision_no": "QĐ 88/QĐ-UBND", "decision_date": "2026-01-02", "kind": "lease", "payment": "annual",
             "party_id": other, "land_use": "TMD", "term_start": "2026-01-10", "term_end": "2026-12-31",
             "parcel_ids": [ids[1]]}
    _problem(client.post("/api/records/allocations", json=lease, headers=auth(users["planner"])), 403)
    resp = client.post("/api/records/allocations", json=lease, headers=auth(users["officer"]))
    assert resp.status_code == 201, resp.get_json()
    lease_id = resp.get_json()["id"]
    clash = {**lease, "decision_no": "QĐ 89/QĐ-UBND", "party_id": party, "parcel_ids": None,
             "geometry": mapping(rect(30, 0, 40, 20))}
    clash.pop("parcel_ids")
    body = _problem(client.post("/api/records/allocations", json=clash, headers=auth(users["officer"])), 422)
    assert body["conflicts"][0]["decision_no"] == "QĐ 88/QĐ-UBND" and body["geometry"]["type"] == "Polygon"
    for bad_field in ({"term_end": "31/12/2026"}, {"party_id": 2**70}, {"parcel_ids": [2**70]}, {"purpose": 7},
                      {"decision_no": ["x"]}, {"geometry": {"type": "Polygon", "coordinates": [[1, 2]]}}):
        _problem(client.post("/api/records/allocations", json={**lease, **bad_field}, headers=auth(users["officer"])),
                 400)
    _problem(client.post("/api/records/allocations", json={**clash, "crs": "EPSG:999999"},
                         headers=auth(users["officer"])), 400)
    soon = client.get("/api/records/allocations/expiring?within_days=30&today=2026-12-15",
                      headers=auth(users["planner"])).get_json()
    assert [a["id"] for a in soon["allocations"]] == [lease_id]
    gone = client.get("/api/records/allocations/expired?today=2027-01-15", headers=auth(users["planner"])).get_json()
    assert [a["days_expired"] for a in gone["allocations"]] == [15]
    _problem(client.get("/api/records/allocations/expiring?within_days=soon", headers=auth(users["planner"])), 400)
    _problem(client.get("/api/records/allocations/expired?today=tomorrow", headers=auth(users["planner"])), 400)
    _problem(client.get("/api/records/allocations/9999", headers=auth(users["planner"])), 404)
    assert client.get(f"/api/records/allocations/{lease_id}", headers=auth(users["planner"])).get_json()[
        "parcels"][0]["parcel_id"] == ids[1]
    revoked = client.post(f"/api/records/allocations/{lease_id}/revoke", json={"reason": "QĐ 90: thu hồi"},
                          headers=auth(users["officer"]))
    assert revoked.get_json()["status"] == "revoked"
    _problem(client.post(f"/api/records/allocations/{lease_id}/revoke", json={"reason": "again"},
                         headers=auth(users["officer"])), 409)


def test_certificate_endpoints(client, records_db, users, land):
    ids, party, _ = land
    _problem(client.post("/api/records/certificate-dossier-kinds", headers=auth(users["officer"])), 403)
    assert client.post("/api/records/certificate-dossier-kinds", headers=auth(users["admin"])).status_code == 200
    with records_db.begin() as conn:
        register.add_rrr(conn, "officer", ids[0], kind="right", type="land_use_right", party_id=party, share=1.0)
        dossier = approved_dossier(conn, "certificate_first_issue", ids[0])
    body = {"dossier_id": dossier, "parcels": [ids[0]], "serial": "DA 654321", "issuing_authority": "Sở TN&MT",
            "assets": [{"kind": "house", "description": "Nhà ở", "floor_area": 80, "floors": 2}]}
    bad = client.post("/api/records/certificates", json={**body, "holders": [{"party_id": party, "share": 90}]},
                      headers=auth(users["officer"]))
    assert "sum to 90" in _problem(bad, 422)["detail"]
    for bad_field in ({"parcels": "all"}, {"parcels": [2**70]}, {"dossier_id": 2**70}, {"supersedes_id": 2**64},
                      {"holders": [{"party_id": 2**70, "share": 100}]}, {"assets": "house"}, {"serial": None},
                      {"issue_date": "27/11/2026"}, {"parcels": [{"parcel_id": ids[0], "term_end": "soon"}]}):
        _problem(client.post("/api/records/certificates", json={**body, **bad_field}, headers=auth(users["officer"])),
                 400)
    resp = client.post("/api/records/certificates", json=body, headers=auth(users["officer"]))
    assert resp.status_code == 201, resp.get_json()
    cert = resp.get_json()
    assert cert["holders"][0]["share"] == 100.0 and cert["status"] == "valid"
    html = client.get(f"/api/records/certificates/{cert['id']}/extract", headers=auth(users["planner"]))
    assert html.mimetype == "text/html" and "<svg" in html.get_data(as_text=True)
    pdf = client.get(f"/api/records/certificates/{cert['id']}/extract.pdf", headers=auth(users["planner"]))
    assert pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF-")
    js = client.get(f"/api/records/certificates/{cert['id']}/extract?f=json", headers=auth(users["planner"]))
    assert [e["neighbour"] for e in js.get_json()["plans"][0]["edges"]] == [None, "12", None, None]
    _problem(client.get(f"/api/records/certificates/{cert['id']}/extract.docx", headers=auth(users["planner"])), 400)
    _problem(client.get(f"/api/records/certificates/{cert['id']}/extract"), 401)
    _problem(client.get("/api/records/certificates/9999", headers=auth(users["planner"])), 404)
    _problem(client.get("/api/records/certificates/9999/extract.pdf", headers=auth(users["planner"])), 404)
    listed = client.get(f"/api/records/parcels/{ids[0]}/certificates", headers=auth(users["planner"])).get_json()
    assert [c["id"] for c in listed["certificates"]] == [cert["id"]]
    _problem(client.get("/api/records/parcels/9999/certificates", headers=auth(users["planner"])), 404)
    history = client.get(f"/api/records/certificates/{cert['id']}/history", headers=auth(users["planner"])).get_json()
    assert history["chain"][0]["id"] == cert["id"] and history["audit"][0]["action"] == "land_certificate.first_issue"
    cancelled = client.post(f"/api/records/certificates/{cert['id']}/cancel", json={"reason": "bản án số 12/2026"},
                            headers=auth(users["admin"]))
    assert cancelled.get_json()["status"] == "cancelled"
    with records_db.connect() as conn:
        assert gcn.certificates_of_parcel(conn, ids[0]) == []
