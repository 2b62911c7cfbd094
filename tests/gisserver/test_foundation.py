"""The foundation: migrations round trip, city CRS, errors, auth and the audit log."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pyproj import Transformer
from sqlalchemy import text

from gisserver import migrate
from gisserver.crs import CITY_SRID, city_crs, resolve_srid
from gisserver.errors import UnknownCRS
from gisserver.schema import metadata
from migrations.filters import include_object
from tests.conftest import auth

BEN_THANH_LONLAT = (106.6980, 10.7725)
BEN_THANH_EN = (603481.588, 1191454.611)


def _diff(engine):
    with engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        return compare_metadata(mc, metadata)


def test_migrations_round_trip(db_engine):
    assert migrate.current(db_engine)
    assert _diff(db_engine) == []
    migrate.downgrade(db_engine, "base")
    assert migrate.current(db_engine) == []
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('public.parcel')")).scalar() is None
        srids = text("SELECT count(*) FROM spatial_ref_sys WHERE srid = :s")
        assert conn.execute(srids, {"s": CITY_SRID}).scalar() == 0
    migrate.upgrade(db_engine)
    assert _diff(db_engine) == []


def test_ben_thanh_in_python_to_1cm():
    t = Transformer.from_crs("EPSG:4326", city_crs(), always_xy=True)
    e, n = t.transform(*BEN_THANH_LONLAT)
    assert abs(e - BEN_THANH_EN[0]) < 0.01 and abs(n - BEN_THANH_EN[1]) < 0.01


def test_ben_thanh_in_postgis_to_1cm(db_engine):
    with db_engine.connect() as conn:
        e, n = conn.execute(
            text("SELECT ST_X(p), ST_Y(p) FROM ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :srid) p"),
            {"lon": BEN_THANH_LONLAT[0], "lat": BEN_THANH_LONLAT[1], "srid": CITY_SRID},
        ).one()
    assert abs(e - BEN_THANH_EN[0]) < 0.01 and abs(n - BEN_THANH_EN[1]) < 0.01


def test_epsg_default_operation_is_the_wrong_one():
    """Why the custom SRID exists: EPSG:9210's default operation is ~0.8 m off the official one."""
    e, n = Transformer.from_crs("EPSG:4326", "EPSG:9210", always_xy=True).transform(*BEN_THANH_LONLAT)
    off = ((e - BEN_THANH_EN[0]) ** 2 + (n - BEN_THANH_EN[1]) ** 2) ** 0.5
    assert 0.3 < off < 2.0


@pytest.mark.parametrize(
    "value, srid",
    [("EPSG:9210", CITY_SRID), ("9210", CITY_SRID), ("http://www.opengis.net/def/crs/EPSG/0/3405", 3405),
     ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", 4326), ("urn:ogc:def:crs:EPSG::4326", 4326),
     ("EPSG:3857", 3857)],
)
def test_resolve_srid(value, srid):
    assert resolve_srid(value) == srid


@pytest.mark.parametrize("value", ["EPSG:999999", "foo", "EPSG:4326; DROP TABLE parcel", ""])
def test_resolve_srid_rejects(value):
    with pytest.raises(UnknownCRS):
        resolve_srid(value)


def test_audit_log_is_append_only(clean_db):
    from gisserver.audit import record

    with clean_db.begin() as conn:
        record(conn, actor="tester", action="x.create", target_type="x", target_id=1, after={"a": 1})
    for statement in ("UPDATE audit_log SET actor = 'evil'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(Exception, match="append-only"):
            with clean_db.begin() as conn:
                conn.execute(text(statement))
    with clean_db.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_log")).scalar() == "tester"


def test_health(client):
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.json["status"] == "ok"


def test_token_auth_and_errors(client, clean_db, make_user):
    _, token = make_user("officer")
    me = client.get("/auth/me", headers=auth(token))
    assert me.status_code == 200 and me.json["role"] == "officer" and me.json["authenticated"]
    assert client.get("/auth/me").json["authenticated"] is False
    bad = client.get("/auth/me", headers=auth(token[:-2] + "xx"))
    assert bad.status_code == 401
    assert bad.content_type == "application/problem+json"
    assert bad.json["code"] == "authentication-required"
    assert client.get("/auth/me", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/auth/me", headers=auth("gis_nothing")).status_code == 401


def test_tokens_are_stored_hashed_and_revocable(client, clean_db, make_user):
    from gisserver.security import revoke_token

    _, token = make_user("planner")
    secret = token.split("_", 2)[2]
    with clean_db.connect() as conn:
        stored = conn.execute(text("SELECT secret_hash FROM api_token")).scalar()
    assert secret not in stored and stored.startswith("$argon2")
    assert client.get("/auth/me", headers=auth(token)).status_code == 200
    with clean_db.begin() as conn:
        assert revoke_token(conn, token.split("_")[1])
    assert client.get("/auth/me", headers=auth(token)).status_code == 401


def test_session_login(client, clean_db, make_user):
    _, _ = make_user("admin", username="chi.admin")
    assert client.post("/auth/login", json={"username": "chi.admin", "password": "wrong"}).status_code == 401
    resp = client.post("/auth/login", json={"username": "chi.admin", "password": "s3cret-pass"})
    assert resp.status_code == 200 and resp.json["role"] == "admin"
    assert client.get("/auth/me").json["username"] == "chi.admin"
    client.post("/auth/logout")
    assert client.get("/auth/me").json["authenticated"] is False


def test_unknown_route_is_problem_json(client):
    resp = client.get("/no/such/thing")
    assert resp.status_code == 404 and resp.content_type == "application/problem+json"


def test_configuration_doc_lists_every_key():
    from gisserver.config import PROJECT_ROOT, configuration_markdown

    doc = (PROJECT_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert doc == configuration_markdown(), "regenerate: gisserver config docs > docs/configuration.md"


def test_settings_from_env_parse_errors():
    from gisserver.config import Settings
    from gisserver.errors import ConfigurationError

    assert Settings.from_env({"GISSERVER_MAX_UPLOAD_MB": "3"}).max_upload_mb == 3
    with pytest.raises(ConfigurationError, match="GISSERVER_MAX_UPLOAD_MB"):
        Settings.from_env({"GISSERVER_MAX_UPLOAD_MB": "lots"})
