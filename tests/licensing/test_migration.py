"""Migration 0004 creates exactly licensing/tables.py, round trips, and seeds its tables from code."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from gisserver import migrate
from gisserver.schema import metadata
from licensing import tables as lt
from licensing.workflow import transition_rows
from migrations.filters import include_object

LICENSING_NAMES = {t.name for t in lt.LICENSING_TABLES} | {"ix_parcel_ward_code_sheet_no_parcel_no"}


def _licensing_diff(engine):
    with engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        diff = compare_metadata(mc, metadata)
    return [d for d in diff if LICENSING_NAMES & set(_names(d))]


def _names(item):
    if isinstance(item, list):
        for sub in item:
            yield from _names(sub)
        return
    for part in item:
        name = getattr(part, "name", None)
        table = getattr(part, "table", None)
        if table is not None:
            yield table.name
        if isinstance(name, str):
            yield name
        if isinstance(part, str):
            yield part


@pytest.fixture
def scratch_engine():
    """A database of its own: the round trip must not wipe the session database other tests share."""
    from gisserver.db import make_engine, scratch_database
    from tests.conftest import _server

    with scratch_database(_server(), "gisserver_test_lic") as url:
        engine = make_engine(url, pool_size=1)
        try:
            yield engine
        finally:
            engine.dispose()


def test_licensing_migration_round_trip(scratch_engine):
    migrate.upgrade(scratch_engine)
    assert _licensing_diff(scratch_engine) == []
    migrate.downgrade(scratch_engine, "0001")
    with scratch_engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('public.dossier')")).scalar() is None
        assert conn.execute(text("SELECT to_regclass('public.parcel')")).scalar() is not None
    migrate.upgrade(scratch_engine)
    assert _licensing_diff(scratch_engine) == []


def test_transitions_table_equals_code(db_engine):
    with db_engine.connect() as conn:
        rows = conn.execute(
            select(lt.dossier_transition).order_by(*lt.dossier_transition.c)
        ).mappings().all()
    assert [dict(r) for r in rows] == transition_rows()


def test_rule_tables_seeded_with_legal_basis(db_engine):
    with db_engine.connect() as conn:
        rows = conn.execute(select(lt.rule_table)).mappings().all()
    ids = {r["rule_id"] for r in rows}
    assert {"density_individual_house", "setback_red_line", "power_line_corridor", "min_lot_subdivision"} <= ids
    assert all(r["legal_basis"] and r["version"] == 1 for r in rows)
    assert any(r["verify"] for r in rows)
