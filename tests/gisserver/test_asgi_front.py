"""The ASGI front (gisserver/asgi.py): identify answered on the event loop through asyncpg gives a
client exactly what Flask gives (status, bytes, Content-Type, Content-Crs); everything else, and
every request the loop declines, is Flask's answer. Driven in-process on one event loop, then over
real HTTP through gunicorn's asgi worker as `gisserver serve` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import morecantile
import pytest
import requests
from geoalchemy2.shape import from_shape
from psycopg2 import sql
from shapely.geometry import LineString, MultiLineString, MultiPolygon, box
from sqlalchemy import insert, text

from gisserver import schema
from gisserver.asgi import AsgiFront, create_asgi
from gisserver.cli import gunicorn_arguments
from gisserver.config import PROJECT_ROOT
from gisserver.crs import CITY_SRID, transformer
from layers.catalogue import bump_version
from tests.conftest import auth

X, Y = 603480.0, 1191450.0
COMPARED = ("content-type", "content-crs")


# --- helpers -------------------------------------------------------------------------------------

class Answer:
    """What an ASGI app sent for one request: status, headers (lower-case names), body."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes):
        self.status = status
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)


class Driver:
    """One event loop for the module (the front's asyncpg pool belongs to the loop that opened it)."""

    def __init__(self, front: AsgiFront):
        self.front = front
        self.loop = asyncio.new_event_loop()

    def get(self, url: str, headers: dict | list[tuple[str, str]] | None = None, method: str = "GET") -> Answer:
        pairs = list((headers or {}).items()) if isinstance(headers, dict | None) else headers
        return self.loop.run_until_complete(self._request(method, url, pairs))

    async def _request(self, method: str, url: str, headers: list[tuple[str, str]]) -> Answer:
        path, _, query = url.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode("latin-1"),
            "root_path": "", "client": ("127.0.0.1", 50000), "server": ("localhost", 80),
            "headers": [(b"host", b"localhost"),
                        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers)],
        }
        sent: list[dict] = []
        finished = asyncio.Event()
        requested = False

        async def receive():
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished.set()

        await self.front(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return Answer(start["status"], start.get("headers", []), body)

    def shutdown(self) -> None:
        """A lifespan shutdown (closes the asyncpg pool), then the loop."""
        async def lifespan():
            messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
            replies = []

            async def receive():
                return next(messages)

            async def send(message):
                replies.append(message["type"])

            await self.front({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
            return replies

        try:
            assert self.loop.run_until_complete(lifespan()) == ["lifespan.startup.complete",
                                                                "lifespan.shutdown.complete"]
            assert self.front._pool is None
        finally:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()


def through_flask(client, url: str, headers: dict | None = None):
    """The request answered by the Flask view (a cookie keeps the WSGI fast path out of it)."""
    client.set_cookie("unrelated", "1")
    try:
        return client.get(url, headers=headers or {})
    finally:
        client.delete_cookie("unrelated")


def assert_same_answer(answer: Answer, flask_resp, what: str) -> None:
    assert answer.status == flask_resp.status_code, (what, answer.body[:300])
    assert answer.body == flask_resp.get_data(), what
    for name in COMPARED:
        assert answer.headers.get(name) == flask_resp.headers.get(name), (what, name)


def insert_parcel(engine, parcel_no: int = 12, dx: float = 0.0, owner: str = "Nguyễn Văn A") -> None:
    with engine.begin() as conn:
        conn.execute(insert(schema.parcel).values(
            ward_code="26734", sheet_no=3, parcel_no=parcel_no, land_use="ODT", owner_name=owner,
            address=f"{parcel_no} Lê Lợi", geom=from_shape(
                MultiPolygon([box(X + dx - 10, Y - 10, X + dx + 10, Y + 10)]), srid=CITY_SRID)))
        bump_version(conn, "parcels")


def run_on_table(conn, statement: str, name: str, params: dict | None = None) -> None:
    """``statement`` with ``{}`` standing for the generic layer's table ``layerdata.<name>`` (other
    braces doubled): the identifier composed by psycopg2 (``sql.Identifier``), the values bound, on
    the connection's own transaction."""
    with conn.connection.cursor() as cur:
        cur.execute(sql.SQL(statement).format(sql.Identifier("layerdata", name)), params)


def create_types_layer(engine, name: str) -> None:
    """A generic layer with every column type identify writes (the rows of test_generic's
    column-type test, plus non-finite numbers and infinite dates; json, jsonb and uuid, which are
    not shown); the row of nulls is the furthest."""
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS layerdata"))
        run_on_table(conn,
            "CREATE TABLE {} (fid serial PRIMARY KEY, ten text, gia numeric(12, 2), "
            "ty_le real, do_cao double precision, con_hieu_luc boolean, ngay date, luc timestamptz, "
            "luc_dia_phuong timestamp, het_han timestamptz, so_lon bigint, thuoc_tinh jsonb, ghi_chu json, ma uuid, "
            "geom geometry(Point, %(s)s))", name, {"s": CITY_SRID})
        run_on_table(conn,
            "INSERT INTO {} (ten, gia, ty_le, do_cao, con_hieu_luc, ngay, luc, "
            "luc_dia_phuong, het_han, so_lon, thuoc_tinh, ghi_chu, ma, geom) VALUES "
            "(%(ten)s, 1250000.50, 0.1, 2.345678901234, true, '2026-11-27', '2026-11-27 08:30:00+07', "
            " '2026-11-27 08:30:00', '2026-12-31 23:59:59.999999-05', 9007199254740993, %(jb)s, %(js)s, "
            " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "
            " ST_SetSRID(ST_MakePoint(603480, 1191450), %(s)s)), "
            "('Số 2', 7, 1e-7, -0.5, false, '1975-04-30', '2026-11-27 08:30:00.123456+07', "
            " '2026-11-27 08:30:00.5', NULL, -1, '[1, 2.5, null]', '\"chuỗi\"', NULL, "
            " ST_SetSRID(ST_MakePoint(603481, 1191450), %(s)s)), "
            "('Số 3', 'NaN', 3.4028235e38, 'Infinity', true, '2000-02-29', '1900-01-01 00:00:00+00', "
            " '2026-01-01 00:00:00.000001', '0001-01-01 00:00:00+00', 0, '{{}}', '{{}}', NULL, "
            " ST_SetSRID(ST_MakePoint(603481.5, 1191450), %(s)s)), "
            "('Số 4', 0, 0, 0, false, 'infinity', 'infinity', '-infinity', '-infinity', 1, NULL, NULL, NULL, "
            " ST_SetSRID(ST_MakePoint(603481.7, 1191450), %(s)s)), "
            "(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
            " ST_SetSRID(ST_MakePoint(603482, 1191450), %(s)s))", name,
            {"s": CITY_SRID, "ten": 'Nhà "A" \\ Phường Bến Thành\nTầng 2\t✓',
             "jb": json.dumps({"tầng": 2, "tên": "Nhà \"A\"", "ds": [1, None, True]}, ensure_ascii=False),
             "js": '{"b": 1,  "a": [2.50, "x"]}'})
        conn.execute(insert(schema.layer).values(
            name=name, title="Types", kind="generic", table_schema="layerdata", table_name=name,
            geometry_type="Point", srid=CITY_SRID, access_level="public", properties=[]))


def identify_url(**params) -> str:
    return "/api/identify?" + urlencode(params)


# --- in-process: the ASGI app on one event loop --------------------------------------------------

@pytest.fixture(scope="module")
def driver(app):
    front = create_asgi(app, threads=2)
    assert "/api/identify" in front.routes
    drive = Driver(front)
    yield drive
    drive.shutdown()


@pytest.fixture
def parcel(catalogue):
    insert_parcel(catalogue)
    with catalogue.begin() as conn:
        conn.execute(insert(schema.road).values(
            name="Lê Lợi", road_class="primary", row_width=30.0,
            geom=from_shape(MultiLineString([LineString([(X - 100, Y + 14), (X + 100, Y + 14)])]), srid=CITY_SRID)))
        bump_version(conn, "roads")
    return catalogue


@pytest.fixture
def types_layer(catalogue):
    name = f"kieu_{uuid.uuid4().hex[:8]}"  # a name no earlier test compiled a statement for
    create_types_layer(catalogue, name)
    return name


def warm_then_loop(driver, client, url: str, headers: dict | None = None) -> tuple[Answer, object]:
    """Flask compiles the statement (first request), then the loop must answer: (loop answer, Flask's)."""
    assert driver.get(url, headers).status == 200, url
    before = driver.front.answered
    answer = driver.get(url, headers)
    assert driver.front.answered == before + 1, (url, answer.body[:300])
    return answer, through_flask(client, url, headers)


def test_first_identify_of_a_layer_goes_to_flask_then_the_loop_answers_the_same_bytes(driver, client,
                                                                                     types_layer):
    url = identify_url(x=603480, y=1191450, tolerance=5, layers=types_layer)
    before = driver.front.answered
    first = driver.get(url)
    assert driver.front.answered == before  # no statement compiled yet: Flask answered
    flask_resp = through_flask(client, url)
    assert_same_answer(first, flask_resp, "first")
    second = driver.get(url)
    assert driver.front.answered == before + 1
    assert_same_answer(second, flask_resp, "second")
    assert [f["id"] for f in second.json()["features"]] == [1, 2, 3, 4, 5]
    assert second.headers["content-length"] == str(len(second.body))


def test_every_column_type_is_written_the_same_on_the_loop(driver, client, types_layer):
    urls = [identify_url(x=603480, y=1191450, tolerance=5, layers=types_layer),
            identify_url(x=603480, y=1191450, tolerance=5, layers=types_layer, **{"out-crs": "EPSG:9210"}),
            identify_url(x=603482, y=1191450, tolerance=1.6, limit=2, layers=types_layer)]
    for url in urls:
        answer, flask_resp = warm_then_loop(driver, client, url)
        assert_same_answer(answer, flask_resp, url)
    props = {f["id"]: f["properties"] for f in driver.get(urls[0]).json()["features"]}
    assert props[1]["ten"] == 'Nhà "A" \\ Phường Bến Thành\nTầng 2\t✓'
    assert props[1]["luc"] == "2026-11-27T01:30:00Z" and props[1]["luc_dia_phuong"] == "2026-11-27T08:30:00"
    assert props[2]["luc"] == "2026-11-27T01:30:00.123456Z" and props[2]["ty_le"] == 1e-7
    assert props[1]["ty_le"] == 0.1 and props[1]["so_lon"] == 9007199254740993 and props[1]["gia"] == 1250000.5
    assert props[3]["gia"] != props[3]["gia"] and props[3]["do_cao"] == float("inf")  # NaN, Infinity
    # json, jsonb and uuid columns are not queryable properties of a generic layer: in neither answer
    assert not {"thuoc_tinh", "ghi_chu", "ma"} & set(props[1])
    assert props[1]["het_han"] == "2027-01-01T04:59:59.999999Z" and props[3]["het_han"] == "0001-01-01T00:00:00Z"
    # infinite dates as psycopg2 gives them: the largest and smallest values, timestamptz in UTC
    assert (props[4]["ngay"], props[4]["luc"], props[4]["luc_dia_phuong"], props[4]["het_han"]) == (
        "9999-12-31", "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00", "0001-01-01T00:00:00Z")
    assert all(value is None for key, value in props[5].items() if key not in ("fid", "distance_m")), props[5]


def test_query_options_give_the_same_bytes_on_the_loop(driver, client, parcel):
    lon, lat = transformer(CITY_SRID, 4326).transform(X, Y)
    urls = [identify_url(lon=lon, lat=lat),
            identify_url(x=X, y=Y, **{"out-crs": "EPSG:9210"}),
            identify_url(x=X, y=Y, **{"out-crs": "EPSG:4326"}),
            identify_url(x=X, y=Y, crs="EPSG:9210"),
            identify_url(x=lat, y=lon, crs="EPSG:4326"),  # EPSG:4326 names latitude first
            identify_url(x=X + 15, y=Y, tolerance=20, layers="parcels,roads", limit=5),
            identify_url(x=X + 15, y=Y, tolerance=20, layers="roads,parcels", limit=1),
            identify_url(x=X + 500, y=Y),  # no feature here
            identify_url(x=X + 500, y=Y, layers="parcels,roads,trees")]
    for url in urls:
        answer, flask_resp = warm_then_loop(driver, client, url)
        assert_same_answer(answer, flask_resp, url)
    assert driver.get(urls[-2]).json() == {"type": "FeatureCollection", "features": [], "numberReturned": 0}
    both = driver.get(urls[5]).json()
    assert [f["layer"] for f in both["features"]] == ["parcels", "roads"]


def test_cookie_and_unverified_token_requests_go_to_flask(driver, client, parcel, make_user):
    url = identify_url(x=X, y=Y)
    warm_then_loop(driver, client, url)
    _, officer = make_user("officer")
    before = driver.front.answered
    with_cookie = driver.get(url, {"Cookie": "session=whatever"})
    assert with_cookie.status == 200 and "owner_name" not in with_cookie.body.decode()
    # a token not verified in this process (the test app caches none): Flask verifies it
    staff = driver.get(url, auth(officer))
    assert staff.status == 200 and staff.json()["features"][0]["properties"]["owner_name"] == "Nguyễn Văn A"
    wrong = driver.get(url, {"Authorization": "Bearer gis_1_wrong"})
    assert_same_answer(wrong, client.get(url, headers={"Authorization": "Bearer gis_1_wrong"}), "wrong token")
    assert wrong.status == 401
    basic = driver.get(url, {"Authorization": "Basic abc"})
    assert basic.status == 401 and basic.headers["content-type"] == "application/problem+json"
    assert driver.front.answered == before


def test_verified_tokens_see_what_their_role_may_see_on_the_loop(driver, client, parcel, make_user, monkeypatch):
    monkeypatch.setattr(driver.front.tokens, "cache_seconds", 60)  # as in production
    _, officer = make_user("officer")
    _, citizen = make_user("public")
    url = identify_url(x=X, y=Y)
    try:
        for token in (officer, citizen):
            assert client.get(url, headers=auth(token)).status_code == 200  # verified (and cached) here
        views = {}
        for who, headers in (("officer", auth(officer)), ("public", auth(citizen)), ("anonymous", {})):
            answer, flask_resp = warm_then_loop(driver, client, url, headers)
            assert_same_answer(answer, flask_resp, who)
            views[who] = answer.json()["features"][0]["properties"]
    finally:
        driver.front.tokens.forget_all()
    assert views["officer"]["owner_name"] == "Nguyễn Văn A"
    assert "owner_name" not in views["public"] and "owner_name" not in views["anonymous"]
    assert views["public"]["address"] == views["anonymous"]["address"] == "12 Lê Lợi"


def test_a_repeated_authorization_header_gets_the_flask_answer(driver, client, parcel, make_user, monkeypatch):
    """Flask reads repeated headers joined with commas (a2wsgi joins them): the loop must not pick one."""
    monkeypatch.setattr(driver.front.tokens, "cache_seconds", 60)
    _, officer = make_user("officer")
    url = identify_url(x=X, y=Y)
    try:
        assert client.get(url, headers=auth(officer)).status_code == 200  # verified and cached
        warm_then_loop(driver, client, url, auth(officer))
        before = driver.front.answered
        for first, second in ((f"Bearer {officer}", "Bearer gis_1_wrong"), ("Bearer gis_1_wrong", f"Bearer {officer}")):
            answer = driver.get(url, [("Authorization", first), ("Authorization", second)])
            assert answer.status == 401, (first, second, answer.body[:100])
            assert answer.headers["content-type"] == "application/problem+json"
        assert driver.front.answered == before
    finally:
        driver.front.tokens.forget_all()


def test_bumped_data_version_is_handed_to_flask_which_shows_the_new_data(driver, client, parcel):
    url = identify_url(x=X + 25, y=Y, tolerance=30)
    answer, _ = warm_then_loop(driver, client, url)
    assert [f["properties"]["parcel_no"] for f in answer.json()["features"]] == [12]
    insert_parcel(parcel, parcel_no=13, dx=40)  # bumps the data version
    before = driver.front.answered
    changed = driver.get(url)
    assert driver.front.answered == before  # the statement is outdated: Flask recompiled it
    assert sorted(f["properties"]["parcel_no"] for f in changed.json()["features"]) == [12, 13]
    assert_same_answer(changed, through_flask(client, url), "after the bump")
    again = driver.get(url)
    assert driver.front.answered == before + 1 and again.body == changed.body


def test_reloaded_layer_is_handed_to_flask_which_shows_the_new_table(driver, client, types_layer):
    url = identify_url(x=603480, y=1191450, tolerance=5, layers=types_layer)
    warm_then_loop(driver, client, url)
    with client.application.extensions["gisserver"].engine.begin() as conn:
        run_on_table(conn, "DROP TABLE {}", types_layer)
        run_on_table(conn, "CREATE TABLE {} (fid serial PRIMARY KEY, ten_moi text, geom geometry(Point, %(s)s))",
                     types_layer, {"s": CITY_SRID})
        run_on_table(conn, "INSERT INTO {} (ten_moi, geom) "
                           "VALUES ('Mới', ST_SetSRID(ST_MakePoint(603480, 1191450), %(s)s))",
                     types_layer, {"s": CITY_SRID})
        bump_version(conn, types_layer)
    before = driver.front.answered
    reloaded = driver.get(url)
    assert driver.front.answered == before
    assert reloaded.status == 200, reloaded.body
    assert [f["properties"] for f in reloaded.json()["features"]] == [{"fid": 1, "ten_moi": "Mới", "distance_m": 0.0}]
    assert_same_answer(reloaded, through_flask(client, url), "reloaded")
    again = driver.get(url)
    assert driver.front.answered == before + 1 and again.body == reloaded.body


def test_bad_input_gets_exactly_the_flask_answer_and_never_the_loop(driver, client, parcel):
    for url in (identify_url(x=X, y=Y), identify_url(x=X, y=Y, layers="telecom")):
        driver.get(url)  # statements compiled: only the input decides
    cases = {
        identify_url(x="abc", y=Y): 400,
        identify_url(x=X, y=Y, tolerance=5000): 400,
        identify_url(x=X, y=Y, tolerance=-1): 400,
        identify_url(x=X, y=Y, limit=0): 400,
        identify_url(x=X, y=Y, limit="many"): 400,
        identify_url(lon=200, lat=10): 400,
        identify_url(x=X): 400,
        identify_url(x=X, y=Y, crs="EPSG:999999"): 400,
        identify_url(x=106.7, y=10.77, crs="EPSG:4326"): 400,  # longitude given as latitude
        identify_url(x=X, y=Y, **{"out-crs": "EPSG:999999"}): 400,
        identify_url(x=X, y=Y, layers="nope"): 404,
        identify_url(x=X, y=Y, layers="parcels,nope"): 404,
        identify_url(x=X, y=Y, layers="telecom"): 404,  # restricted: anonymous callers do not learn it exists
        identify_url(x=X, y=Y, layers=",".join(["parcels"] * 50)): 400,
    }
    before = driver.front.answered
    for url, status in cases.items():
        answer = driver.get(url)
        assert_same_answer(answer, client.get(url), url)
        assert answer.status == status, (url, answer.body)
        assert answer.headers["content-type"] == "application/problem+json", url
    assert driver.front.answered == before


def test_killed_database_connections_still_answer_the_same(driver, client, parcel, db_engine):
    url = identify_url(x=X, y=Y)
    answer, flask_resp = warm_then_loop(driver, client, url)
    expected = flask_resp.get_data()
    with db_engine.connect() as conn:
        killed = conn.execute(text(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'gisserver-identify' AND datname = current_database()")).scalar()
    assert killed >= 1  # at least the asyncpg pool's connection
    before = driver.front.answered
    for _ in range(4):
        after_kill = driver.get(url)
        assert after_kill.status == 200 and after_kill.body == expected
    assert driver.front.answered > before  # the pool replaced its connection: the loop answers again


# --- the production stack: gunicorn's asgi worker over real HTTP ---------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Server:
    base: str  # http://127.0.0.1:port
    pid: int  # gunicorn's arbiter

    def connection(self) -> http.client.HTTPConnection:
        host, port = self.base.removeprefix("http://").split(":")
        return http.client.HTTPConnection(host, int(port), timeout=60)

    def worker_ports(self) -> set[int]:
        """Local TCP ports of the workers' sockets (their database connections among them)."""
        inodes = set()
        for child in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split():
            for fd in Path(f"/proc/{child}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports


@pytest.fixture(scope="module")
def server(db_engine, database_url, tmp_path_factory):
    """`gisserver serve`'s gunicorn (asgi worker, 2 workers, 2 threads each) on the test database."""
    port = _free_port()
    tmp = tmp_path_factory.mktemp("gunicorn")
    env = {**os.environ, "DATABASE_URL": database_url, "GISSERVER_VAR_DIR": str(tmp / "var"),
           "GISSERVER_SECRET_KEY": "test-secret", "GISSERVER_MAX_UPLOAD_MB": "8", "GISSERVER_THREADS": "2"}
    command = [sys.executable, "-m", "gunicorn", *gunicorn_arguments("127.0.0.1", port, 2, access_log=False)]
    log_path = tmp / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own process group: workers stopped too
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if requests.get(f"{base}/health", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or the workers still booting
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield Server(base, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):  # a worker that outlived its arbiter
            os.killpg(process.pid, signal.SIGKILL)


def same_host(client, server: Server, url: str, headers: dict | None = None, method: str = "GET"):
    """The Flask test client's answer for the same host name (links in pages name it)."""
    return client.open(url, method=method, headers=headers or {}, base_url=server.base)


def loop_statements_run_by_workers(engine, server: Server) -> int:
    """The workers' asyncpg connections whose last statement was identify's (``$n`` parameters:
    the lean psycopg2 pool, of the same application name, sends its values inline)."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gisserver-identify' "
            "AND datname = current_database() AND client_port = ANY(:ports) "
            "AND query LIKE '%__layer_version%' AND query LIKE '%$1%'"), {"ports": sorted(server.worker_ports())}
        ).scalar()


def test_identify_on_one_connection_gives_the_flask_bytes_every_time(server, client, parcel, make_user):
    _, officer = make_user("officer")
    lon, lat = transformer(CITY_SRID, 4326).transform(X, Y)
    url = identify_url(lon=lon, lat=lat, tolerance=20, layers="parcels,roads")
    for headers in ({}, auth(officer)):
        expected = through_flask(client, url, headers)
        conn = server.connection()
        try:
            for attempt in range(20):
                conn.request("GET", url, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                assert resp.status == 200, (attempt, body[:300])
                assert body == expected.get_data(), (attempt, headers)
                assert resp.getheader("Content-Type") == expected.headers["Content-Type"]
                assert resp.getheader("Content-Crs") == expected.headers["Content-Crs"]
                assert not resp.will_close  # one keep-alive connection throughout
        finally:
            conn.close()
        parcels = [f["properties"] for f in json.loads(body)["features"] if f["layer"] == "parcels"]
        assert [p.get("owner_name") for p in parcels] == (["Nguyễn Văn A"] if headers else [None])
    # the worker answered them on its event loop: its asyncpg connection ran the statement
    assert loop_statements_run_by_workers(parcel, server) >= 1


def test_identify_errors_over_http(server, client, parcel):
    with requests.Session() as http_session:
        for url, status in ((identify_url(x="abc", y=Y), 400), (identify_url(x=X, y=Y, tolerance=5000), 400),
                            (identify_url(x=X, y=Y, layers="nope"), 404)):
            for _ in range(2):  # the second time with the statements compiled in the worker
                resp = http_session.get(server.base + url, timeout=30)
                expected = client.get(url)
                assert (resp.status_code, resp.content) == (status, expected.get_data()), url
                assert resp.headers["Content-Type"] == "application/problem+json"
        resp = http_session.get(server.base + identify_url(x=X, y=Y), timeout=30,
                                headers={"Authorization": "Bearer gis_1_wrong"})
        assert resp.status_code == 401 and resp.headers["Content-Type"] == "application/problem+json"
        assert resp.json()["status"] == 401


def test_head_on_identify(server, client, parcel):
    url = identify_url(x=X, y=Y)
    expected = client.head(url)
    resp = requests.head(server.base + url, timeout=30)
    assert resp.status_code == expected.status_code == 200
    assert resp.content == b""
    assert resp.headers["Content-Type"] == expected.headers["Content-Type"]
    assert resp.headers["Content-Crs"] == expected.headers["Content-Crs"]
    assert resp.headers["Content-Length"] == expected.headers["Content-Length"]


def _gpkg_bytes(tmp_path) -> bytes:
    from tests.layers.conftest import parcel_frame

    path = tmp_path / "thua.gpkg"
    parcel_frame(6, bowtie_at=4).to_file(path, driver="GPKG")
    return path.read_bytes()


def _upload(server: Server, name: str, token: str, content: bytes, **fields) -> requests.Response:
    return requests.post(
        f"{server.base}/layers/{name}/upload", headers=auth(token), timeout=120,
        files={"file": ("thửa đất.gpkg", content, "application/geopackage+sqlite3")},
        data={"policy": "reject-feature", "access_level": "public", **fields})


def _layer_state(engine, name: str):
    with engine.connect() as conn:
        return conn.execute(text("SELECT data_version, feature_count FROM layer WHERE name = :n"), {"n": name}).one()


def test_upload_then_an_oversized_one_is_413_and_changes_nothing(server, catalogue, make_user, tmp_path):
    _, admin = make_user("admin")
    name = "thua_dat_asgi"
    resp = _upload(server, name, admin, _gpkg_bytes(tmp_path), map="DiaChi=dia_chi", title="Thửa đất")
    assert resp.status_code == 201, resp.text
    assert resp.json()["loaded"] == 5 and resp.json()["source"]["file"] == "thửa đất.gpkg"
    state = _layer_state(catalogue, name)
    assert state.feature_count == 5

    oversized = (b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.gpkg\"\r\n\r\n"
                 + b"\0" * (9 << 20) + b"\r\n--x--\r\n")
    resp = requests.post(f"{server.base}/layers/{name}/upload", data=oversized, timeout=120,
                         headers={**auth(admin), "Content-Type": "multipart/form-data; boundary=x"})
    assert resp.status_code == 413, resp.text
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.json()["code"] == "payload-too-large"
    assert _layer_state(catalogue, name) == state


def _multipart_chunks(content: bytes, chunk: int = 65536):
    """A multipart upload body sent in pieces (requests then sends it chunked, without Content-Length)."""
    body = (b"--x\r\nContent-Disposition: form-data; name=\"access_level\"\r\n\r\npublic\r\n"
            b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.gpkg\"\r\n\r\n"
            + content + b"\r\n--x--\r\n")
    for start in range(0, len(body), chunk):
        yield body[start:start + chunk]


def test_chunked_uploads_are_read_up_to_the_size_limit(server, catalogue, make_user, tmp_path):
    _, admin = make_user("admin")
    name = "thua_dat_chunked"
    headers = {**auth(admin), "Content-Type": "multipart/form-data; boundary=x"}
    resp = requests.post(f"{server.base}/layers/{name}/upload", data=_multipart_chunks(_gpkg_bytes(tmp_path)),
                         headers=headers, timeout=120)
    assert resp.request.headers["Transfer-Encoding"] == "chunked"
    assert resp.status_code == 201, resp.text
    assert resp.json()["loaded"] == 6 and resp.json()["repaired"] == 1
    state = _layer_state(catalogue, name)
    resp = requests.post(f"{server.base}/layers/{name}/upload", data=_multipart_chunks(b"\0" * (9 << 20)),
                         headers=headers, timeout=120)
    assert resp.status_code == 413, resp.text
    assert resp.json()["code"] == "payload-too-large"
    assert _layer_state(catalogue, name) == state


def test_identify_after_a_layer_is_replaced_with_other_columns(server, catalogue, make_user, tmp_path):
    """A replace swaps in a table of the same name: the statement the worker compiled names columns
    that are gone; identify recompiles it (a 500 for ever in that worker before)."""
    from tests.layers.conftest import X0, Y0

    _, admin = make_user("admin")
    name = "thua_dat_thay"
    content = _gpkg_bytes(tmp_path)
    assert _upload(server, name, admin, content, map="DiaChi=dia_chi").status_code == 201
    url = identify_url(x=X0 + 5, y=Y0 + 10, layers=name)
    conn = server.connection()  # one keep-alive connection: one worker, its compiled statement
    try:
        def identify() -> dict:
            conn.request("GET", url)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, body[:500]
            return json.loads(body)["features"][0]["properties"]

        for _ in range(3):
            assert identify()["dia_chi"] == "Phường Bến Thành"
        assert _upload(server, name, admin, content, map="DiaChi=dia_chi_moi").status_code == 200
        for _ in range(3):
            props = identify()
            assert props["dia_chi_moi"] == "Phường Bến Thành" and "dia_chi" not in props
    finally:
        conn.close()


def test_pages_tiles_and_ogc_services_answer_as_through_flask(server, client, parcel):
    lon, lat = transformer(CITY_SRID, 4326).transform(X, Y)
    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 17)
    tile_url = f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt"
    urls = ["/api", "/ogc/collections/parcels/items?f=json", "/ogc/collections/parcels/items?f=html",
            "/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0", tile_url]
    with requests.Session() as http_session:
        for url in urls:
            resp = http_session.get(server.base + url, timeout=60)
            expected = same_host(client, server, url)
            assert resp.status_code == expected.status_code == 200, (url, resp.text[:300])
            assert resp.headers["Content-Type"] == expected.headers["Content-Type"], url
            assert resp.content == expected.get_data(), url
        page = http_session.get(server.base + "/", timeout=60)
        with same_host(client, server, "/") as expected:  # a file response: closed after
            assert page.status_code == expected.status_code == 200
            assert page.headers["Content-Type"] == expected.headers["Content-Type"] == "text/html; charset=utf-8"
            assert page.content == expected.get_data()

        tile = http_session.get(server.base + tile_url, timeout=60)
        assert tile.content and tile.headers["ETag"]
        cached = http_session.get(server.base + tile_url, headers={"If-None-Match": tile.headers["ETag"]}, timeout=60)
        assert cached.status_code == 304 and cached.content == b""
        assert cached.headers["ETag"] == tile.headers["ETag"]


def _abort_download(server: Server, path: str) -> None:
    """Start reading a large response, then leave (a reset, as a closed browser tab)."""
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)  # the server's buffers fill; the Flask thread waits to send the rest
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_aborted_downloads_do_not_use_up_the_flask_threads(server):
    """Each worker has 2 threads for Flask: 16 downloads abandoned midway (spread over both workers
    by the kernel) must leave them all free for the next requests."""
    for _ in range(16):
        _abort_download(server, "/app/app.js.map")  # 6 MB, sent in 8 KiB pieces
    for _ in range(8):
        with requests.get(server.base + "/api", timeout=20) as resp:  # a fresh connection each time
            assert resp.status_code == 200
    with requests.get(server.base + "/app/app.js.map", timeout=60) as resp:
        assert resp.status_code == 200 and len(resp.content) > 1_000_000
