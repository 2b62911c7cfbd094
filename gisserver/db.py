"""Database engine and connection helpers (no Flask).

``resolve_database_url`` decides between ``DATABASE_URL`` and the embedded cluster;
``make_engine`` builds a pooled SQLAlchemy engine. Nothing is created at import time.
"""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from gisserver.config import Settings


def resolve_database_url(settings: Settings, *, start_embedded: bool = False) -> str:
    if settings.database_url:
        url = settings.database_url
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        return url
    from gisserver.pgcluster import cluster_from_settings

    cluster = cluster_from_settings(settings)
    if start_embedded:
        cluster.start()
        return cluster.ensure_database()
    return cluster.url()


def sqlalchemy_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def make_engine(url: str, *, pool_size: int = 8, application_name: str = "gisserver") -> Engine:
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"application_name": application_name, "connect_timeout": 10},
    )

    @event.listens_for(engine, "connect")
    def _set_session_defaults(dbapi_conn, _record):  # pragma: no cover - trivial
        with dbapi_conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
        dbapi_conn.commit()

    return engine


@contextmanager
def raw_connection(engine: Engine):
    """A DBAPI (psycopg2) connection from the pool, for COPY; committed or rolled back."""
    conn = engine.raw_connection()
    try:
        yield conn.driver_connection
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def database_url_for(server_url: str, database: str) -> str:
    """The same server and credentials, another database."""
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


def _admin(server_url: str, statement: str, name: str) -> None:
    """Run a CREATE/DROP DATABASE (no transaction) with the name quoted by the server itself."""
    import psycopg2

    conn = psycopg2.connect(database_url_for(server_url, "postgres"))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT quote_ident(%s)", (name,))
            cur.execute(statement.replace("{ident}", cur.fetchone()[0]))
    finally:
        conn.close()


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` (UTF-8, from template0) on the server; returns its URL."""
    _admin(server_url, "CREATE DATABASE {ident} TEMPLATE template0 ENCODING 'UTF8'", name)
    return database_url_for(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    _admin(server_url, "DROP DATABASE IF EXISTS {ident} WITH (FORCE)", name)


@contextmanager
def scratch_database(server_url: str, prefix: str):
    """A new database for tests or benchmarks, dropped afterwards; yields its URL."""
    import uuid

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, name)
    try:
        yield url
    finally:
        drop_database(server_url, name)
