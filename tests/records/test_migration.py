"""Migration 0006 creates exactly licensing/records_tables.py and round trips."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from gisserver import migrate
from gisserver.schema import metadata
from licensing import records_tables as rt
from migrations.filters import include_object

RECORDS_NAMES = {t.name for t in rt.RECORDS_TABLES}


def _names(item):
    if isinstance(item, list | tuple):
        for sub in item:
            yield from _names(sub)
        return
    table = getattr(item, "table", None)
    if table is not None:
        yield table.name
    name = getattr(item, "name", None)
    if isinstance(name, str):
        yield name
    if isinstance(item, str):
        yield item


def _records_diff(engine):
    with engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        diff = compare_metadata(mc, metadata)
    return [d for d in diff if RECORDS_NAMES & set(_names(d))]


def test_records_migration_round_trip(db_engine):
    assert _records_diff(db_engine) == []
    migrate.downgrade(db_engine, "0004")
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('public.land_certificate')")).scalar() is None
        assert conn.execute(text("SELECT to_regclass('public.dossier')")).scalar() is not None
    migrate.upgrade(db_engine)
    assert _records_diff(db_engine) == []
    with db_engine.connect() as conn:
        triggers = set(conn.execute(text(
            "SELECT tgrelid::regclass::text || '.' || tgname FROM pg_trigger WHERE NOT tgisinternal"
        )).scalars())
    assert {"land_certificate.records_guard", "land_certificate.certificate_complete",
            "house_number.records_guard", "land_certificate_holder.certificate_child_guard"} <= triggers
