"""House numbering: order, parity, first numbering by chainage, insertion (12A), alleys (12/n), no silent change."""

from __future__ import annotations

import pytest
from shapely.geometry import Point
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from gisserver import audit
from gisserver.errors import Conflict, InvalidInput, RuleViolation
from licensing import house_numbers as hn
from licensing.dossiers import Actor, create_dossier
from licensing.records_tables import house_number
from tests.records.helpers import E0, N0, add_building, add_road, line

ACTOR = "officer-hn"
RIGHT = {"R4": (4.5, 7.5), "R12": (20.5, 23.5), "R14": (24.5, 27.5), "R22": (40.5, 43.5)}
LEFT = {"L3": (4.5, 7.5), "L7": (12.2, 13.8), "L9": (14.2, 15.8), "L15": (28.5, 31.5)}


@pytest.fixture
def street(records_db):
    """A 200 m street running east, buildings on both sides (south = right, north = left), numbered."""
    with records_db.begin() as conn:
        ids = {k: add_building(conn, a, -10, b, -2) for k, (a, b) in RIGHT.items()}
        ids |= {k: add_building(conn, a, 2, b, 10) for k, (a, b) in LEFT.items()}
        s = hn.create_street(conn, ACTOR, name="Đường số 9", geom=line((0, 0), (200, 0)), ward_code="27001")
        result = hn.number_street(conn, ACTOR, s["id"])
    return records_db, s, ids, result


def _labels(conn, street_id):
    return {n["building_id"]: n["label"] for n in hn.list_numbers(conn, street_id)}


def test_station_side_and_chainage():
    ln = line((0, 0), (100, 0))
    left = hn.station(ln, Point(E0 + 30, N0 + 5))
    right = hn.station(ln, Point(E0 + 30, N0 - 5))
    assert (left.side, right.side) == ("left", "right")
    assert left.chainage == pytest.approx(30) and left.offset == pytest.approx(5) and right.offset == pytest.approx(-5)
    with pytest.raises(RuleViolation):
        hn.station(ln, Point(E0 + 30, N0))


def test_first_numbering_order_and_parity(street):
    engine, s, ids, result = street
    assert result["mode"] == "first" and len(result["assigned"]) == 8
    with engine.connect() as conn:
        labels = _labels(conn, s["id"])
        numbers = hn.list_numbers(conn, s["id"])
    # proportional to chainage, 4 m per number: right (even) 6 m -> 4, 22 -> 12, 26 -> 14, 42 -> 22
    assert [labels[ids[k]] for k in RIGHT] == ["4", "12", "14", "22"]
    # left (odd): 6 -> 3, 13 -> 7, 15 is in the same 4 m slot -> next odd 9, 30 -> 15
    assert [labels[ids[k]] for k in LEFT] == ["3", "7", "9", "15"]
    for side, parity in (("left", 1), ("right", 0)):
        on_side = sorted((n for n in numbers if n["side"] == side), key=lambda n: n["chainage"])
        assert all(n["number"] % 2 == parity for n in on_side)
        assert [n["number"] for n in on_side] == sorted(n["number"] for n in on_side)
    # the access point is the middle of the facade facing the street
    r12 = next(n for n in numbers if n["label"] == "12")
    assert r12["chainage"] == pytest.approx(22) and r12["lateral_offset"] == pytest.approx(-2)


def test_insertion_gets_sub_number_or_free_number_and_rerun_changes_nothing(street):
    engine, s, ids, _ = street
    with engine.begin() as conn:
        before = _labels(conn, s["id"])
        kiosk = add_building(conn, 23.6, -8, 24.4, -2)  # between 12 and 14: no free even number left
        shop = add_building(conn, 33.5, -8, 34.5, -2)   # between 14 and 22: its own slot 18 is free
        result = hn.number_street(conn, ACTOR, s["id"])
    assert result["mode"] == "insert" and result["unchanged"] == 8
    with engine.begin() as conn:
        labels = _labels(conn, s["id"])
        assert labels[kiosk] == "12A" and labels[shop] == "18"
        assert {k: labels[k] for k in before} == before
        again = hn.number_street(conn, ACTOR, s["id"])
        assert again["assigned"] == [] and _labels(conn, s["id"]) == labels
        second = add_building(conn, 24.42, -20, 24.48, -12)  # between the kiosk (12A) and 14
        assert hn.number_street(conn, ACTOR, s["id"])["assigned"][0]["label"] == "12B"
        entries = audit.history(conn, "house_number", next(n["id"] for n in hn.list_numbers(conn, s["id"])
                                                          if n["building_id"] == kiosk))
        assert entries[0]["action"] == "house_number.assign" and entries[0]["actor"] == ACTOR
    assert second


def test_insertion_label_edge_cases():
    lab = hn.Label
    existing = [(22.0, lab(None, 12)), (24.0, lab(None, 12, "A")), (26.0, lab(None, 14))]
    assert str(hn.insertion_label(existing, 25.0, 4, False)) == "12B"
    with pytest.raises(RuleViolation, match="between 12 and 12A"):
        hn.insertion_label(existing, 23.0, 4, False)
    with pytest.raises(RuleViolation, match="before 1"):
        hn.insertion_label([(10.0, lab(None, 1))], 2.0, 4, True)
    assert str(hn.insertion_label([(10.0, lab(None, 9))], 2.0, 4, True)) == "1"
    assert str(hn.insertion_label([(10.0, lab(None, 9))], 50.0, 4, True, "12")) == "12/25"
    # a retired label is not reused
    assert str(hn.insertion_label(existing, 25.0, 4, False, taken=frozenset({"12B"}))) == "12C"
    assert hn.first_numbers([13.0, 6.0, 15.0], 4, True) == [7, 3, 9]


def test_alley_numbers(street):
    engine, s, ids, _ = street
    with engine.begin() as conn:
        alley = hn.create_alley(conn, ACTOR, s["id"], line((18, -60), (18, 0)))  # digitised backwards
        assert alley["prefix"] == "12" and alley["parent_street_id"] == s["id"]
        assert alley["geometry"]["coordinates"][0][1] == pytest.approx(N0)  # re-oriented from the mouth
        a1 = add_building(conn, 19, -16, 24, -12)   # east = left going into the alley: odd
        a2 = add_building(conn, 12, -20, 17, -16)   # west = right: even
        a3 = add_building(conn, 19, -24, 24, -20)
        main_before = _labels(conn, s["id"])
        hn.number_street(conn, ACTOR, alley["id"])
        labels = _labels(conn, alley["id"])
        assert [labels[a1], labels[a2], labels[a3]] == ["12/7", "12/10", "12/11"]
        # the main street's re-run leaves the alley houses to the alley
        assert hn.number_street(conn, ACTOR, s["id"])["assigned"] == []
        assert _labels(conn, s["id"]) == main_before
        renumbered = hn.renumber(conn, ACTOR, next(n["id"] for n in hn.list_numbers(conn, alley["id"])
                                                   if n["building_id"] == a3), "13", reason="survey")
        assert renumbered["label"] == "12/13"
        sub = hn.create_alley(conn, ACTOR, alley["id"], line((18.5, -30), (40, -30)), off_label="13")
        assert sub["prefix"] == "12/13"
        with pytest.raises(InvalidInput):
            hn.create_alley(conn, ACTOR, s["id"], line((60, 0), (60, -30)), off_label="99")


def test_renumbering_is_explicit_audited_and_numbers_are_never_edited(street):
    engine, s, ids, _ = street
    with engine.begin() as conn:
        n22 = next(n for n in hn.list_numbers(conn, s["id"]) if n["label"] == "22")
        with pytest.raises(RuleViolation, match="parity"):
            hn.renumber(conn, ACTOR, n22["id"], "21", reason="survey")
        with pytest.raises(RuleViolation, match="order"):
            hn.renumber(conn, ACTOR, n22["id"], "10", reason="survey")
        with pytest.raises(Conflict):
            hn.renumber(conn, ACTOR, n22["id"], "14", reason="survey")
        new = hn.renumber(conn, ACTOR, n22["id"], "20", reason="corner plot merged")
        old = hn.get_number(conn, n22["id"])
        assert old["status"] == "retired" and old["replaced_by_id"] == new["id"] and new["label"] == "20"
        actions = [e["action"] for e in audit.history(conn, "house_number", n22["id"])]
        assert "house_number.retire" in actions
        with pytest.raises(Conflict):  # "22" was used: never reused
            hn.renumber(conn, ACTOR, new["id"], "22", reason="undo")
    for stmt in (update(house_number).where(house_number.c.id == n22["id"]).values(label="24"),
                 update(house_number).where(house_number.c.id == new["id"]).values(chainage=1.0),
                 update(house_number).where(house_number.c.id == n22["id"]).values(status="active", retired_at=None),
                 update(house_number).where(house_number.c.id == n22["id"]).values(retired_reason="rewritten"),
                 update(house_number).where(house_number.c.id == n22["id"]).values(replaced_by_id=None),
                 delete(house_number).where(house_number.c.id == new["id"])):
        with pytest.raises(IntegrityError, match="never|already"), engine.begin() as conn:
            conn.execute(stmt)


def test_number_certificate_with_dossier(street):
    engine, s, ids, _ = street
    with engine.begin() as conn:
        dossier = create_dossier(conn, Actor(ACTOR, "officer"), kind="construction_permit_house",
                                 title="Cấp số nhà")
        number = hn.list_numbers(conn, s["id"])[0]
        cert = hn.issue_number_certificate(conn, ACTOR, number["id"], dossier_id=dossier["id"])
        assert cert["certificate_no"].startswith("SN") and cert["dossier_id"] == dossier["id"]
        assert hn.get_number(conn, number["id"])["certificates"][0]["certificate_no"] == cert["certificate_no"]
        with pytest.raises(InvalidInput):
            hn.issue_number_certificate(conn, ACTOR, number["id"], dossier_id=999999)
        page = hn.render_number_certificate_html(hn.number_certificate(conn, cert["id"]))
        assert f"Số {number['label']}, Đường số 9" in page
        assert dossier["code"] in page and cert["certificate_no"] in page


def test_building_across_the_centreline_is_skipped_not_fatal(street):
    engine, s, ids, _ = street
    with engine.begin() as conn:
        across = add_building(conn, 60, -3, 64, 3)
        result = hn.number_street(conn, ACTOR, s["id"])
    assert result["assigned"] == [] and result["skipped"][0]["building_id"] == across


def test_street_from_road_is_oriented_from_the_start(records_db):
    with records_db.begin() as conn:
        road = add_road(conn, [(0, 0), (50, 0), (100, 10)])
        s = hn.street_from_road(conn, ACTOR, road, start=Point(E0 + 100, N0 + 10))
        assert s["name"] == "Đường Phạm Thế Hiển" and s["road_id"] == road
        assert s["geometry"]["coordinates"][0] == pytest.approx([E0 + 100, N0 + 10])
        b = add_building(conn, 94, 14, 98, 20)  # north of the road; going west the north is on the right
        (n,) = hn.number_street(conn, ACTOR, s["id"])["assigned"]
        assert n["side"] == "right" and n["number"] % 2 == 0 and n["building_id"] == b
        point = hn.number_at(conn, Point(E0 + 96, N0 + 14))
        assert point["label"] == n["label"]
    with records_db.connect() as conn:
        assert conn.execute(select(house_number.c.id)).first() is not None


def test_street_numbered_the_other_way_and_bad_streets(records_db):
    with records_db.begin() as conn:
        left = add_building(conn, 4.5, 2, 7.5, 10)
        right = add_building(conn, 4.5, -10, 7.5, -2)
        s = hn.create_street(conn, ACTOR, name="Đường cũ", geom=line((0, 0), (50, 0)), odd_side="right")
        hn.number_street(conn, ACTOR, s["id"])
        assert _labels(conn, s["id"]) == {left: "4", right: "3"}
        for bad in ({"odd_side": "north"}, {"metres_per_number": 0}, {"name": ""},
                    {"geom": line((0, 0), (10, 10), (10, 0), (0, 10))}, {"geom": line((0, 0), (0.5, 0))}):
            with pytest.raises(InvalidInput):
                hn.create_street(conn, ACTOR, **{"name": "X", "geom": line((0, 0), (50, 0)), **bad})
