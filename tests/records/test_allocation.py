"""Land allocation and lease: rights with terms, overlap refusal, expiring/expired lists, audit."""

from __future__ import annotations

from datetime import date

import pytest
from shapely.geometry import LineString

from gisserver import audit
from gisserver.errors import Conflict, InvalidInput, RuleViolation
from licensing import allocation as al
from licensing import register
from tests.records.helpers import E0, N0, rect

ACTOR = "officer-al"


@pytest.fixture
def land(records_db):
    """Three 20 x 30 m parcels side by side and two parties."""
    with records_db.begin() as conn:
        ids = [
            register.create_parcel(conn, ACTOR, ward_code="27001", sheet_no=12, parcel_no=n,
                                   geom=rect(20 * i, 0, 20 * (i + 1), 30), land_use="TMD")["created"][0]["id"]
            for i, n in enumerate((101, 102, 103))
        ]
        company = register.create_party(conn, ACTOR, name="Công ty TNHH Sài Gòn Xanh", kind="organization")
        other = register.create_party(conn, ACTOR, name="Công ty CP Bến Nghé", kind="organization")
    return records_db, ids, company, other


def _lease(conn, party, **kw):
    values = dict(decision_no="QĐ 101/QĐ-UBND", decision_date="2026-01-05", kind="lease", payment="annual",
                  party_id=party, land_use="TMD", purpose="Văn phòng, thương mại", term_start="2026-02-01",
                  term_end="2076-01-31", issuer="UBND TP.HCM")
    values.update(kw)
    return al.allocate(conn, ACTOR, **values)


def test_lease_creates_rights_with_terms(land):
    engine, ids, company, _ = land
    with engine.begin() as conn:
        lease = _lease(conn, company, parcel_ids=[ids[0]])
        assert lease["kind"] == "lease" and lease["term_end"] == "2076-01-31" and lease["area"] == pytest.approx(600)
        (rights,) = register.list_rrr(conn, ids[0])
        assert rights["type"] == "land_lease_right" and rights["party_id"] == company and rights["share"] == 1.0
        assert lease["parcels"][0]["rrr_id"] == rights["id"]
        terms = al.terms_of_right(conn, rights["id"])
        assert terms["decision_no"] == "QĐ 101/QĐ-UBND" and terms["payment"] == "annual"
        # the right keeps its terms through a split: the register copies it with its source
        split = register.split_parcel(conn, ACTOR, ids[0], LineString([(E0 + 10, N0 - 1), (E0 + 10, N0 + 31)]))
        child = split["created"][0]["id"]
        (copied,) = register.list_rrr(conn, child)
        assert al.terms_of_right(conn, copied["id"])["id"] == lease["id"]
        history = audit.history(conn, "land_allocation", lease["id"])
        assert history[0]["action"] == "land_allocation.lease" and history[0]["actor"] == ACTOR


def test_allocation_by_polygon_covers_whole_parcels_only(land):
    engine, ids, company, _ = land
    with engine.begin() as conn:
        result = al.allocate(conn, ACTOR, decision_no="QĐ 7/QĐ-UBND", decision_date=date(2026, 3, 1),
                             kind="allocation", payment="one_off", party_id=company, land_use="TMD",
                             term_start=date(2026, 3, 1), geom=rect(20, 0, 50, 30))
        assert [p["parcel_id"] for p in result["parcels"]] == [ids[1]]
        assert [p["parcel_id"] for p in result["partially_covered_parcels"]] == [ids[2]]
        assert result["term_end"] is None  # long-term
        assert register.list_rrr(conn, ids[1])[0]["type"] == "land_use_right"


def test_overlapping_lease_is_refused_with_the_conflicting_decision(land):
    engine, ids, company, other = land
    with engine.begin() as conn:
        _lease(conn, company, parcel_ids=[ids[0]])
    with pytest.raises(RuleViolation) as err, engine.begin() as conn:
        _lease(conn, other, decision_no="QĐ 202/QĐ-UBND", geom=rect(15, 0, 25, 30))
    details = err.value.details
    assert err.value.status == 422 and "QĐ 101/QĐ-UBND" in err.value.message
    assert details["conflicts"][0]["decision_no"] == "QĐ 101/QĐ-UBND"
    assert details["conflicts"][0]["overlap_m2"] == pytest.approx(150)
    assert details["geometry"]["type"] in ("Polygon", "MultiPolygon")
    with engine.begin() as conn:
        # the neighbour parcel only touches it; a lease of the same land after the term ends is fine
        _lease(conn, other, decision_no="QĐ 203/QĐ-UBND", parcel_ids=[ids[1]])
        later = _lease(conn, other, decision_no="QĐ 204/QĐ-UBND", geom=rect(0, 0, 20, 30),
                       term_start="2076-02-01", term_end="2096-01-31")
        # the parcel then holds both rights; each finds its own term through its source
        assert [p["parcel_id"] for p in later["parcels"]] == [ids[0]]
        terms = {al.terms_of_right(conn, r["id"])["term_start"] for r in register.list_rrr(conn, ids[0])}
        assert terms == {"2026-02-01", "2076-02-01"}
        with pytest.raises(Conflict):
            _lease(conn, other, decision_no="QĐ 204/QĐ-UBND", parcel_ids=[ids[2]])
        with pytest.raises(RuleViolation, match="QĐ 204"):  # the last day of a term is in the term
            _lease(conn, company, decision_no="QĐ 205/QĐ-UBND", geom=rect(0, 0, 20, 30),
                   term_start="2096-01-31", term_end="2100-01-31")


def test_expiring_and_expired_leases(land):
    engine, ids, company, other = land
    with engine.begin() as conn:
        soon = _lease(conn, company, decision_no="QĐ 1", parcel_ids=[ids[0]], term_start="2020-01-01",
                      term_end="2026-12-15")
        past = _lease(conn, other, decision_no="QĐ 2", parcel_ids=[ids[1]], term_start="2016-01-01",
                      term_end="2026-10-01", payment="one_off")
        _lease(conn, other, decision_no="QĐ 3", parcel_ids=[ids[2]])
        today = date(2026, 11, 27)
        assert [(r["id"], r["days_left"]) for r in al.expiring(conn, 30, today=today)] == [(soon["id"], 18)]
        assert al.expiring(conn, 10, today=today) == []
        assert [(r["id"], r["days_expired"]) for r in al.expired(conn, today=today)] == [(past["id"], 57)]
        revoked = al.revoke(conn, ACTOR, past["id"], reason="QĐ 9/QĐ-UBND: hết hạn, thu hồi")
        assert revoked["status"] == "revoked" and al.expired(conn, today=today) == []
        assert register.list_rrr(conn, ids[1]) == []
        with pytest.raises(Conflict):
            al.revoke(conn, ACTOR, past["id"], reason="again")


@pytest.mark.parametrize("change, match", [
    ({"term_end": None}, "needs term_end"),
    ({"payment": "none"}, "paid"),
    ({"kind": "allocation", "payment": "annual"}, "annual"),
    ({"term_end": "2020-01-01"}, "after term_start"),
    ({"land_use": "XYZ"}, "land-use code"),
    ({"party_id": 9999}, "no party"),
    ({"term_start": "01/02/2026"}, "YYYY-MM-DD"),
    ({"kind": "gift"}, "kind"),
])
def test_bad_decisions_are_clear_input_errors(land, change, match):
    engine, ids, company, _ = land
    with pytest.raises(InvalidInput, match=match), engine.begin() as conn:
        _lease(conn, company, parcel_ids=[ids[0]], **change)


def test_land_held_under_another_partys_right_is_refused(land):
    engine, ids, company, other = land
    with engine.begin() as conn:
        household = register.create_party(conn, ACTOR, name="Hộ ông Trần Văn Dũng")
        register.add_rrr(conn, ACTOR, ids[2], kind="right", type="land_use_right", party_id=household, share=1.0)
    with pytest.raises(RuleViolation, match="Trần Văn Dũng") as err, engine.begin() as conn:
        _lease(conn, company, geom=rect(40, 0, 60, 30))
    assert err.value.details["rights"][0]["parcel_id"] == ids[2]
    with engine.begin() as conn:  # the holder itself may get its land leased (e.g. a change of use)
        assert _lease(conn, household, parcel_ids=[ids[2]])["parcels"][0]["parcel_id"] == ids[2]


def test_parcels_or_polygon_not_both(land):
    engine, ids, company, _ = land
    with pytest.raises(InvalidInput, match="either"), engine.begin() as conn:
        _lease(conn, company, parcel_ids=[ids[0]], geom=rect(0, 0, 5, 5))


def test_decisions_are_never_edited_in_the_database(land):
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from licensing.records_tables import land_allocation

    engine, ids, company, _ = land
    with engine.begin() as conn:
        lease = _lease(conn, company, parcel_ids=[ids[0]])
    with pytest.raises(IntegrityError, match="never edited"), engine.begin() as conn:
        conn.execute(update(land_allocation).where(land_allocation.c.id == lease["id"])
                     .values(term_end=date(2099, 1, 1)))


def test_concurrent_overlapping_decisions_are_serialised(land):
    import threading

    engine, ids, company, other = land
    outcome = {}

    def second():
        try:
            with engine.begin() as conn:
                _lease(conn, other, decision_no="QĐ 302", geom=rect(5, 5, 15, 15))
            outcome["second"] = "committed"
        except RuleViolation as exc:
            outcome["second"] = exc.details["conflicts"][0]["decision_no"]

    with engine.begin() as conn:
        _lease(conn, company, decision_no="QĐ 301", parcel_ids=[ids[0]])
        worker = threading.Thread(target=second)
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive()  # waits for the first decision's transaction
    worker.join(timeout=30)
    assert outcome == {"second": "QĐ 301"}
