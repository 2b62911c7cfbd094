"""Parcel register: versions, lineage, validated atomic changes, as-of queries, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from shapely.geometry import shape
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from gisserver import schema
from gisserver.errors import Conflict, RuleViolation
from licensing import register
from licensing import tables as lt
from tests.licensing.helpers import line, rect

W = "26734"  # a ward code


def _create(conn, no, geom, **kw):
    return register.create_parcel(conn, "officer1", ward_code=W, sheet_no=12, parcel_no=no, geom=geom,
                                  land_use=kw.pop("land_use", "ODT"), **kw)["created"][0]


def _layer_version(conn):
    return conn.execute(select(schema.layer.c.data_version).where(schema.layer.c.name == "parcels")).scalar()


def _count(engine, table):
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_create_refuses_overlap_and_changes_nothing(lic_db):
    with lic_db.begin() as conn:
        a = _create(conn, 1, rect(0, 0, 20, 20), source={"kind": "survey", "reference": "KS-2026/01"})
        _create(conn, 2, rect(20, 0, 40, 20))  # touching is fine
    assert a["area"] == pytest.approx(400) and a["current"]
    before = (_count(lic_db, schema.parcel), _count(lic_db, lt.parcel_change))
    with pytest.raises(RuleViolation) as err:
        with lic_db.begin() as conn:
            _create(conn, 3, rect(15, 5, 30, 15))
    assert err.value.status == 422
    assert "overlaps current parcel" in err.value.message
    overlap = shape(err.value.details["geometry"])
    assert overlap.area == pytest.approx(150)
    assert (_count(lic_db, schema.parcel), _count(lic_db, lt.parcel_change)) == before


def test_current_number_unique_in_database(lic_db):
    with lic_db.begin() as conn:
        _create(conn, 1, rect(0, 0, 20, 20))
    with pytest.raises(Conflict):
        with lic_db.begin() as conn:
            _create(conn, 1, rect(100, 0, 120, 20))
    with pytest.raises(IntegrityError):
        with lic_db.begin() as conn:
            conn.execute(text(
                "INSERT INTO parcel (ward_code, sheet_no, parcel_no, geom) "
                "VALUES (:w, 12, 1, ST_Multi(ST_MakeEnvelope(600100, 1190000, 600120, 1190020, 909210)))"
            ), {"w": W})


def test_split_keeps_lineage_history_and_as_of(lic_db):
    with lic_db.begin() as conn:
        a = _create(conn, 1, rect(0, 0, 20, 20))
        party = register.create_party(conn, "officer1", name="Nguyễn Văn A", id_number="079000000001")
        register.add_rrr(conn, "officer1", a["id"], kind="right", type="land_use_right", party_id=party, share=1.0)
    with lic_db.connect() as conn:
        version_before = _layer_version(conn)
    with lic_db.begin() as conn:
        result = register.split_parcel(conn, "officer1", a["id"], line((10, -5), (10, 25)),
                                       source={"kind": "decision", "reference": "QD-123/2026"})
    children = result["created"]
    assert [c["parcel_no"] for c in children] == [2, 3]
    assert [c["area"] for c in children] == pytest.approx([200, 200])
    at = result["at"]
    with lic_db.connect() as conn:
        parent = register.get_parcel(conn, a["id"])
        assert parent["end_lifespan"].isoformat() == at and parent["status"] == "retired"
        edges = register.lineage(conn, children[0]["id"])["edges"]
        assert [(e["parent_id"], e["operation"]) for e in edges] == [(a["id"], "split")]
        assert edges[0]["area_carried"] == pytest.approx(200)
        down = register.lineage(conn, a["id"], direction="descendants")
        assert sorted(e["child_id"] for e in down["edges"]) == sorted(c["id"] for c in children)
        t_split = parent["end_lifespan"]
        before = register.parcels_as_of(conn, t_split - timedelta(microseconds=1), ward_code=W)
        after = register.parcels_as_of(conn, t_split, ward_code=W)
        assert [p["parcel_no"] for p in before] == [1]
        assert [p["parcel_no"] for p in after] == [2, 3]
        assert register.find_parcel(conn, W, 12, 1, at=t_split - timedelta(seconds=0.000001))["id"] == a["id"]
        # rights follow the land
        assert [r["party_id"] for r in register.list_rrr(conn, children[1]["id"])] == [party]
        assert register.list_rrr(conn, a["id"]) == []
        assert len(register.list_rrr(conn, a["id"], include_ended=True)) == 1
        # audited, and the tile caches see a new layer version
        actions = [h["action"] for h in register.parcel_history(conn, a["id"])]
        assert "parcel.split" in actions and "rrr.create" in actions
        assert _layer_version(conn) > version_before


def test_split_with_a_line_that_misses_is_refused(lic_db):
    with lic_db.begin() as conn:
        a = _create(conn, 1, rect(0, 0, 20, 20))
    for bad in (line((10, -5), (10, 10)), line((30, -5), (30, 25))):
        with pytest.raises(RuleViolation, match="does not cross"):
            with lic_db.begin() as conn:
                register.split_parcel(conn, "officer1", a["id"], bad)
    with pytest.raises(RuleViolation, match="smaller than"):
        with lic_db.begin() as conn:
            register.split_parcel(conn, "officer1", a["id"], line((0.02, -5), (0.02, 25)))
    with lic_db.connect() as conn:
        assert register.get_parcel(conn, a["id"])["end_lifespan"] is None
    assert _count(lic_db, lt.parcel_lineage) == 0


def test_merge_and_ancestry_over_two_generations(lic_db):
    with lic_db.begin() as conn:
        a = _create(conn, 1, rect(0, 0, 20, 20))
        far = _create(conn, 9, rect(100, 0, 120, 20))
    with lic_db.begin() as conn:
        kids = register.split_parcel(conn, "officer1", a["id"], line((10, -5), (10, 25)))["created"]
    with pytest.raises(RuleViolation, match="not adjacent"):
        with lic_db.begin() as conn:
            register.merge_parcels(conn, "officer1", [kids[0]["id"], far["id"]])
    with lic_db.begin() as conn:
        merged = register.merge_parcels(conn, "officer1", [k["id"] for k in kids])["created"][0]
    assert merged["area"] == pytest.approx(400)
    with lic_db.connect() as conn:
        up = register.lineage(conn, merged["id"])
    assert {(e["parent_id"], e["depth"]) for e in up["edges"]} == {
        (kids[0]["id"], 1), (kids[1]["id"], 1), (a["id"], 2), (a["id"], 2)
    }
    assert a["id"] in up["parcels"]
    with pytest.raises(Conflict, match="not current"):
        with lic_db.begin() as conn:
            register.merge_parcels(conn, "officer1", [kids[0]["id"], far["id"]])


def test_merge_refuses_mixed_land_use_without_decision(lic_db):
    with lic_db.begin() as conn:
        a = _create(conn, 1, rect(0, 0, 20, 20))
        b = _create(conn, 2, rect(20, 0, 40, 20), land_use="CLN")
    with pytest.raises(RuleViolation, match="different land uses"):
        with lic_db.begin() as conn:
            register.merge_parcels(conn, "officer1", [a["id"], b["id"]])
    with lic_db.begin() as conn:
        m = register.merge_parcels(conn, "officer1", [a["id"], b["id"]], land_use="ODT", parcel_no=50)
    assert m["created"][0]["land_use"] == "ODT" and m["created"][0]["parcel_no"] == 50


def test_boundary_adjustment_conserves_area(lic_db):
    with lic_db.begin() as conn:
        a = _create(conn, 1, rect(0, 0, 20, 20))
        b = _create(conn, 2, rect(20, 0, 40, 20))
        _create(conn, 3, rect(0, 20, 40, 40))
    with pytest.raises(RuleViolation, match="outside the two parcels") as err:
        with lic_db.begin() as conn:
            register.adjust_boundary(conn, "officer1", a["id"], b["id"], rect(0, 0, 25, 22))
    assert shape(err.value.details["geometry"]).area == pytest.approx(50)
    with lic_db.begin() as conn:
        result = register.adjust_boundary(conn, "officer1", a["id"], b["id"], rect(0, 0, 25, 20))
    new_a, new_b = result["created"]
    assert (new_a["parcel_no"], new_b["parcel_no"]) == (1, 2)
    assert new_a["area"] == pytest.approx(500) and new_b["area"] == pytest.approx(300)
    with lic_db.connect() as conn:
        edges = register.lineage(conn, new_a["id"])["edges"]
    carried = {e["parent_id"]: e["area_carried"] for e in edges}
    assert carried == pytest.approx({a["id"]: 400, b["id"]: 100})


def test_attribute_change_makes_a_new_version(lic_db):
    with lic_db.begin() as conn:
        a = _create(conn, 1, rect(0, 0, 20, 20))
    with lic_db.begin() as conn:
        v2 = register.change_attributes(conn, "officer1", a["id"], {"land_use": "TMD", "address": "1 Lê Lợi"})
    v2 = v2["created"][0]
    assert (v2["parcel_no"], v2["land_use"]) == (1, "TMD")
    with lic_db.connect() as conn:
        versions = register.parcel_versions(conn, W, 12, 1)
        assert [v["land_use"] for v in versions] == ["ODT", "TMD"]
        assert versions[0]["end_lifespan"] == versions[1]["begin_lifespan"]
        hist = register.parcel_history(conn, v2["id"])
    assert hist[0]["detail"]["changed"]["land_use"] == ["ODT", "TMD"]
    # the history of a parcel spans its versions: v1's creation is in v2's history
    assert [h["action"] for h in hist] == ["parcel.attributes", "parcel.attributes", "parcel.create"]
    with pytest.raises(Exception, match="cannot change"):
        with lic_db.begin() as conn:
            register.change_attributes(conn, "officer1", v2["id"], {"geom": "x"})


def test_concurrent_overlapping_creates_are_serialised(lic_db):
    """Two officers register overlapping parcels at the same time: the ward lock makes the second
    one wait for the first to commit, then its overlap check sees it and refuses."""
    import threading
    import time

    created, errors = threading.Event(), []

    def second():
        created.wait(10)
        try:
            with lic_db.begin() as conn:
                _create(conn, 2, rect(10, 0, 30, 20))
        except RuleViolation as exc:
            errors.append(exc)

    worker = threading.Thread(target=second)
    worker.start()
    with lic_db.begin() as conn:
        _create(conn, 1, rect(0, 0, 20, 20))
        created.set()
        deadline = time.monotonic() + 10
        with lic_db.connect() as watcher:  # commit only once the second transaction waits on the lock
            while time.monotonic() < deadline and not watcher.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )).scalar():
                time.sleep(0.02)
    worker.join(20)
    assert len(errors) == 1 and "overlaps" in errors[0].message
    assert _count(lic_db, schema.parcel) == 1


def test_sources_take_dates_and_rrr_can_end(lic_db):
    from datetime import date

    with lic_db.begin() as conn:
        a = _create(conn, 1, rect(0, 0, 20, 20))
        s1 = register.create_source(conn, {"kind": "decision", "reference": "QĐ 1", "issued_on": date(2026, 1, 2)})
        s2 = register.create_source(conn, {"kind": "decision", "reference": "QĐ 2", "issued_on": "2026-01-03"})
        party = register.create_party(conn, "officer1", name="Bank A", kind="organization")
        mortgage = register.add_rrr(conn, "officer1", a["id"], kind="restriction", type="mortgage", party_id=party,
                                    source=s1)
    assert s2 == s1 + 1
    with pytest.raises(Exception, match="ISO date"):
        with lic_db.begin() as conn:
            register.create_source(conn, {"kind": "decision", "reference": "QĐ 3", "issued_on": "3/1/2026"})
    with lic_db.begin() as conn:
        assert register.end_rrr(conn, "officer1", [mortgage], reason="loan repaid") == 1
        assert register.end_rrr(conn, "officer1", [mortgage]) == 0
    with lic_db.connect() as conn:
        assert register.list_rrr(conn, a["id"]) == []
        assert register.list_rrr(conn, a["id"], include_ended=True)[0]["type"] == "mortgage"
        assert register.parcel_history(conn, a["id"])[0]["action"] == "rrr.end"


def test_random_splits_conserve_area_and_lineage(lic_db):
    """Deterministic pseudo-random irregular parcels split by random lines: children tile the parent."""
    import math
    import random

    from shapely.geometry import LineString, Polygon
    from shapely.ops import unary_union

    from tests.licensing.helpers import E0, N0

    rng = random.Random(2026)
    for i in range(12):
        cx, cy = E0 + 200 * i, N0 + 500
        ring = [(cx + r * math.cos(a), cy + r * math.sin(a))
                for a, r in sorted((rng.uniform(0, 6.283), rng.uniform(12, 30)) for _ in range(9))]
        parcel = Polygon(ring)
        if not parcel.is_valid:
            continue
        with lic_db.begin() as conn:
            parent = register.create_parcel(conn, "officer1", ward_code="R", sheet_no=i + 1, parcel_no=1,
                                            geom=parcel)["created"][0]
        angle = rng.uniform(0, 3.1416)
        dx, dy = 80 * math.cos(angle), 80 * math.sin(angle)
        cut = LineString([(cx - dx, cy - dy + rng.uniform(-5, 5)), (cx + dx, cy + dy)])
        with lic_db.begin() as conn:
            result = register.split_parcel(conn, "officer1", parent["id"], cut)
        pieces = [shape(c["geometry"]) for c in result["created"]]
        assert sum(p.area for p in pieces) == pytest.approx(parcel.area, abs=0.05)
        assert unary_union(pieces).symmetric_difference(parcel).area < 0.05
        with lic_db.connect() as conn:
            carried = sum(e["area_carried"] for e in register.lineage(conn, parent["id"],
                                                                         direction="descendants")["edges"])
        assert carried == pytest.approx(parcel.area, abs=0.05)
