"""Permit dossiers: the state machine, statutory due dates, attachments, optimistic locking, public status.

Allowed transitions per role are the table in :mod:`licensing.workflow`; the database enforces
the same table (migration 0004: a state change needs a ``dossier_event`` row of the same
transaction whose (from, to, role) is in ``dossier_transition``). Applicants act with the
``public`` role and only on their own dossiers; staff act on any. Every change is audited.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from gisserver import audit, schema
from gisserver.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge, UnsupportedFormat
from licensing import tables as lt
from licensing.errors import TransitionNotAllowed, VersionMismatch
from licensing.rules import rule_in_force
from licensing.workflow import CLOCK_STATES, DOSSIER_STATES, FINAL_STATES, TRANSITIONS, allowed_next

D, E, A = lt.dossier, lt.dossier_event, lt.dossier_attachment
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
EDITABLE = ("title", "parcel_id", "applicant_name", "applicant_contact", "data")
#: states in which the applicant may edit the dossier's content
APPLICANT_EDITABLE_STATES = frozenset({"draft", "need_info"})
CHUNK = 1 << 16


@dataclass(frozen=True)
class Actor:
    """Who acts on a dossier: user name, role, user id (None for CLI/system)."""

    name: str
    role: str
    user_id: int | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in ("officer", "planner", "admin")


# --- working days ------------------------------------------------------------------------------

def is_working_day(day: date, holidays: frozenset[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def add_working_days(start: date, days: int, holidays: frozenset[date]) -> date:
    """The date on which ``days`` working days have passed after ``start`` (start day not counted)."""
    current, counted = start, 0
    while counted < days:
        current += timedelta(days=1)
        if is_working_day(current, holidays):
            counted += 1
    return current


def working_days_between(start: date, end: date, holidays: frozenset[date]) -> int:
    """Working days after ``start`` up to and including ``end`` (0 when end <= start)."""
    n, current = 0, start
    while current < end:
        current += timedelta(days=1)
        n += is_working_day(current, holidays)
    return n


def _deadlines(conn: Connection, on: date) -> tuple[dict, frozenset[date]]:
    rule = rule_in_force(conn, "dossier_deadlines", on)
    holidays = frozenset(date.fromisoformat(d) for d in rule.data.get("public_holidays", []))
    return rule.data["working_days"], holidays


# --- reading ---------------------------------------------------------------------------------------

def _serialize(row) -> dict:
    out = dict(row)
    for key, value in out.items():
        if isinstance(value, datetime | date):
            out[key] = value.isoformat()
    out["etag"] = etag(row["version"])
    return out


def etag(version: int) -> str:
    return f'"{version}"'


def _load(conn: Connection, dossier_id: int, actor: Actor, *, lock: bool = False):
    stmt = select(D).where(D.c.id == dossier_id)
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    # someone else's dossier is reported as not found to applicants: no probing of ids
    if row is None or (not actor.is_staff and row["owner_user_id"] != actor.user_id):
        raise NotFound(f"no dossier {dossier_id}")
    return row


def get_dossier(conn: Connection, dossier_id: int, actor: Actor) -> dict:
    row = _load(conn, dossier_id, actor)
    out = _serialize(row)
    out["timeline"] = _timeline(conn, dossier_id, with_actors=True)
    out["allowed_transitions"] = allowed_next(row["state"], actor.role)
    out["attachments"] = list_attachments(conn, dossier_id, actor)
    return out


def list_dossiers(conn: Connection, actor: Actor, *, state: str | None = None, limit: int = 100) -> list[dict]:
    stmt = select(D).order_by(D.c.id.desc()).limit(limit)
    if state is not None:
        if state not in DOSSIER_STATES:
            raise InvalidInput(f"state must be one of {', '.join(DOSSIER_STATES)}")
        stmt = stmt.where(D.c.state == state)
    if not actor.is_staff:
        stmt = stmt.where(D.c.owner_user_id == actor.user_id)
    return [_serialize(r) for r in conn.execute(stmt).mappings()]


def _timeline(conn: Connection, dossier_id: int, *, with_actors: bool) -> list[dict]:
    cols = [E.c.at, E.c.from_state, E.c.to_state]
    if with_actors:
        cols += [E.c.role, E.c.actor, E.c.note]
    rows = conn.execute(select(*cols).where(E.c.dossier_id == dossier_id).order_by(E.c.at, E.c.id)).mappings()
    return [{**dict(r), "at": r["at"].isoformat()} for r in rows]


def public_status(conn: Connection, code: str) -> dict:
    """What anyone may see with the dossier code: kind, state, dates and timeline; no personal data."""
    if not isinstance(code, str) or not 6 <= len(code) <= 32:
        raise NotFound("no dossier with this code")
    row = conn.execute(
        select(D.c.id, D.c.code, D.c.kind, D.c.state, D.c.created_at, D.c.submitted_at, D.c.accepted_at,
               D.c.due_date, D.c.decided_at).where(D.c.code == code.strip().upper())
    ).mappings().first()
    if row is None:
        raise NotFound("no dossier with this code")
    out = {k: (v.isoformat() if isinstance(v, datetime | date) else v) for k, v in row.items() if k != "id"}
    out["timeline"] = [
        {"at": t["at"], "state": t["to_state"]} for t in _timeline(conn, row["id"], with_actors=False)
    ]
    return out


def dossier_history(conn: Connection, dossier_id: int, actor: Actor) -> list[dict]:
    _load(conn, dossier_id, actor)
    return audit.history(conn, "dossier", dossier_id)


# --- writing ---------------------------------------------------------------------------------------

def _new_code(year: int) -> str:
    return f"HS{year}-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def _check_fields(conn: Connection, fields: dict) -> dict:
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput(f"cannot set {', '.join(sorted(unknown))}; editable: {', '.join(EDITABLE)}")
    for key in ("title", "applicant_name", "applicant_contact"):
        value = fields.get(key)
        if key in fields and (value is not None or key == "title") and (not isinstance(value, str) or len(value) > 500):
            raise InvalidInput(f"{key} must be text of at most 500 characters")
    if "data" in fields and not isinstance(fields["data"], dict):
        raise InvalidInput("data must be an object")
    parcel_id = fields.get("parcel_id")
    if parcel_id is not None:
        if not isinstance(parcel_id, int) or isinstance(parcel_id, bool):
            raise InvalidInput("parcel_id must be an integer")
        if conn.execute(select(schema.parcel.c.id).where(schema.parcel.c.id == parcel_id)).first() is None:
            raise InvalidInput(f"no parcel version {parcel_id}")
    return fields


def create_dossier(conn: Connection, actor: Actor, *, kind: str, **fields) -> dict:
    if actor.user_id is None and actor.role == "public":
        raise Forbidden("log in to file a dossier")
    days, _ = _deadlines(conn, date.today())
    if not isinstance(kind, str) or kind not in days:
        raise InvalidInput(f"kind must be one of {', '.join(sorted(days))}")
    fields = _check_fields(conn, fields)
    year = conn.execute(select(func.extract("year", func.now()))).scalar_one()
    for _ in range(5):  # a code collision is astronomically rare; retry rather than fail
        code = _new_code(int(year))
        if conn.execute(select(D.c.id).where(D.c.code == code)).first() is None:
            break
    row = conn.execute(
        insert(D).values(code=code, kind=kind, owner_user_id=actor.user_id, **fields).returning(D)
    ).mappings().one()
    audit.record(conn, actor=actor.name, action="dossier.create", target_type="dossier", target_id=row["id"],
                 after=_serialize(row))
    return _serialize(row)


def update_dossier(conn: Connection, actor: Actor, dossier_id: int, expected_version: int, changes: dict) -> dict:
    """Edit the dossier's content if it is still at ``expected_version`` (else VersionMismatch, 412)."""
    if not changes:
        raise InvalidInput(f"give at least one of {', '.join(EDITABLE)}")
    changes = _check_fields(conn, changes)
    row = _load(conn, dossier_id, actor, lock=True)
    if row["version"] != expected_version:
        raise VersionMismatch(f"dossier {dossier_id} is at version {row['version']}, not {expected_version}",
                              details={"current_version": row["version"]})
    if row["state"] in FINAL_STATES:
        raise Conflict(f"a {row['state']} dossier cannot be edited")
    if not actor.is_staff and row["state"] not in APPLICANT_EDITABLE_STATES:
        raise Conflict(f"the applicant can edit only in {', '.join(sorted(APPLICANT_EDITABLE_STATES))}")
    new = conn.execute(
        update(D).where(D.c.id == dossier_id, D.c.version == expected_version)
        .values(**changes, version=D.c.version + 1, updated_at=func.now()).returning(D)
    ).mappings().one()
    audit.record(conn, actor=actor.name, action="dossier.update", target_type="dossier", target_id=dossier_id,
                 before={k: row[k] for k in changes}, after={k: new[k] for k in changes},
                 detail={"version": new["version"]})
    return _serialize(new)


def _transition_values(conn: Connection, row, to_state: str) -> dict:
    values: dict = {}
    if to_state == "submitted" and row["submitted_at"] is None:
        values["submitted_at"] = func.now()
    if to_state == "accepted":
        today = conn.execute(select(func.current_date())).scalar_one()
        days, holidays = _deadlines(conn, today)
        values["accepted_at"] = func.now()
        values["due_date"] = add_working_days(today, days[row["kind"]], holidays)
    if to_state == "need_info":
        # the statutory clock restarts when the completed dossier is accepted again
        values["due_date"] = None
    if to_state in ("approved", "rejected"):
        values["decided_at"] = func.now()
    return values


def transition(conn: Connection, actor: Actor, dossier_id: int, to_state: str, *, note: str = "",
               expected_version: int | None = None) -> dict:
    """Move a dossier to ``to_state`` if the table allows it for the actor's role."""
    if to_state not in DOSSIER_STATES:
        raise InvalidInput(f"state must be one of {', '.join(DOSSIER_STATES)}")
    if not isinstance(note, str) or len(note) > 2000:
        raise InvalidInput("note must be text of at most 2000 characters")
    row = _load(conn, dossier_id, actor, lock=True)
    if expected_version is not None and row["version"] != expected_version:
        raise VersionMismatch(f"dossier {dossier_id} is at version {row['version']}, not {expected_version}",
                              details={"current_version": row["version"]})
    roles = TRANSITIONS.get((row["state"], to_state))
    if roles is None:
        raise TransitionNotAllowed(
            f"a dossier cannot go from {row['state']} to {to_state}",
            details={"state": row["state"], "allowed": sorted(b for (a, b) in TRANSITIONS if a == row["state"])},
        )
    if actor.role not in roles:
        raise Forbidden(f"the {actor.role} role cannot move a dossier from {row['state']} to {to_state}")
    conn.execute(insert(E).values(dossier_id=dossier_id, from_state=row["state"], to_state=to_state, role=actor.role,
                                  actor=actor.name, note=note))
    new = conn.execute(
        update(D).where(D.c.id == dossier_id)
        .values(state=to_state, version=D.c.version + 1, updated_at=func.now(),
                **_transition_values(conn, row, to_state))
        .returning(D)
    ).mappings().one()
    audit.record(conn, actor=actor.name, action=f"dossier.{to_state}", target_type="dossier", target_id=dossier_id,
                 before={"state": row["state"], "version": row["version"]},
                 after={"state": to_state, "version": new["version"], "due_date": new["due_date"]},
                 detail={"note": note, "role": actor.role})
    return _serialize(new)


def overdue_report(conn: Connection, *, today: date | None = None) -> list[dict]:
    """Dossiers whose statutory clock runs and whose due date has passed, most overdue first."""
    today = today or conn.execute(select(func.current_date())).scalar_one()
    _, holidays = _deadlines(conn, today)
    rows = conn.execute(
        select(D.c.id, D.c.code, D.c.kind, D.c.state, D.c.accepted_at, D.c.due_date)
        .where(D.c.state.in_(sorted(CLOCK_STATES)), D.c.due_date < today)
        .order_by(D.c.due_date, D.c.id)
    ).mappings()
    return [
        {**{k: (v.isoformat() if isinstance(v, datetime | date) else v) for k, v in r.items()},
         "working_days_overdue": working_days_between(r["due_date"], today, holidays)}
        for r in rows
    ]


# --- compliance checks on a dossier ----------------------------------------------------------

def check_dossier(conn: Connection, actor: Actor, dossier_id: int, proposal, *, on: date | None = None,
                  raster_root: Path | None = None) -> dict:
    """Run the compliance check of ``proposal`` on the dossier's parcel and keep the report with the
    dossier (``data.check``; the previous one stays in the audit log). Staff only."""
    from licensing.check import check_building

    if not actor.is_staff:
        raise Forbidden("checks recorded on a dossier are run by staff; use /api/checks for a preview")
    row = _load(conn, dossier_id, actor, lock=True)
    if row["state"] in FINAL_STATES:
        raise Conflict(f"a {row['state']} dossier is closed")
    if row["parcel_id"] is None:
        raise InvalidInput("the dossier names no parcel; set parcel_id first")
    report = check_building(conn, row["parcel_id"], proposal, on=on, raster_root=raster_root)
    summary = {"overall": report["overall"], "counts": report["counts"], "rules_on": report["rules_on"],
               "parcel_id": row["parcel_id"], "by": actor.name}
    conn.execute(
        update(D).where(D.c.id == dossier_id)
        .values(data=D.c.data.op("||")(func.jsonb_build_object("check", literal(report, JSONB))),
                version=D.c.version + 1, updated_at=func.now())
    )
    audit.record(conn, actor=actor.name, action="dossier.check", target_type="dossier", target_id=dossier_id,
                 before={"check": (row["data"] or {}).get("check")}, after=summary)
    return report


# --- attachments -------------------------------------------------------------------------------

MAGIC = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
}


def _sniff(head: bytes) -> str | None:
    for mime, signatures in MAGIC.items():
        if any(head.startswith(sig) for sig in signatures):
            return mime
    return None


def _safe_filename(name: str) -> str:
    base = os.path.basename((name or "").replace("\\", "/")).strip()
    if not base or base in (".", "..") or len(base) > 200:
        raise InvalidInput("the attachment needs a file name of at most 200 characters")
    return base


def add_attachment(conn: Connection, actor: Actor, dossier_id: int, *, filename: str, mime_type: str, stream,
                   storage_root: Path) -> dict:
    """Store an uploaded file (streamed in chunks, hashed, size- and type-checked) and record it."""
    filename = _safe_filename(filename)
    row = _load(conn, dossier_id, actor, lock=True)
    if row["state"] in FINAL_STATES:
        raise Conflict(f"a {row['state']} dossier takes no more attachments")
    if not actor.is_staff and row["state"] not in APPLICANT_EDITABLE_STATES:
        raise Conflict("the applicant can add attachments only in draft or need_info")
    limits = rule_in_force(conn, "dossier_attachments").data
    if mime_type not in limits["mime_types"]:
        raise UnsupportedFormat(f"{mime_type!r} is not accepted; send one of {', '.join(limits['mime_types'])}")
    folder = Path(storage_root) / "dossiers" / str(dossier_id)
    folder.mkdir(parents=True, exist_ok=True)
    digest, size, head = hashlib.sha256(), 0, b""
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limits["max_bytes"]:
                    raise PayloadTooLarge(f"attachments are limited to {limits['max_bytes'] // (1024 * 1024)} MiB")
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidInput("the attachment is empty")
        sniffed = _sniff(head)
        if sniffed != mime_type:
            raise UnsupportedFormat(f"the file content is {sniffed or 'not a known type'}, not {mime_type}")
        sha = digest.hexdigest()
        if conn.execute(select(A.c.id).where(A.c.dossier_id == dossier_id, A.c.sha256 == sha)).first():
            raise Conflict("this file is already attached to the dossier", details={"sha256": sha})
        final = folder / sha
        os.replace(tmp_name, final)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    rec = conn.execute(
        insert(A).values(dossier_id=dossier_id, filename=filename, mime_type=mime_type, size_bytes=size, sha256=sha,
                         storage_path=str(final.relative_to(storage_root)), uploaded_by=actor.name)
        .returning(A.c.id, A.c.filename, A.c.mime_type, A.c.size_bytes, A.c.sha256, A.c.uploaded_at)
    ).mappings().one()
    conn.execute(update(D).where(D.c.id == dossier_id).values(version=D.c.version + 1, updated_at=func.now()))
    out = {**dict(rec), "uploaded_at": rec["uploaded_at"].isoformat()}
    audit.record(conn, actor=actor.name, action="dossier.attach", target_type="dossier", target_id=dossier_id,
                 after=out)
    return out


def list_attachments(conn: Connection, dossier_id: int, actor: Actor) -> list[dict]:
    _load(conn, dossier_id, actor)
    rows = conn.execute(
        select(A.c.id, A.c.filename, A.c.mime_type, A.c.size_bytes, A.c.sha256, A.c.uploaded_at, A.c.uploaded_by)
        .where(A.c.dossier_id == dossier_id).order_by(A.c.id)
    ).mappings()
    return [{**dict(r), "uploaded_at": r["uploaded_at"].isoformat()} for r in rows]


def attachment_file(conn: Connection, dossier_id: int, attachment_id: int, actor: Actor,
                    storage_root: Path) -> tuple[Path, str, str]:
    """(path, MIME type, file name) of a stored attachment."""
    _load(conn, dossier_id, actor)
    row = conn.execute(
        select(A).where(A.c.id == attachment_id, A.c.dossier_id == dossier_id)
    ).mappings().first()
    if row is None:
        raise NotFound(f"no attachment {attachment_id} on dossier {dossier_id}")
    return Path(storage_root) / row["storage_path"], row["mime_type"], row["filename"]
