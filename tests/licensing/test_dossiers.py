"""Permit dossiers: transitions per role (code and database), due dates, locking, attachments, public view."""

from __future__ import annotations

import hashlib
import io
from datetime import date, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gisserver import audit
from gisserver.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, UnsupportedFormat
from licensing import dossiers, rules
from licensing.dossiers import Actor
from licensing.errors import TransitionNotAllowed, VersionMismatch

PDF = b"%PDF-1.7\n" + b"0" * 2000 + b"\n%%EOF\n"
HOLIDAYS = frozenset({date(2026, 2, d) for d in range(16, 21)})


@pytest.fixture
def people(lic_db):
    from gisserver.security import create_user

    with lic_db.begin() as conn:  # no password, no token: no argon2 cost in these domain tests
        citizen_id = create_user(conn, "citizen", "public")
        other_id = create_user(conn, "other", "public")
    return {
        "citizen": Actor("citizen", "public", citizen_id),
        "other": Actor("other", "public", other_id),
        "officer": Actor("officer", "officer", None),
        "planner": Actor("planner", "planner", None),
    }


def _new(engine, actor, **kw):
    with engine.begin() as conn:
        return dossiers.create_dossier(conn, actor, kind=kw.pop("kind", "construction_permit_house"),
                                       title="Nhà ở riêng lẻ 4 tầng", applicant_name="Trần Thị B",
                                       applicant_contact="0909 000 000", **kw)


def _move(engine, actor, dossier_id, state, **kw):
    with engine.begin() as conn:
        return dossiers.transition(conn, actor, dossier_id, state, **kw)


def test_working_days_skip_weekends_and_holidays():
    assert dossiers.add_working_days(date(2026, 2, 13), 1, HOLIDAYS) == date(2026, 2, 23)
    assert dossiers.add_working_days(date(2026, 3, 2), 15, frozenset()) == date(2026, 3, 23)
    assert dossiers.working_days_between(date(2026, 2, 13), date(2026, 2, 24), HOLIDAYS) == 2


def test_full_path_timeline_due_date_and_audit(lic_db, people):
    d = _new(lic_db, people["citizen"])
    assert d["state"] == "draft" and d["code"].startswith("HS") and d["etag"] == '"1"'
    _move(lic_db, people["citizen"], d["id"], "submitted")
    accepted = _move(lic_db, people["officer"], d["id"], "accepted", note="hồ sơ đầy đủ")
    with lic_db.connect() as conn:
        today = conn.execute(text("SELECT current_date")).scalar()
        _, holidays = dossiers._deadlines(conn, today)
    assert accepted["due_date"] == dossiers.add_working_days(today, 15, holidays).isoformat()
    _move(lic_db, people["planner"], d["id"], "under_review")
    _move(lic_db, people["planner"], d["id"], "approved")
    issued = _move(lic_db, people["officer"], d["id"], "issued")
    assert issued["state"] == "issued" and issued["version"] == 6
    with lic_db.connect() as conn:
        full = dossiers.get_dossier(conn, d["id"], people["citizen"])
        public = dossiers.public_status(conn, d["code"].lower())
        history = dossiers.dossier_history(conn, d["id"], people["officer"])
    assert [t["to_state"] for t in full["timeline"]] == ["submitted", "accepted", "under_review", "approved", "issued"]
    assert [t["state"] for t in public["timeline"]] == ["submitted", "accepted", "under_review", "approved", "issued"]
    flat = repr(public)
    assert "Trần Thị B" not in flat and "0909" not in flat and "officer" not in flat and "đầy đủ" not in flat
    assert [h["action"] for h in history][:2] == ["dossier.issued", "dossier.approved"]
    assert history[-1]["action"] == "dossier.create"


def test_roles_and_pairs_are_enforced(lic_db, people):
    d = _new(lic_db, people["citizen"])
    with pytest.raises(TransitionNotAllowed) as err:
        _move(lic_db, people["officer"], d["id"], "approved")
    assert err.value.status == 409 and err.value.details["allowed"] == ["submitted", "withdrawn"]
    _move(lic_db, people["citizen"], d["id"], "submitted")
    with pytest.raises(Forbidden):
        _move(lic_db, people["citizen"], d["id"], "accepted")
    with pytest.raises(NotFound):  # somebody else's dossier does not exist for an applicant
        _move(lic_db, people["other"], d["id"], "withdrawn")
    _move(lic_db, people["officer"], d["id"], "need_info", note="thiếu bản vẽ")
    _move(lic_db, people["citizen"], d["id"], "submitted")
    assert _move(lic_db, people["citizen"], d["id"], "withdrawn")["state"] == "withdrawn"


def test_database_refuses_transitions_outside_the_table(lic_db, people):
    d = _new(lic_db, people["citizen"])
    with pytest.raises(DBAPIError, match="needs an allowed dossier_event"):
        with lic_db.begin() as conn:
            conn.execute(text("UPDATE dossier SET state = 'approved' WHERE id = :id"), {"id": d["id"]})
    with pytest.raises(DBAPIError, match="dossier_transition"):
        with lic_db.begin() as conn:  # the role is not allowed: the event's foreign key refuses it
            conn.execute(text("INSERT INTO dossier_event (dossier_id, from_state, to_state, role, actor) "
                              "VALUES (:id, 'draft', 'submitted', 'planner', 'x')"), {"id": d["id"]})
    with pytest.raises(DBAPIError, match="starts in draft"):
        with lic_db.begin() as conn:
            conn.execute(text("INSERT INTO dossier (code, kind, state) VALUES ('HS2026-ZZZZZZZZ', 'x', 'issued')"))


def test_optimistic_locking(lic_db, people):
    d = _new(lic_db, people["citizen"])
    with lic_db.begin() as conn:
        v2 = dossiers.update_dossier(conn, people["citizen"], d["id"], 1, {"title": "Nhà 5 tầng"})
    assert v2["version"] == 2 and v2["etag"] == '"2"'
    with pytest.raises(VersionMismatch) as err:
        with lic_db.begin() as conn:
            dossiers.update_dossier(conn, people["officer"], d["id"], 1, {"title": "stale"})
    assert err.value.status == 412 and err.value.details["current_version"] == 2
    _move(lic_db, people["citizen"], d["id"], "submitted")
    with pytest.raises(Conflict, match="applicant can edit only"):
        with lic_db.begin() as conn:
            dossiers.update_dossier(conn, people["citizen"], d["id"], 3, {"title": "late"})


def test_overdue_report(lic_db, people):
    d = _new(lic_db, people["citizen"])
    _move(lic_db, people["citizen"], d["id"], "submitted")
    due = date.fromisoformat(_move(lic_db, people["officer"], d["id"], "accepted")["due_date"])
    with lic_db.connect() as conn:
        assert dossiers.overdue_report(conn, today=due) == []
        late = dossiers.overdue_report(conn, today=due + timedelta(days=7))
    assert [r["code"] for r in late] == [d["code"]] and late[0]["working_days_overdue"] >= 4
    _move(lic_db, people["officer"], d["id"], "under_review")
    _move(lic_db, people["planner"], d["id"], "need_info")
    with lic_db.connect() as conn:  # waiting for the applicant: the clock is stopped
        assert dossiers.overdue_report(conn, today=due + timedelta(days=7)) == []


def test_attachments_hash_type_and_size(lic_db, people, tmp_path):
    d = _new(lic_db, people["citizen"])

    def attach(data, mime="application/pdf", name="ban-ve.pdf"):
        with lic_db.begin() as conn:
            return dossiers.add_attachment(conn, people["citizen"], d["id"], filename=name, mime_type=mime,
                                           stream=io.BytesIO(data), storage_root=tmp_path)

    rec = attach(PDF, name="../../etc/ban-ve.pdf")
    assert rec["sha256"] == hashlib.sha256(PDF).hexdigest() and rec["size_bytes"] == len(PDF)
    assert rec["filename"] == "ban-ve.pdf"
    stored = tmp_path / "dossiers" / str(d["id"]) / rec["sha256"]
    assert stored.read_bytes() == PDF
    with pytest.raises(Conflict, match="already attached"):
        attach(PDF)
    with pytest.raises(UnsupportedFormat):
        attach(b"MZ\x90\x00 not a pdf", name="virus.pdf")
    with pytest.raises(UnsupportedFormat):
        attach(PDF, mime="application/x-msdownload")
    with lic_db.begin() as conn:
        rules.publish_rule_version(conn, "admin1", "dossier_attachments", effective_from=date.today(),
                                   data={"max_bytes": 1000, "mime_types": ["application/pdf"]})
    with pytest.raises(PayloadTooLarge):
        attach(PDF + b"more")
    assert sorted(p.name for p in stored.parent.iterdir()) == [rec["sha256"]]  # no partial files left
    with lic_db.connect() as conn:
        assert [a["id"] for a in dossiers.list_attachments(conn, d["id"], people["citizen"])] == [rec["id"]]
        assert audit.history(conn, "dossier", d["id"])[0]["action"] == "dossier.attach"


class _Trickle(io.RawIOBase):
    """A stream that hands out at most ``n`` bytes per read, like a slow socket."""

    def __init__(self, data: bytes, n: int):
        self._data, self._n, self._pos = data, n, 0

    def readable(self):
        return True

    def read(self, size=-1):
        size = self._n if size is None or size < 0 else min(size, self._n)
        chunk = self._data[self._pos:self._pos + size]
        self._pos += len(chunk)
        return chunk


def test_attachment_hash_is_the_same_at_odd_chunk_sizes(lic_db, people, tmp_path):
    payload = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 37
    for chunk in (1, 7, 4093, 1 << 20):
        d = _new(lic_db, people["citizen"])
        with lic_db.begin() as conn:
            rec = dossiers.add_attachment(conn, people["citizen"], d["id"], filename="anh.png",
                                          mime_type="image/png", stream=_Trickle(payload, chunk),
                                          storage_root=tmp_path)
        assert rec["sha256"] == hashlib.sha256(payload).hexdigest() and rec["size_bytes"] == len(payload), chunk
        assert (tmp_path / "dossiers" / str(d["id"]) / rec["sha256"]).read_bytes() == payload
