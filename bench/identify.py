"""Benchmark: identify-at-point over HTTP (gunicorn, 2 workers) vs the same query sent directly.

    .venv/bin/python bench/identify.py [--parcels 1000000] [--threads 8] [--seconds 10]

Loads (once; kept in the scratch database ``gisserver_bench_identify`` of the embedded cluster, or
``BENCH_DATABASE_URL``) a grid of 1,000,000 parcel polygons in the city CRS around HCMC
(E 600000, N 1190000) with ``generate_series``, then, in the same run, alternating the two phases
in ``--rounds`` short rounds after a warm-up (the machine may be shared with other work):

1. direct: ``--threads`` concurrent clients send the exact statement identify runs through the
   same driver and pool the server uses for it: with the production ASGI server (``--worker-class
   asgi``, the default), an asyncpg pool sending the prepared statement of
   ``identify_async_statement`` (the server's ``layers.identify_async`` path); with the WSGI worker
   classes kept for comparison (gthread, sync), the SQLAlchemy lean pool sending
   ``identify_statement`` through psycopg2 (autocommit, no pre-ping, one round trip per query);
2. http: the same number of concurrent clients call ``GET /api/identify?lon=&lat=`` on gunicorn
   with 2 workers over loopback (one keep-alive connection each), run as ``gisserver serve`` runs
   it. Both phases' Python clients are built alike: one uvloop in a thread, one task per client
   (``http.client`` threads cost 0.29-0.37 ms of CPU per request, the asyncpg clients 0.13-0.19).

The native pair does the same with pgbench (``-M prepared`` with the asyncpg statement for the ASGI
server, ``-M simple`` as psycopg2 sends it for the WSGI workers) and wrk.

Both phases query the same random points inside the grid. Prints requests/s, p50/p95/p99 latency,
CPU time per request (client, gunicorn workers, PostgreSQL backends), the load average and the
HTTP/direct ratio (overall and per round). Targets: HTTP rate >= 50% of direct, HTTP p95 < 10 ms.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from gisserver.config import PROJECT_ROOT, Settings  # noqa: E402
from gisserver.crs import CITY_SRID, transformer  # noqa: E402
from gisserver.db import make_engine  # noqa: E402

DATABASE = "gisserver_bench_identify"
ORIGIN = (595_000.0, 1_185_000.0)  # south-west corner of the grid, city CRS metres
CELL = 10.0  # parcels are CELL x CELL metres
TARGET_RATIO = 0.5
TARGET_P95_MS = 10.0


def scratch_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    from gisserver.pgcluster import cluster_from_settings

    cluster = cluster_from_settings(Settings.from_env())
    cluster.start()
    return cluster.ensure_database(DATABASE)


def load_parcels(url: str, n: int, reload: bool) -> float:
    """Make sure the scratch database holds exactly ``n`` grid parcels; returns load seconds (0 if reused)."""
    from gisserver import migrate
    from layers.catalogue import analyze, bump_version, get_layer, sync_canonical_layers

    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        present = conn.execute(text("SELECT to_regclass('public.parcel') IS NOT NULL")).scalar()
        count = conn.execute(text("SELECT count(*) FROM parcel")).scalar() if present else 0
    if count == n and not reload:  # reuse the loaded database as it is
        engine.dispose()
        return 0.0
    migrate.upgrade(engine)
    with engine.begin() as conn:
        sync_canonical_layers(conn)
    side = int(n ** 0.5)
    if side * side != n:
        raise SystemExit("--parcels must be a square number (e.g. 1000000)")
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE parcel RESTART IDENTITY CASCADE"))
        # 10 wards x 100 sheets x 1000 parcel numbers, unique among current parcels
        conn.execute(text("""
            INSERT INTO parcel (ward_code, sheet_no, parcel_no, land_use, address, legal_area, geom)
            SELECT 'P' || lpad((i / 100)::text, 3, '0'), j / 10, (i % 100) * 10 + j % 10,
                   (ARRAY['ODT', 'TMD', 'CLN', 'SKC'])[1 + (i + j) % 4],
                   'Thửa ' || i || '-' || j || ', Phường Bến Thành', :cell * :cell,
                   ST_Multi(ST_MakeEnvelope(:x0 + i * :cell, :y0 + j * :cell,
                                            :x0 + (i + 1) * :cell, :y0 + (j + 1) * :cell, :srid))
            FROM generate_series(0, :side - 1) AS i, generate_series(0, :side - 1) AS j
        """), {"cell": CELL, "x0": ORIGIN[0], "y0": ORIGIN[1], "srid": CITY_SRID, "side": side})
        analyze(conn, get_layer(conn, "parcels"))
        bump_version(conn, "parcels")
    engine.dispose()
    return time.perf_counter() - t0


def random_points(n: int, side: int, seed: int = 42) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    to_lonlat = transformer(CITY_SRID, 4326)
    extent = side * CELL
    pts = []
    for _ in range(n):
        # stay 1 m inside parcel edges so every point hits exactly one parcel
        x = ORIGIN[0] + rng.randrange(side) * CELL + rng.uniform(1, CELL - 1)
        y = ORIGIN[1] + rng.randrange(side) * CELL + rng.uniform(1, CELL - 1)
        assert x < ORIGIN[0] + extent
        pts.append(to_lonlat.transform(x, y))
    return pts


def run_threads(threads: int, seconds: float, worker) -> tuple[int, list[float], int]:
    """Run ``worker(index, stop, latencies)`` on threads; returns (requests, latencies, errors)."""
    stop = threading.Event()
    results: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads

    def body(i):
        try:
            worker(i, stop, results[i])
        except Exception as exc:  # a failed phase is reported, not hidden
            errors[i] += 1
            print(f"  thread {i}: {type(exc).__name__}: {exc}", file=sys.stderr)

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    lat = sorted(x for r in results for x in r)
    return len(lat), lat, sum(errors)


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class BackendSampler(threading.Thread):
    """CPU seconds of this database's PostgreSQL backends over a phase, sampled every 0.1 s.

    Backends of a client that connects and disconnects inside the phase (pgbench) are seen while
    they live; the last sample of each is kept, so at most 0.1 s of a backend's CPU can be missed
    at its end. Other databases of the same cluster (tests running on the machine) are not counted.
    """

    def __init__(self, url: str):
        super().__init__(daemon=True)
        import psycopg2

        self.conn = psycopg2.connect(url)
        self.conn.autocommit = True
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.halt = threading.Event()
        self.sample(initial=True)

    def sample(self, initial: bool = False) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")
            for (pid,) in cur.fetchall():
                cpu = _proc_cpu(pid)
                self.first.setdefault(pid, cpu if initial else 0.0)  # new backends count from 0
                self.last[pid] = max(cpu, self.last.get(pid, 0.0))

    def run(self) -> None:
        while not self.halt.wait(0.1):
            self.sample()

    def stop(self) -> float:
        self.halt.set()
        self.join()
        self.sample()
        self.conn.close()
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


class CPUMeter:
    """CPU seconds used by the clients (this process and its exited child processes: wrk,
    pgbench), the server's processes and this database's PostgreSQL backends, over one phase."""

    def __init__(self, url: str, server_pid: int | None = None):
        self.url, self.server_pid = url, server_pid
        self.backends: BackendSampler | None = None

    def snapshot(self) -> dict:
        server = [self.server_pid, *_children(self.server_pid)] if self.server_pid else []
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        if self.backends is None:  # start of the phase
            self.backends = BackendSampler(self.url)
            self.backends.start()
            postgres = 0.0
        else:
            postgres = self.backends.stop()
        return {"client": time.process_time() + children.ru_utime + children.ru_stime,
                "server": sum(_proc_cpu(p) for p in server), "postgres": postgres,
                "wall": time.perf_counter()}


def measured(meter: CPUMeter, threads: int, seconds: float, worker) -> dict:
    """One phase of Python client threads running ``worker``."""
    before = meter.snapshot()
    count, lat, errors = run_threads(threads, seconds, worker)
    after = meter.snapshot()
    stats = _stats(count, lat, errors, after["wall"] - before["wall"])
    stats.update(latencies=lat, wall=after["wall"] - before["wall"])
    return _with_cpu(stats, before, after, count)


def measured_tool(meter: CPUMeter, command: list[str], parse) -> dict:
    """One phase of a native load generator (wrk, pgbench): ``parse(stdout)`` gives the stats."""
    before = meter.snapshot()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    after = meter.snapshot()
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    stats = parse(done.stdout)
    stats.update(wall=after["wall"] - before["wall"], rate=stats["requests"] / (after["wall"] - before["wall"]))
    return _with_cpu(stats, before, after, stats["requests"])


def _with_cpu(stats: dict, before: dict, after: dict, count: int) -> dict:
    for key in ("client", "server", "postgres"):
        stats[f"cpu_{key}_ms"] = (after[key] - before[key]) * 1000 / max(count, 1)
    stats["load"] = os.getloadavg()[0]
    return stats


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def direct_worker(url: str, points, threads: int):
    """A client loop sending identify's SQL through the lean pool; returns (worker, cleanup)."""
    from gisserver.security import ANONYMOUS
    from layers import query as q

    base = make_engine(url, pool_size=threads)
    engine = q.lean_engine(base)  # the very pool configuration identify uses in the server
    with engine.connect() as conn:
        # the statement the server runs for the benchmark's anonymous caller (no personal columns)
        sql, template = q.identify_statement(conn, "parcels", q.Point(*points[0]), principal=ANONYMOUS)

    def worker(i, stop, lat):
        k = i
        while not stop.is_set():
            lon, lat_ = points[k % len(points)]
            k += threads
            params = dict(template, x=lon, y=lat_)
            t0 = time.perf_counter()
            dbc = engine.raw_connection()  # the server's own pool and cursor path
            try:
                rows = q.run_compiled(dbc, sql, params)
            finally:
                dbc.close()
            lat.append(time.perf_counter() - t0)
            if len(rows) != 1 or rows[0]["__id"] is None:
                raise RuntimeError(f"expected one parcel at {lon},{lat_}, got {len(rows)} rows")

    def cleanup():
        engine.dispose()
        base.dispose()

    return worker, cleanup


def run_clients(loop, client, threads: int, seconds: float) -> tuple[int, list[float], int]:
    """``client(i, deadline, latencies)`` x ``threads`` on ``loop`` for ``seconds``; returns
    (requests, latencies, errors)."""
    import asyncio

    results: list[list[float]] = [[] for _ in range(threads)]
    deadline = time.perf_counter() + seconds

    async def all_clients():
        return await asyncio.gather(*(client(i, deadline, results[i]) for i in range(threads)),
                                    return_exceptions=True)

    outcome = loop.run_until_complete(all_clients())
    errors = [o for o in outcome if isinstance(o, BaseException)]
    for exc in errors:
        print(f"  client: {type(exc).__name__}: {exc}", file=sys.stderr)
    lat = sorted(x for r in results for x in r)
    return len(lat), lat, len(errors)


def direct_async_clients(url: str, points, threads: int):
    """``threads`` concurrent clients on one asyncpg pool (one event loop in a thread), sending the
    statement the ASGI server sends, as it sends it (prepared, same codecs); returns run(seconds) ->
    (requests, latencies, errors) and cleanup."""

    import uvloop

    from gisserver.security import ANONYMOUS
    from layers import query as q
    from layers.identify_async import create_pool

    engine = q.lean_engine(make_engine(url, pool_size=1))
    with engine.connect() as conn:
        sql, values = q.identify_async_statement(conn, "parcels", q.Point(*points[0]), principal=ANONYMOUS)
    engine.dispose()
    template = list(values.values())
    x_at, y_at = list(values).index("x"), list(values).index("y")
    loop = uvloop.new_event_loop()
    pool = loop.run_until_complete(create_pool(url, threads, application_name="bench-direct"))

    async def client(i, deadline, lat):
        k = i
        while time.perf_counter() < deadline:
            lon, lat_ = points[k % len(points)]
            k += threads
            args = list(template)
            args[x_at], args[y_at] = lon, lat_
            t0 = time.perf_counter()
            con = await pool.acquire()  # the server's own pool class and settings
            try:
                rows = await con.fetch(sql, *args)
            finally:
                pool.release(con)
            lat.append(time.perf_counter() - t0)
            if len(rows) != 1 or rows[0]["__id"] is None:
                raise RuntimeError(f"expected one parcel at {lon},{lat_}, got {len(rows)} rows")

    def run(seconds: float) -> tuple[int, list[float], int]:
        return run_clients(loop, client, threads, seconds)

    def cleanup():
        loop.run_until_complete(pool.close())
        loop.close()

    return run, cleanup


def measured_async(meter: CPUMeter, run, seconds: float) -> dict:
    """One phase of the asyncpg clients."""
    before = meter.snapshot()
    count, lat, errors = run(seconds)
    after = meter.snapshot()
    stats = _stats(count, lat, errors, after["wall"] - before["wall"])
    stats.update(latencies=lat, wall=after["wall"] - before["wall"])
    return _with_cpu(stats, before, after, count)


def http_async_clients(port: int, points, threads: int):
    """``threads`` concurrent clients calling GET /api/identify, one keep-alive connection each, on
    one event loop in a thread: built as the direct clients are (one uvloop, one task per client),
    with a minimal HTTP/1.1 exchange (request line, Content-Length body), so the two phases' clients
    cost alike on the CPUs they share with the server. Returns run(seconds) and cleanup."""
    import asyncio

    import uvloop

    loop = uvloop.new_event_loop()
    expected = b'"numberReturned":1}'

    async def client(i, deadline, lat):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # as wrk and browsers do: without it, Nagle + delayed ACKs add ~40 ms stalls on loopback
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        k = i
        try:
            while time.perf_counter() < deadline:
                lon, lat_ = points[k % len(points)]
                k += threads
                t0 = time.perf_counter()
                writer.write(f"GET /api/identify?lon={lon!r}&lat={lat_!r} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                lat.append(time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 200") or not body.endswith(expected):
                    raise RuntimeError(f"{head[:40]!r}: {body[:200]!r}")
                if re.search(rb"(?i)\r\nconnection: *close", head):
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    def run(seconds: float) -> tuple[int, list[float], int]:
        return run_clients(loop, client, threads, seconds)

    return run, loop.close


# --- native load generators: they do not compete with the server for CPU as Python threads do ---

WRK_SCRIPT = """
local side, x0, y0, cell
function init(args)
  side, x0, y0, cell = tonumber(args[1]), tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  -- a random point 1 m inside a random parcel of the grid, in the city CRS (x/y, the default crs)
  local x = x0 + math.random(0, side - 1) * cell + 1 + math.random() * (cell - 2)
  local y = y0 + math.random(0, side - 1) * cell + 1 + math.random() * (cell - 2)
  return wrk.format("GET", string.format("/api/identify?x=%.3f&y=%.3f", x, y))
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_phase(port: int, side: int, threads: int, seconds: float, folder: Path):
    """wrk with ``threads`` keep-alive connections on 2 threads, random parcels in the city CRS."""
    script = folder / "identify.lua"
    script.write_text(WRK_SCRIPT)
    command = [shutil.which("wrk") or "wrk", "-t2", f"-c{threads}", f"-d{max(1, round(seconds))}s", "-s", str(script),
               f"http://127.0.0.1:{port}", "--", str(side), str(ORIGIN[0]), str(ORIGIN[1]), str(CELL)]

    def parse(stdout: str) -> dict:
        line = next(ln for ln in stdout.splitlines() if ln.startswith("WRK "))
        requests, _, p50, p95, p99, errors = (int(v) for v in line.split()[1:])
        return {"requests": requests, "errors": errors, "p50_ms": p50 / 1000, "p95_ms": p95 / 1000,
                "p99_ms": p99 / 1000}

    return command, parse


def pgbench_phase(url: str, sql: str, values: dict, side: int, threads: int, seconds: float, folder: Path,
                  prepared: bool = False):
    """pgbench with ``threads`` connections sending identify's SQL for random points in the city
    CRS: as psycopg2 sends it (simple protocol, values in the text, no prepared statement), or with
    ``prepared`` as asyncpg does (extended protocol, a statement prepared once per connection; the
    statement then has ``$n`` placeholders, ``values`` gives the name of each in order)."""
    lines = [f"\\set i random(0, {side - 1})", f"\\set j random(0, {side - 1})",
             f"\\set x {ORIGIN[0]} + :i * {CELL} + 1.0 + random(0, {int((CELL - 2) * 1000)}) / 1000.0",
             f"\\set y {ORIGIN[1]} + :j * {CELL} + 1.0 + random(0, {int((CELL - 2) * 1000)}) / 1000.0"]
    defines = []
    for name, value in values.items():
        if name in ("x", "y"):
            continue
        if isinstance(value, str):  # substituted as text: the quoted literal, or the bare value as a parameter
            defines += ["-D", f"{name}={value}" if prepared else f"{name}='{value}'"]
        else:
            lines.append(f"\\set {name} {value}")
    if prepared:
        order = list(values)
        statement = re.sub(r"\$(\d+)", lambda m: ":" + order[int(m.group(1)) - 1], sql)
    else:
        statement = re.sub(r"%\((\w+)\)s", r":\1", sql).replace("%%", "%")
    script = folder / "identify.sql"
    script.write_text("\n".join(lines) + "\n" + " ".join(statement.split()) + ";\n")
    command = [pgbench_binary(), "-n", "-M", "prepared" if prepared else "simple", f"-c{threads}", "-j2",
               f"-T{max(1, round(seconds))}",
               "-f", str(script), "-l", f"--log-prefix={folder / 'pgbench_log'}", *defines, url]

    def parse(stdout: str) -> dict:
        lat = []
        for log in folder.glob("pgbench_log*"):  # one file per pgbench thread, removed once read
            lat.extend(int(line.split()[2]) / 1e6 for line in log.read_text().splitlines())
            log.unlink()
        lat.sort()
        failed = re.search(r"number of failed transactions: (\d+)", stdout)
        return _stats(len(lat), lat, int(failed.group(1)) if failed else 0, 1.0)

    return command, parse


def pgbench_binary() -> str:
    found = shutil.which("pgbench") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)
    if found is None:
        raise SystemExit("pgbench not found (Debian package postgresql-15)")
    return str(found)


def combine(rounds: list[dict]) -> dict:
    """Pool the rounds of one phase: total rate, mean CPU; percentiles over all latencies when the
    client kept them, else the worst round's (wrk and pgbench report percentiles per run)."""
    count = sum(r["requests"] for r in rounds)
    if all("latencies" in r for r in rounds):
        lat = sorted(x for r in rounds for x in r["latencies"])
        out = _stats(count, lat, sum(r["errors"] for r in rounds), sum(r["wall"] for r in rounds))
    else:
        out = {"requests": count, "rate": count / sum(r["wall"] for r in rounds),
               "errors": sum(r["errors"] for r in rounds)}
        out.update({k: max(r[k] for r in rounds) for k in ("p50_ms", "p95_ms", "p99_ms")})
    for key in ("cpu_client_ms", "cpu_server_ms", "cpu_postgres_ms"):
        out[key] = sum(r[key] * r["requests"] for r in rounds) / max(count, 1)
    out["load"] = sum(r["load"] for r in rounds) / len(rounds)
    return out


def _stats(count: int, lat: list[float], errors: int, seconds: float) -> dict:
    return {"requests": count, "rate": count / seconds, "p50_ms": percentile(lat, 50) * 1000,
            "p95_ms": percentile(lat, 95) * 1000, "p99_ms": percentile(lat, 99) * 1000, "errors": errors}


def start_gunicorn(url: str, port: int, worker_class: str, threads: int) -> subprocess.Popen:
    """gunicorn with 2 workers: as ``gisserver serve`` runs it (asgi), or a WSGI worker class."""
    from gisserver.cli import gunicorn_arguments

    env = dict(os.environ, DATABASE_URL=url, GISSERVER_DB_POOL_SIZE=str(max(threads, 1)),
               GISSERVER_THREADS=str(max(threads, 1)))
    if worker_class == "asgi":
        cmd = [sys.executable, "-m", "gunicorn", "--log-level", "warning",
               *gunicorn_arguments("127.0.0.1", port, 2, access_log=False)]
    else:
        cmd = [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
               "--worker-class", worker_class, "--log-level", "warning", "--preload", "app:app"]
        if worker_class == "gthread":
            cmd[5:5] = ["--threads", str(threads), "--keep-alive", "30"]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gunicorn did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parcels", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=8, help="concurrent clients in each phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration of each phase")
    parser.add_argument("--worker-class", default="asgi", choices=("asgi", "gthread", "sync"),
                        help="asgi: production serving (gisserver serve); gthread/sync: the WSGI app, for comparison")
    parser.add_argument("--server-threads", type=int, default=None,
                        help="threads per gunicorn worker (gthread; for asgi the Flask threads; default: --threads)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating direct/HTTP rounds")
    parser.add_argument("--clients", default="both", choices=("python", "native", "both"),
                        help="load generators: Python threads, wrk + pgbench, or both pairs")
    parser.add_argument("--reload", action="store_true", help="regenerate the parcels even if present")
    args = parser.parse_args()

    url = scratch_url()
    loaded = load_parcels(url, args.parcels, args.reload)
    how = f"loaded in {loaded:.1f} s" if loaded else "reused"
    print(f"parcels: {args.parcels:,} ({how}) in database {url.rsplit('/', 1)[1]}")
    side = int(args.parcels ** 0.5)
    server_threads = args.server_threads or args.threads
    port = free_port()
    server = start_gunicorn(url, port, args.worker_class, server_threads)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-identify-") as tmp:
            phases = run_phases(args, url, port, server.pid, side, Path(tmp))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"clients: {args.threads} concurrent, {args.seconds:g} s per phase in {args.rounds} alternating rounds, "
          f"gunicorn 2 workers ({args.worker_class}, {server_threads} threads each), {os.cpu_count()} CPUs shared "
          "by clients, server and PostgreSQL")
    driver = "asyncpg pool, prepared" if args.worker_class == "asgi" else "psycopg2 pool"
    mode = "prepared" if args.worker_class == "asgi" else "simple"
    met = [report_pair(name, phases[direct], phases[http])
           for name, direct, http in ((f"Python (asyncio HTTP clients / {driver})", "direct", "http"),
                                      (f"native (wrk / pgbench -M {mode})", "pgbench", "wrk"))
           if phases[direct]]
    print("targets met" if all(met) else "targets NOT met")


def run_phases(args, url: str, port: int, server_pid: int, side: int, tmp: Path) -> dict[str, list[dict]]:
    """Warm up, then alternate short phases so that load from other processes hits all alike."""
    phases: dict[str, list[dict]] = {"direct": [], "http": [], "pgbench": [], "wrk": []}
    per_round = args.seconds / args.rounds
    python_pair = args.clients in ("python", "both")
    native_pair = args.clients in ("native", "both")
    points = random_points(20_000, side)
    on_asgi = args.worker_class == "asgi"
    if on_asgi:  # the server's own driver and statement: asyncpg, prepared
        direct_run, cleanup = direct_async_clients(url, points, args.threads)
    else:
        direct_loop, cleanup = direct_worker(url, points, args.threads)

        def direct_run(seconds):
            return run_threads(args.threads, seconds, direct_loop)
    http_run, http_cleanup = http_async_clients(port, points, args.threads)

    def direct_phase() -> dict:
        if on_asgi:
            return measured_async(CPUMeter(url), direct_run, per_round)
        return measured(CPUMeter(url), args.threads, per_round, direct_loop)

    try:
        direct_run(2.0)  # warm pools, statement caches, PROJ caches
        http_run(2.0)
        if native_pair:
            sql, values = city_statement(url, on_asgi)
            wrk = wrk_phase(port, side, args.threads, per_round, tmp)
            pgbench = pgbench_phase(url, sql, values, side, args.threads, per_round, tmp, prepared=on_asgi)
            measured_tool(CPUMeter(url, server_pid), wrk_phase(port, side, args.threads, 2.0, tmp)[0],
                          wrk[1])  # warm-up of the city-CRS path
        for _ in range(args.rounds):
            if python_pair:
                phases["direct"].append(direct_phase())
                phases["http"].append(measured_async(CPUMeter(url, server_pid), http_run, per_round))
            if native_pair:
                phases["pgbench"].append(measured_tool(CPUMeter(url), *pgbench))
                phases["wrk"].append(measured_tool(CPUMeter(url, server_pid), *wrk))
    finally:
        cleanup()
        http_cleanup()
    return phases


def city_statement(url: str, on_asgi: bool) -> tuple[str, dict]:
    """identify's SQL and parameters for a point given in the city CRS (what the wrk phase sends):
    the asyncpg statement (parameters in ``$n`` order) or the psycopg2 one."""
    from gisserver.security import ANONYMOUS
    from layers import query as q

    engine = q.lean_engine(make_engine(url, pool_size=1))
    statement = q.identify_async_statement if on_asgi else q.identify_statement
    with engine.connect() as conn:
        sql, values = statement(conn, "parcels", q.Point(ORIGIN[0] + 5, ORIGIN[1] + 5, q.CITY), principal=ANONYMOUS)
    engine.dispose()
    return sql, values


def report_pair(title: str, direct_rounds: list[dict], http_rounds: list[dict]) -> bool:
    direct, over_http = combine(direct_rounds), combine(http_rounds)
    ratio = over_http["rate"] / direct["rate"] if direct["rate"] else float("nan")
    per_round = [h["rate"] / d["rate"] for d, h in zip(direct_rounds, http_rounds, strict=True) if d["rate"]]
    print(f"{title}:")
    for name, r in (("direct SQL (pool)", direct), ("HTTP /api/identify", over_http)):
        print(f"  {name:20s} {r['rate']:8.0f} req/s   p50 {r['p50_ms']:6.2f} ms   p95 {r['p95_ms']:6.2f} ms   "
              f"p99 {r['p99_ms']:6.2f} ms   errors {r['errors']}   load {r['load']:.1f}")
        print(f"  {'':20s} CPU per request: client {r['cpu_client_ms']:.2f} ms, server "
              f"{r['cpu_server_ms']:.2f} ms, postgres {r['cpu_postgres_ms']:.2f} ms")
    print(f"  ratio HTTP/direct: {ratio:.2f} (target >= {TARGET_RATIO:.2f}); HTTP p95 {over_http['p95_ms']:.2f} ms "
          f"(target < {TARGET_P95_MS:g} ms)")
    print("  ratio per round: " + ", ".join(f"{r:.2f}" for r in per_round))
    return ratio >= TARGET_RATIO and over_http["p95_ms"] < TARGET_P95_MS and not over_http["errors"]


if __name__ == "__main__":
    main()
