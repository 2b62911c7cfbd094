"""Shared set-up of the tile benchmarks: a throw-away database with the demo neighbourhood,
gunicorn serving the app, wrk driving load. Nothing here runs at import time."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def demo_database():
    """(url, engine) of a fresh database migrated to head with the demo data loaded; dropped after."""
    from gisserver import migrate
    from gisserver.config import Settings
    from gisserver.db import make_engine, scratch_database
    from gisserver.pgcluster import cluster_from_settings
    from layers import demo

    cluster = cluster_from_settings(Settings.from_env())
    cluster.start()
    with scratch_database(cluster.url("postgres"), "gisserver_bench") as url:
        engine = make_engine(url, pool_size=2)
        try:
            migrate.upgrade(engine)
            demo.load(engine, demo.generate(seed=2026))
            with engine.begin() as conn:
                from sqlalchemy import text

                conn.execute(text("ANALYZE"))
            yield url, engine
        finally:
            engine.dispose()


@contextmanager
def gunicorn(url: str, var_dir: Path, workers: int = 2, threads: int = 0, app: str = "gisserver:create_app()",
             cwd: Path = ROOT, ready_path: str = "/health", production: bool = False):
    """The app under gunicorn on a loopback port (sync workers, or gthread workers with
    keep-alive when ``threads``, or with ``production`` as ``gisserver serve`` runs it: the ASGI
    front on the asgi worker, ``threads`` Flask threads); yields (base URL, master pid)."""
    from gisserver.cli import gunicorn_arguments

    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "GISSERVER_VAR_DIR": str(var_dir)}
    if production:
        env["GISSERVER_THREADS"] = str(threads or 4)
        arguments = gunicorn_arguments("127.0.0.1", port, workers, access_log=False)
    else:
        arguments = ["--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                     *(["--worker-class", "gthread", "--threads", str(threads)] if threads else []), app]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--log-level", "warning", *arguments],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + ready_path)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{p}/task").iterdir():
                pids.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the database of ``url`` (other
    databases of the shared cluster are not counted). Servers keep their connections open, so the
    difference of two calls is the database work done for them in between."""
    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg2.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")
            pids = [row[0] for row in cur.fetchall()]
    conn.close()
    return {pid: process_tree_cpu(pid) for pid in pids}


def backend_cpu_since(url: str, before: dict[int, float]) -> float:
    """CPU seconds the database's backends used since ``before`` (new backends count from zero)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in backend_cpu(url).items())


def wait_http(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=20).status_code < 500:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def wrk(urls: list[str], seconds: int = 5, connections: int = 4, threads: int = 2) -> float:
    """Requests per second that wrk reaches cycling through ``urls`` (non-2xx/3xx responses fail);
    ``wrk.last_requests`` keeps the number of requests of the last run."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "urls.lua"
        paths = ",".join('"' + u.split("/", 3)[3].replace('"', "") + '"' for u in urls)
        script.write_text(
            "local paths = {" + paths + "}\n"
            "local i = 0\n"
            "request = function()\n  i = (i % #paths) + 1\n  return wrk.format('GET', '/' .. paths[i])\nend\n"
            "local bad = 0\n"
            "response = function(status, headers, body)\n  if status >= 400 then bad = bad + 1 end\nend\n"
            "done = function(summary, latency, requests)\n  io.write('BAD ' .. bad .. '\\n')\nend\n"
        )
        base = "/".join(urls[0].split("/", 3)[:3])
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                              "-s", str(script), base], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    wrk.last_requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors and int(errors.group(1)):
        raise RuntimeError(f"{errors.group(1)} failed responses:\n{out}")
    return rps


def demo_tiles(engine, zooms=(15, 16, 17)):
    """Web-mercator tiles covering the demo parcels."""
    from layers.catalogue import extent_wgs84
    from tiles.tms import tiles_in_lonlat_bbox

    with engine.connect() as conn:
        bbox = extent_wgs84(conn, "parcels")
    return list(tiles_in_lonlat_bbox(bbox, range(min(zooms), max(zooms) + 1)))
