"""Fixtures of the land-records tests: empty register, dossier and records tables; seed rule tables."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, text

import licensing.records_tables as rt
import licensing.tables as lt
from licensing.ruledata import seed_rule_tables

RESET_TABLES = (
    *(t.name for t in rt.RECORDS_TABLES),
    "dossier_attachment", "dossier_event", "dossier", "rrr", "parcel_lineage", "parcel_change", "register_source",
    "party",
)


@pytest.fixture
def records_db(clean_db):
    """Clean data tables, empty licensing and records tables, rule tables at their seeds (no layer
    catalogue: the register skips invalidating layers that are not registered)."""
    with clean_db.begin() as conn:
        # the records refuse DELETE/TRUNCATE through their triggers; tests reset as replication role
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("TRUNCATE " + ", ".join(RESET_TABLES) + " RESTART IDENTITY CASCADE"))
        conn.execute(delete(lt.rule_table))
        conn.execute(insert(lt.rule_table), seed_rule_tables())
    return clean_db
