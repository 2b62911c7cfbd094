"""Alembic environment: the URL is given by gisserver.migrate (settings), never read from a file."""

from alembic import context
from geoalchemy2 import alembic_helpers

from gisserver.schema import metadata
from migrations.filters import include_object

config = context.config


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        from sqlalchemy import create_engine

        from gisserver.db import sqlalchemy_url

        engine = create_engine(sqlalchemy_url(config.get_main_option("sqlalchemy.url")))
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connectable)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        compare_type=True,
        compare_server_default=False,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `gisserver db upgrade`")
run_migrations_online()
