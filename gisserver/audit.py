"""The append-only audit log: who did what, when, with the state before and after.

The database refuses UPDATE/DELETE/TRUNCATE on the table (trigger in migration 0001); writes go
through :func:`record` inside the same transaction as the change they describe, so a change and
its audit entry commit or roll back together.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from gisserver import schema


def _jsonable(value):
    if value is None:
        return None
    return json.loads(json.dumps(value, default=_default, ensure_ascii=False))


def _default(obj):
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, bytes | memoryview):
        return bytes(obj).hex()
    return str(obj)


def record(conn: Connection, *, actor: str, action: str, target_type: str, target_id=None,
           before=None, after=None, detail=None) -> int:
    return conn.execute(
        insert(schema.audit_log)
        .values(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            before=_jsonable(before),
            after=_jsonable(after),
            detail=_jsonable(detail),
        )
        .returning(schema.audit_log.c.id)
    ).scalar_one()


def history(conn: Connection, target_type: str, target_id, limit: int = 200) -> list[dict]:
    a = schema.audit_log
    rows = conn.execute(
        select(a)
        .where(a.c.target_type == target_type, a.c.target_id == str(target_id))
        .order_by(a.c.at.desc(), a.c.id.desc())
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]
