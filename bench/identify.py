"""Benchmark: identify-at-point over HTTP (gunicorn, 2 workers) vs the same query sent directly.

    .venv/bin/python bench/identify.py [--parcels 1000000] [--threads 8] [--seconds 10]

Loads (once; kept in the scratch database ``gisserver_bench_identify`` of the embedded cluster, or
``BENCH_DATABASE_URL``) a grid of 1,000,000 parcel polygons in the city CRS around HCMC
(E 600000, N 1190000) with ``generate_series``, then, in the same run, alternating the two phases
in ``--rounds`` short rounds after a warm-up (the machine may be shared with other work):

1. direct: ``--threads`` client threads send the exact SQL identify runs (``identify_statement``)
   through the same SQLAlchemy pool configuration the server uses for it (``lean_engine``:
   autocommit, no pre-ping, one round trip per query);
2. http: the same number of client threads call ``GET /api/identify?lon=&lat=`` on gunicorn with
   2 workers over loopback (one keep-alive connection per thread).

Both phases query the same random points inside the grid. Prints requests/s, p50/p95/p99 latency,
CPU time per request (client, gunicorn workers, PostgreSQL backends), the load average and the
HTTP/direct ratio (overall and per round). Targets: HTTP rate >= 50% of direct, HTTP p95 < 10 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
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


class CPUMeter:
    """CPU seconds used by this process, given server processes and the database's backends."""

    def __init__(self, url: str, server_pid: int | None = None):
        self.url, self.server_pid = url, server_pid

    def _backends(self) -> list[int]:
        import psycopg2

        with psycopg2.connect(self.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")
            return [r[0] for r in cur.fetchall()]

    def snapshot(self) -> dict:
        server = [self.server_pid, *_children(self.server_pid)] if self.server_pid else []
        return {"client": time.process_time(), "server": sum(_proc_cpu(p) for p in server),
                "postgres": sum(_proc_cpu(p) for p in self._backends()), "wall": time.perf_counter()}


def measured(meter: CPUMeter, threads: int, seconds: float, worker) -> dict:
    before = meter.snapshot()
    count, lat, errors = run_threads(threads, seconds, worker)
    after = meter.snapshot()
    stats = _stats(count, lat, errors, after["wall"] - before["wall"])
    stats.update(latencies=lat, wall=after["wall"] - before["wall"])
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
    from layers import query as q

    base = make_engine(url, pool_size=threads)
    engine = q.lean_engine(base)  # the very pool configuration identify uses in the server
    with engine.connect() as conn:
        sql, template = q.identify_statement(conn, "parcels", q.Point(*points[0]))

    def worker(i, stop, lat):
        k = i
        while not stop.is_set():
            lon, lat_ = points[k % len(points)]
            k += threads
            params = dict(template, x=lon, y=lat_)
            t0 = time.perf_counter()
            with engine.connect() as conn:
                rows = q.run_compiled(conn, sql, params)  # the server's own cursor path
            lat.append(time.perf_counter() - t0)
            if len(rows) != 1 or rows[0]["__id"] is None:
                raise RuntimeError(f"expected one parcel at {lon},{lat_}, got {len(rows)} rows")

    def cleanup():
        engine.dispose()
        base.dispose()

    return worker, cleanup


def http_worker(port: int, points, threads: int):
    """A client loop calling GET /api/identify on one keep-alive connection per thread."""

    def connect():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.connect()
        # as wrk and browsers do: without it, Nagle + delayed ACKs add ~40 ms stalls on loopback
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def worker(i, stop, lat):
        conn = connect()
        k = i
        while not stop.is_set():
            lon, lat_ = points[k % len(points)]
            k += threads
            t0 = time.perf_counter()
            conn.request("GET", f"/api/identify?lon={lon!r}&lat={lat_!r}")
            resp = conn.getresponse()
            body = resp.read()
            lat.append(time.perf_counter() - t0)
            if resp.status != 200 or len(json.loads(body)["features"]) != 1:
                raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = connect()
        conn.close()

    return worker


def combine(rounds: list[dict]) -> dict:
    """Pool the rounds of one phase: total rate, percentiles over all latencies, mean CPU."""
    lat = sorted(x for r in rounds for x in r["latencies"])
    count = sum(r["requests"] for r in rounds)
    out = _stats(count, lat, sum(r["errors"] for r in rounds), sum(r["wall"] for r in rounds))
    for key in ("cpu_client_ms", "cpu_server_ms", "cpu_postgres_ms"):
        out[key] = sum(r[key] * r["requests"] for r in rounds) / max(count, 1)
    out["load"] = sum(r["load"] for r in rounds) / len(rounds)
    return out


def _stats(count: int, lat: list[float], errors: int, seconds: float) -> dict:
    return {"requests": count, "rate": count / seconds, "p50_ms": percentile(lat, 50) * 1000,
            "p95_ms": percentile(lat, 95) * 1000, "p99_ms": percentile(lat, 99) * 1000, "errors": errors}


def start_gunicorn(url: str, port: int, worker_class: str, threads: int) -> subprocess.Popen:
    env = dict(os.environ, DATABASE_URL=url, GISSERVER_DB_POOL_SIZE=str(max(threads, 1)))
    cmd = [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
           "--worker-class", worker_class, "--log-level", "warning",
           # import the app once before forking: both workers serve from the first request (the
           # app opens no connection at import, so nothing is shared across the fork)
           "--preload", "app:app"]
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
    parser.add_argument("--worker-class", default="gthread", choices=("gthread", "sync"))
    parser.add_argument("--server-threads", type=int, default=None,
                        help="threads per gunicorn worker (gthread; default: --threads)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating direct/HTTP rounds")
    parser.add_argument("--reload", action="store_true", help="regenerate the parcels even if present")
    args = parser.parse_args()

    url = scratch_url()
    loaded = load_parcels(url, args.parcels, args.reload)
    how = f"loaded in {loaded:.1f} s" if loaded else "reused"
    print(f"parcels: {args.parcels:,} ({how}) in database {url.rsplit('/', 1)[1]}")
    points = random_points(20_000, int(args.parcels ** 0.5))

    port = free_port()
    server_threads = args.server_threads or args.threads
    server = start_gunicorn(url, port, args.worker_class, server_threads)
    direct_loop, cleanup = direct_worker(url, points, args.threads)
    http_loop = http_worker(port, points, args.threads)
    phases = {"direct": [], "http": []}
    try:
        run_threads(args.threads, 2.0, direct_loop)  # warm pools, statement caches, PROJ caches
        run_threads(args.threads, 2.0, http_loop)
        # alternate short phases so that load from other processes on the machine hits both alike
        for _ in range(args.rounds):
            phases["direct"].append(measured(CPUMeter(url), args.threads, args.seconds / args.rounds,
                                             direct_loop))
            phases["http"].append(measured(CPUMeter(url, server.pid), args.threads, args.seconds / args.rounds,
                                           http_loop))
    finally:
        cleanup()
        server.terminate()
        server.wait(timeout=30)
    direct, over_http = combine(phases["direct"]), combine(phases["http"])
    per_round = [h["rate"] / d["rate"] for d, h in zip(phases["direct"], phases["http"], strict=True) if d["rate"]]

    ratio = over_http["rate"] / direct["rate"] if direct["rate"] else float("nan")
    print(f"clients: {args.threads} threads, {args.seconds:g} s per phase in {args.rounds} alternating rounds, "
          "gunicorn 2 workers "
          f"({args.worker_class}, {server_threads} threads each), {os.cpu_count()} CPUs shared by clients, "
          "server and PostgreSQL")
    for name, r in (("direct SQL (pool)", direct), ("HTTP /api/identify", over_http)):
        print(f"  {name:20s} {r['rate']:8.0f} req/s   p50 {r['p50_ms']:6.2f} ms   p95 {r['p95_ms']:6.2f} ms   "
              f"p99 {r['p99_ms']:6.2f} ms   errors {r['errors']}   load {r['load']:.1f}")
        print(f"  {'':20s} CPU per request: client {r['cpu_client_ms']:.2f} ms, server "
              f"{r['cpu_server_ms']:.2f} ms, postgres {r['cpu_postgres_ms']:.2f} ms")
    print(f"  ratio HTTP/direct: {ratio:.2f} (target >= {TARGET_RATIO:.2f}); HTTP p95 {over_http['p95_ms']:.2f} ms "
          f"(target < {TARGET_P95_MS:g} ms)")
    print("  ratio per round: " + ", ".join(f"{r:.2f}" for r in per_round))
    ok = ratio >= TARGET_RATIO and over_http["p95_ms"] < TARGET_P95_MS
    print("targets met" if ok else "targets NOT met")


if __name__ == "__main__":
    main()
