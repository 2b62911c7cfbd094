"""Fixtures of the licensing tests: licensing tables emptied, rule tables back at their seeds."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, text

import licensing.tables as lt  # noqa: F401  (puts the licensing tables on the shared metadata)
from licensing.ruledata import seed_rule_tables

LICENSING_DATA_TABLES = (
    "dossier_attachment", "dossier_event", "dossier", "protection_corridor", "rrr", "parcel_lineage",
    "parcel_change", "register_source", "party",
)


@pytest.fixture
def lic_db(catalogue):
    """Clean data tables (canonical layers registered), empty licensing tables, seed rule tables."""
    with catalogue.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("TRUNCATE " + ", ".join(LICENSING_DATA_TABLES) + " RESTART IDENTITY CASCADE"))
        conn.execute(delete(lt.rule_table))
        conn.execute(insert(lt.rule_table), seed_rule_tables())
    return catalogue
