"""Run Alembic migrations programmatically against the configured database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(engine: Engine | None = None, connection=None) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.begin() as conn:
        command.downgrade(alembic_config(connection=conn), revision)


def current(engine: Engine) -> list[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return list(MigrationContext.configure(conn).get_current_heads())
