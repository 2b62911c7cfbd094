"""Test fixtures: a real PostGIS for the whole session, a fresh database per run.

With ``TEST_DATABASE_URL`` (a server URL whose user may create databases) the tests use that
server; otherwise they start the project's embedded cluster under var/pg. Either way each run
creates its own database, migrates it to head, and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from gisserver.config import PROJECT_ROOT, Settings
from gisserver.db import database_url_for, make_engine, scratch_database

SHARED_DATA = (PROJECT_ROOT.parent / "shared" / "data").resolve()


def _server() -> str:
    """URL of the test server (its ``postgres`` database): TEST_DATABASE_URL's, or the embedded one."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return database_url_for(url, "postgres")
    from gisserver.pgcluster import cluster_from_settings

    cluster = cluster_from_settings(Settings.from_env())
    cluster.start()
    return cluster.url("postgres")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"shared sample data not found at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def database_url():
    with scratch_database(_server(), "gisserver_test") as url:
        yield url


@pytest.fixture(scope="session")
def db_engine(database_url):
    """Engine on a fresh database migrated to head."""
    from gisserver import migrate

    engine = make_engine(database_url, pool_size=4)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


# tables holding data (not code lists); emptied by clean_db (CASCADE reaches the tables that
# reference them: register, dossiers, records)
DATA_TABLES = (
    "api_token", "app_user", "agency", "audit_log", "layer", "parcel", "building", "road",
    "red_line", "drainage", "water_supply", "power_line", "telecom", "tree", "park", "water_body",
    "underground_work", "zoning_zone", "raster", "job", "flood_scenario", "flood_run", "flood_extent",
    "lidar_file", "lidar_tile",
)


def empty_database(engine) -> None:
    """Empty every data table and the generic layers (a fresh catalogue for the next test)."""
    with engine.begin() as conn:
        existing = set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )
        tables = [t for t in DATA_TABLES if t in existing]
        # the audit log refuses TRUNCATE through its trigger; tests reset it as replication role
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
        conn.execute(text("DROP SCHEMA IF EXISTS layerdata CASCADE"))
        conn.execute(text("CREATE SCHEMA layerdata"))


@pytest.fixture
def clean_db(db_engine):
    """Empty every data table (and generic layers) before the test."""
    empty_database(db_engine)
    return db_engine


@pytest.fixture(scope="session")
def app(db_engine, database_url, tmp_path_factory):
    """The application on the test database (catalogue of canonical layers registered)."""
    from gisserver import create_app
    from layers.catalogue import sync_canonical_layers

    with db_engine.begin() as conn:
        sync_canonical_layers(conn)
    var_dir = tmp_path_factory.mktemp("var")
    application = create_app(
        Settings.from_env(database_url=database_url, var_dir=var_dir, secret_key="test-secret",
                          max_upload_mb=8, token_cache_seconds=0)
    )
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def catalogue(clean_db):
    """Empty data tables with the canonical layers registered again."""
    from layers.catalogue import sync_canonical_layers

    with clean_db.begin() as conn:
        sync_canonical_layers(conn)
    return clean_db


@pytest.fixture
def make_user(db_engine):
    """make_user(role, username=None, agency_id=None) -> (user_id, bearer token)."""
    from gisserver.security import create_token, create_user

    def _make(role: str, username: str | None = None, agency_id: int | None = None):
        username = username or f"{role}_{uuid.uuid4().hex[:6]}"
        with db_engine.begin() as conn:
            user_id = create_user(conn, username, role, password="s3cret-pass", agency_id=agency_id)
            token = create_token(conn, user_id, "test")
        return user_id, token

    return _make


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def live_server(app):
    """The application served over real HTTP on a loopback port (for OWSLib, GDAL, browsers)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
