"""Land-use right certificates: issue on a dossier, holders and shares, supersede, never edited, extract."""

from __future__ import annotations

import pytest
from shapely.geometry import LineString
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from gisserver import audit
from gisserver.errors import Conflict, InvalidInput, RuleViolation
from licensing import allocation as al
from licensing import certificates as gcn
from licensing import register
from licensing import tables as lt
from licensing.dossiers import Actor, create_dossier, transition
from licensing.records_tables import land_certificate, land_certificate_holder
from tests.records.helpers import E0, N0, add_road, rect

OFFICER = Actor("officer-gcn", "officer")
ADMIN = Actor("admin-gcn", "admin")
AUTHORITY = "Sở Tài nguyên và Môi trường TP.HCM"


def approved_dossier(conn, kind, parcel_id=None) -> int:
    d = create_dossier(conn, OFFICER, kind=kind, title="Đăng ký, cấp GCN", parcel_id=parcel_id)
    for state in ("submitted", "accepted", "under_review"):
        transition(conn, OFFICER, d["id"], state)
    transition(conn, ADMIN, d["id"], "approved")
    return d["id"]


@pytest.fixture
def land(records_db):
    """Parcel 201 with neighbours 202 (east), 203 (north), 204 on sheet 6 (west); a couple holding 201."""
    with records_db.begin() as conn:
        assert gcn.enable_certificate_dossiers(conn, "admin")
        assert not gcn.enable_certificate_dossiers(conn, "admin")  # idempotent
        made = {}
        for no, sheet, geom in ((201, 5, rect(0, 0, 10, 20)), (202, 5, rect(10, 0, 20, 20)),
                                (203, 5, rect(0, 20, 10, 30)), (204, 6, rect(-10, 0, 0, 20))):
            made[no] = register.create_parcel(conn, "officer", ward_code="27001", sheet_no=sheet, parcel_no=no,
                                              geom=geom, land_use="ODT", address="12 Đường số 9")["created"][0]["id"]
        add_road(conn, [(-50, -6), (50, -6)], name="Đường số 9")  # 16 m right of way along the south side
        husband = register.create_party(conn, "officer", name="Nguyễn Văn An")
        wife = register.create_party(conn, "officer", name="Trần Thị Bình")
        for party in (husband, wife):
            register.add_rrr(conn, "officer", made[201], kind="right", type="land_use_right", party_id=party, share=0.5)
    return records_db, made, husband, wife


def _issue(conn, parcel_id, kind="certificate_first_issue", serial="DA 123456", **kw):
    dossier = approved_dossier(conn, kind, parcel_id)
    return gcn.issue_certificate(conn, OFFICER, dossier_id=dossier, parcels=[parcel_id], serial=serial,
                                 issuing_authority=AUTHORITY, **kw)


def test_first_issue_from_the_register(land):
    engine, made, husband, wife = land
    with engine.begin() as conn:
        cert = _issue(conn, made[201], assets=[{"kind": "house", "description": "Nhà ở riêng lẻ", "floor_area": 120,
                                                 "floors": 3}])
        assert cert["procedure"] == "first_issue" and cert["status"] == "valid"
        assert {(h["party_id"], h["share"]) for h in cert["holders"]} == {(husband, 50.0), (wife, 50.0)}
        assert cert["parcels"][0]["land_use"] == "ODT" and cert["parcels"][0]["term_end"] is None
        assert cert["parcels"][0]["use_form"] == "joint" and cert["parcels"][0]["area"] == pytest.approx(200)
        assert len(cert["rights"]) == 2 and cert["certificate_no"].startswith("GCN-HS")
        assert cert["barcode"].startswith("2700126") and cert["register_entry_no"] == "CS00001"
        dossier = conn.execute(select(lt.dossier).where(lt.dossier.c.id == cert["dossier_id"])).mappings().one()
        assert dossier["state"] == "issued" and dossier["kind"] == "certificate_first_issue"
        # the statutory clock of the kind comes from the rule table: 20 working days after acceptance
        assert 26 <= (dossier["due_date"] - dossier["accepted_at"].date()).days <= 34
        assert audit.history(conn, "land_certificate", cert["id"])[0]["action"] == "land_certificate.first_issue"
        with pytest.raises(RuleViolation, match="valid certificate"):
            _issue(conn, made[201], serial="DA 123457")


def test_holders_shares_and_rights_are_checked(land):
    engine, made, husband, wife = land
    with engine.begin() as conn:
        stranger = register.create_party(conn, "officer", name="Lê Văn Cường")
    cases = [
        ([{"party_id": husband, "share": 50}, {"party_id": wife, "share": 40}], RuleViolation, "sum to 90"),
        ([{"party_id": husband, "share": 50}, {"party_id": stranger, "share": 50}], RuleViolation, "no current right"),
        ([{"party_id": husband, "share": 0}], InvalidInput, "share"),
        ([{"party_id": husband, "share": 50}, {"party_id": husband, "share": 50}], InvalidInput, "twice"),
    ]
    for holders, error, match in cases:
        with pytest.raises(error, match=match), engine.begin() as conn:
            _issue(conn, made[201], holders=holders)
    with engine.begin() as conn:
        cert = _issue(conn, made[201], holders=[{"party_id": husband, "share": 60}, {"party_id": wife, "share": 40}])
        assert [h["share"] for h in cert["holders"]] == [60.0, 40.0]


def test_dossier_must_be_an_approved_certificate_dossier(land):
    engine, made, *_ = land
    with engine.begin() as conn:
        permit = approved_dossier(conn, "construction_permit_house", made[201])
        draft = create_dossier(conn, OFFICER, kind="certificate_first_issue")["id"]
        with pytest.raises(InvalidInput, match="construction_permit_house"):
            gcn.issue_certificate(conn, OFFICER, dossier_id=permit, parcels=[made[201]], serial="DA 1",
                                  issuing_authority=AUTHORITY)
        with pytest.raises(Conflict, match="draft"):
            gcn.issue_certificate(conn, OFFICER, dossier_id=draft, parcels=[made[201]], serial="DA 123456",
                                  issuing_authority=AUTHORITY)
        with pytest.raises(InvalidInput, match="serial"):
            _issue(conn, made[201], serial="12")


def test_reissue_supersedes_and_keeps_history(land):
    engine, made, husband, wife = land
    with engine.begin() as conn:
        first = _issue(conn, made[201])
        with pytest.raises(InvalidInput, match="supersedes_id"):
            _issue(conn, made[201], kind="certificate_reissue", serial="DB 000001")
        second = _issue(conn, made[201], kind="certificate_reissue", serial="DB 000001", supersedes_id=first["id"])
        assert second["procedure"] == "reissue" and second["supersedes_id"] == first["id"]
        old = gcn.get_certificate(conn, first["id"])
        assert old["status"] == "superseded" and old["superseded_by_id"] == second["id"]
        assert [c["id"] for c in gcn.certificate_history(conn, first["id"])] == [first["id"], second["id"]]
        with pytest.raises(Conflict, match="superseded"):
            _issue(conn, made[201], kind="change_registration", serial="DB 000002", supersedes_id=first["id"])
        third = _issue(conn, made[201], kind="change_registration", serial="DB 000002", supersedes_id=second["id"],
                       holders=[{"party_id": wife, "share": 100}])
        assert [h["party_id"] for h in third["holders"]] == [wife]
        statuses = [c["status"] for c in gcn.certificate_history(conn, third["id"])]
        assert statuses == ["superseded", "superseded", "valid"]
        assert [c["id"] for c in gcn.certificates_of_parcel(conn, made[201])] == [third["id"]]


def test_change_registration_of_a_transfer(land):
    engine, made, husband, wife = land
    with engine.begin() as conn:
        buyer = register.create_party(conn, "officer", name="Võ Thị Cúc")
        first = _issue(conn, made[201])
        holders = [{"party_id": buyer, "share": 100}]
        with pytest.raises(RuleViolation, match="no current right"):
            _issue(conn, made[201], kind="change_registration", serial="DB 000003", supersedes_id=first["id"],
                   holders=holders)
        with pytest.raises(InvalidInput, match="change_registration"):
            _issue(conn, made[201], kind="certificate_reissue", serial="DB 000003", supersedes_id=first["id"],
                   holders=holders, transfer={"reference": "HĐCN 15/2026"})
    with engine.begin() as conn:
        new = _issue(conn, made[201], kind="change_registration", serial="DB 000003", supersedes_id=first["id"],
                     holders=holders, transfer={"reference": "HĐCN 15/2026", "issued_on": "2026-11-20"})
        assert [h["party_id"] for h in new["holders"]] == [buyer]
        (right,) = register.list_rrr(conn, made[201])
        assert right["party_id"] == buyer and right["share"] == 1.0 and new["rights"] == [right["id"]]
        ended = register.list_rrr(conn, made[201], include_ended=True)
        assert {r["party_id"] for r in ended if r["end_lifespan"] is not None} == {husband, wife}
        assert gcn.get_certificate(conn, first["id"])["status"] == "superseded"


def test_split_of_certified_land_needs_a_change_registration(land):
    engine, made, husband, wife = land
    with engine.begin() as conn:
        first = _issue(conn, made[201])
        split = register.split_parcel(conn, "officer", made[201], LineString([(E0 - 1, N0 + 10), (E0 + 11, N0 + 10)]))
        children = [c["id"] for c in split["created"]]
        with pytest.raises(RuleViolation, match=first["certificate_no"]):
            _issue(conn, children[0], serial="DA 200001")
        new = _issue(conn, children[0], kind="change_registration", serial="DA 200001", supersedes_id=first["id"])
        # the rights were carried to the children by the register: the holders follow
        assert {h["party_id"] for h in new["holders"]} == {husband, wife}
        assert new["parcels"][0]["area"] == pytest.approx(100)


def test_certificates_are_never_edited_in_the_database(land):
    engine, made, husband, _ = land
    with engine.begin() as conn:
        cert = _issue(conn, made[201])
    C, H = land_certificate, land_certificate_holder
    refused = [
        update(C).where(C.c.id == cert["id"]).values(serial="DA 999999"),
        update(C).where(C.c.id == cert["id"]).values(issue_date=text("current_date - 1")),
        delete(C).where(C.c.id == cert["id"]),
        update(H).where(H.c.certificate_id == cert["id"]).values(share=100),
        insert(H).values(certificate_id=cert["id"], party_id=husband, share=1),
    ]
    for stmt in refused:
        with pytest.raises(IntegrityError, match="never|closed"), engine.begin() as conn:
            conn.execute(stmt)
    # shares not summing to 100 are refused at commit, even when written around the domain code
    with pytest.raises(IntegrityError, match="sum to"), engine.begin() as conn:
        new_id = conn.execute(insert(C).values(
            certificate_no="X-1", serial="DC 000001", barcode="1", register_entry_no="CS-X", issue_date=text(
                "current_date"), issuing_authority=AUTHORITY, procedure="reissue", dossier_id=cert["dossier_id"],
            supersedes_id=cert["id"], created_by="sql").returning(C.c.id)).scalar_one()
        conn.execute(insert(H).values(certificate_id=new_id, party_id=husband, share=90))


def test_lease_terms_flow_into_the_certificate(land):
    engine, made, *_ = land
    with engine.begin() as conn:
        company = register.create_party(conn, "officer", name="Công ty TNHH Sài Gòn Xanh", kind="organization")
        al.allocate(conn, "officer", decision_no="QĐ 55/QĐ-UBND", decision_date="2026-01-10", kind="lease",
                    payment="annual", party_id=company, land_use="TMD", purpose="Văn phòng", term_start="2026-02-01",
                    term_end="2076-01-31", parcel_ids=[made[202]])
        cert = _issue(conn, made[202])
        (p,) = cert["parcels"]
        assert p["land_use"] == "TMD" and p["term_end"] == "2076-01-31" and p["purpose"] == "Văn phòng"
        assert p["origin"].startswith("Nhà nước cho thuê đất trả tiền thuê đất hàng năm")
        assert cert["holders"] == [{"party_id": company, "name": "Công ty TNHH Sài Gòn Xanh", "kind": "organization",
                                    "share": 100.0}]


def test_extract_plan_vertices_edges_neighbours(land):
    engine, made, *_ = land
    with engine.begin() as conn:
        cert = _issue(conn, made[201], assets=[{"kind": "house", "description": "Nhà 3 tầng", "floor_area": 120}])
        extract = gcn.certificate_extract(conn, cert["id"])
    (plan,) = extract["plans"]
    # clockwise from the north-west corner; X = northing, Y = easting (cadastral convention)
    assert [(v["no"], v["x"], v["y"]) for v in plan["vertices"]] == [
        (1, N0 + 20, E0), (2, N0 + 20, E0 + 10), (3, N0, E0 + 10), (4, N0, E0)]
    assert [(e["from"], e["to"], e["length"], e["neighbour"]) for e in plan["edges"]] == [
        (1, 2, 10.0, "203"), (2, 3, 20.0, "202"), (3, 4, 10.0, None), (4, 1, 20.0, "204 (tờ 6)")]
    assert plan["area"] == 200.0
    assert [e["road"] for e in plan["edges"]] == [None, None, "Đường số 9", None]
    with engine.begin() as conn:  # a later split of a neighbour does not change the issued certificate's extract
        register.split_parcel(conn, "officer", made[202], LineString([(E0 + 15, N0 - 1), (E0 + 15, N0 + 21)]))
        again = gcn.certificate_extract(conn, cert["id"])
        assert [e["neighbour"] for e in again["plans"][0]["edges"]] == ["203", "202", None, "204 (tờ 6)"]
        now = gcn.parcel_plan(conn, made[201])
        assert now["edges"][1]["neighbour"] == "204"  # the west half of 202, numbered on sheet 5
    html = gcn.render_extract_html(extract)
    for needle in ("<svg", "DA 123456", "1190020.000", "600010.000", "Nguyễn Văn An", "50.00 %", "Nhà 3 tầng",
                   "204 (tờ 6)", "Lâu dài", 'class="vertex">4<'):
        assert needle in html, needle
    assert "<script" not in html
    pdf = gcn.render_extract_pdf(extract)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 5000
    as_json = gcn.extract_json(extract)
    assert as_json["plans"][0]["edges"][1]["neighbour"] == "202"
