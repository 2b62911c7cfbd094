"""Versioned rule tables in the database: read the version in force on a date, publish new versions.

A rule table (``rule_table`` rows sharing a ``rule_id``) has consecutive versions with
``effective_from``/``effective_to`` dates, a legal basis and a ``verify`` flag. Publishing a new
version closes the one in force; nothing is deleted, so a check can be re-run under the rules of
any past date. Values are read through the pure functions of :mod:`licensing.ruledata`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection

from gisserver import audit
from gisserver.errors import InvalidInput, NotFound
from licensing import tables as lt
from licensing.ruledata import VALIDATORS, validate_rule_data

RT = lt.rule_table


@dataclass(frozen=True)
class RuleVersion:
    id: int
    rule_id: str
    version: int
    title: str
    legal_basis: str
    verify: bool
    effective_from: date
    effective_to: date | None
    data: dict

    def as_dict(self) -> dict:
        return {
            "id": self.id, "rule_id": self.rule_id, "version": self.version, "title": self.title,
            "legal_basis": self.legal_basis, "verify": self.verify,
            "effective_from": self.effective_from.isoformat(),
            "effective_to": self.effective_to.isoformat() if self.effective_to else None, "data": self.data,
        }

    def basis(self) -> str:
        """Legal basis as shown in reports, with the version and the verify flag."""
        flag = " [values to verify]" if self.verify else ""
        return f"{self.legal_basis} (rule {self.rule_id} v{self.version}){flag}"


def _in_force(on: date):
    return and_(RT.c.effective_from <= on, or_(RT.c.effective_to.is_(None), RT.c.effective_to > on))


def _version(row) -> RuleVersion:
    return RuleVersion(**{k: row[k] for k in RuleVersion.__dataclass_fields__})


def rules_in_force(conn: Connection, on: date | None = None) -> dict[str, RuleVersion]:
    """Every rule table's version in force on ``on`` (default: today), keyed by rule id."""
    on = on or date.today()
    rows = conn.execute(select(RT).where(_in_force(on))).mappings()
    return {r["rule_id"]: _version(r) for r in rows}


def rule_in_force(conn: Connection, rule_id: str, on: date | None = None) -> RuleVersion:
    row = conn.execute(select(RT).where(RT.c.rule_id == rule_id, _in_force(on or date.today()))).mappings().first()
    if row is None:
        raise NotFound(f"no version of rule table {rule_id!r} in force on {(on or date.today()).isoformat()}")
    return _version(row)


def rule_versions(conn: Connection, rule_id: str) -> list[RuleVersion]:
    rows = conn.execute(select(RT).where(RT.c.rule_id == rule_id).order_by(RT.c.version)).mappings().all()
    if not rows:
        raise NotFound(f"no rule table {rule_id!r}")
    return [_version(r) for r in rows]


def list_rule_tables(conn: Connection, on: date | None = None) -> list[RuleVersion]:
    return sorted(rules_in_force(conn, on).values(), key=lambda r: r.rule_id)


def publish_rule_version(conn: Connection, actor: str, rule_id: str, *, data: dict, effective_from: date,
                         legal_basis: str | None = None, verify: bool | None = None, title: str | None = None,
                         note: str = "") -> RuleVersion:
    """A new version of a rule table, in force from ``effective_from``; the open version is closed then.

    Only the latest version may be superseded, and only from a later date: past checks stay
    reproducible.
    """
    if rule_id not in VALIDATORS:
        raise InvalidInput(f"unknown rule table {rule_id!r}; one of {', '.join(sorted(VALIDATORS))}")
    validate_rule_data(rule_id, data)
    if not isinstance(effective_from, date):
        raise InvalidInput("effective_from must be a date")
    latest = conn.execute(
        select(RT).where(RT.c.rule_id == rule_id).order_by(RT.c.version.desc()).limit(1).with_for_update()
    ).mappings().first()
    if latest is not None:
        if effective_from <= latest["effective_from"]:
            raise InvalidInput(
                f"effective_from must be after {latest['effective_from'].isoformat()} (version {latest['version']})"
            )
        if latest["effective_to"] is not None and latest["effective_to"] < effective_from:
            raise InvalidInput(f"the latest version ends on {latest['effective_to'].isoformat()}; no gap allowed")
        conn.execute(update(RT).where(RT.c.id == latest["id"]).values(effective_to=effective_from))
    basis = legal_basis if legal_basis is not None else (latest["legal_basis"] if latest else None)
    if not isinstance(basis, str) or not basis.strip():
        raise InvalidInput("legal_basis is required")
    values = {
        "rule_id": rule_id,
        "version": (latest["version"] + 1) if latest else 1,
        "title": title or (latest["title"] if latest else rule_id),
        "legal_basis": basis.strip(),
        "verify": bool(verify) if verify is not None else (bool(latest["verify"]) if latest else True),
        "effective_from": effective_from,
        "data": data,
        "note": note or "",
        "created_by": actor,
    }
    row = conn.execute(insert(RT).values(**values).returning(RT)).mappings().one()
    new = _version(row)
    audit.record(conn, actor=actor, action="rule.publish", target_type="rule_table", target_id=rule_id,
                 before=dict(latest) if latest else None, after=new.as_dict(), detail={"note": note})
    return new
