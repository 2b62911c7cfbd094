"""Tile cache: hits per second through gunicorn (2 workers), and disk vs PostgreSQL storage.

Run: .venv/bin/python bench/tiles_cache.py [--seconds S]
1. The demo data in a throw-away database; the app under gunicorn with 2 sync workers (and, for
   comparison, gthread workers and production serving: ``gisserver serve``'s asgi worker); every
   vector tile z14-17 of the parcels requested once (misses), then wrk cycles through them for
   S seconds (hits: the lean WSGI path of gisserver/fastpath.py: catalogue copy, cache file read,
   ETag headers).  Target >= 2000 tiles/s.  Baseline of the same run: a WSGI app of five lines that
   answers every request with one of the same tiles from memory, under the same gunicorn (the most
   any app can reach here with this server and client on this machine's current load).
2. The storage choice, measured in-process: reading a cached tile from the disk cache vs
   ``SELECT data FROM tile_cache WHERE key`` from a PostgreSQL table holding the same tiles.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests
from tiles_common import demo_database, demo_tiles, gunicorn, process_tree_cpu, wrk


def storage_comparison(engine, cache, namespace, tiles, rounds: int = 5) -> tuple[float, float]:
    """(disk µs/read, PostgreSQL µs/read) for the same tiles."""

    raw = engine.raw_connection()
    cur = raw.cursor()
    cur.execute("CREATE TEMP TABLE tile_store (z int, x int, y int, version int, data bytea, "
                "PRIMARY KEY (z, x, y))")
    for t in tiles:
        entry = cache.read(namespace, t.z, t.x, t.y, "mvt")
        cur.execute("INSERT INTO tile_store VALUES (%s, %s, %s, %s, %s)", (t.z, t.x, t.y, entry.version, entry.data))
    raw.commit()
    disk, pg = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for t in tiles:
            cache.read(namespace, t.z, t.x, t.y, "mvt")
        disk.append((time.perf_counter() - start) / len(tiles) * 1e6)
        start = time.perf_counter()
        for t in tiles:
            cur.execute("SELECT version, data FROM tile_store WHERE z = %s AND x = %s AND y = %s", (t.z, t.x, t.y))
            cur.fetchone()
        pg.append((time.perf_counter() - start) / len(tiles) * 1e6)
    raw.close()
    return statistics.median(disk), statistics.median(pg)


STATIC_APP = """
import os
DATA = [open(os.path.join(os.environ["BENCH_TILES"], name), "rb").read()
        for name in sorted(os.listdir(os.environ["BENCH_TILES"]), key=lambda n: int(n.split(".")[0]))]
def app(environ, start_response):
    data = DATA[int(environ["PATH_INFO"].rsplit("/", 1)[1].split(".")[0]) % len(DATA)]
    start_response("200 OK", [("Content-Type", "application/vnd.mapbox-vector-tile"),
                              ("Content-Length", str(len(data)))])
    return [data]
"""


@contextmanager
def static_server(url: str, tiles: list[bytes]):
    """A trivial WSGI app answering the same tiles from memory (``/…/<i>.mvt`` -> tile i), under the
    same gunicorn (2 sync workers)."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "static_tile.py").write_text(STATIC_APP)
        Path(tmp, "data").mkdir()
        for i, data in enumerate(tiles):
            Path(tmp, "data", f"{i}.mvt").write_bytes(data)
        os.environ["BENCH_TILES"] = str(Path(tmp, "data"))
        with gunicorn(url, Path(tmp), workers=2, app="static_tile:app", cwd=Path(tmp), ready_path="/0.mvt") as server:
            yield server


def measure(urls: list[str], pid: int, seconds: int) -> tuple[float, float]:
    """(requests/s, server CPU seconds per request)."""
    cpu0 = process_tree_cpu(pid)
    rps = wrk(urls, seconds=seconds)
    return rps, (process_tree_cpu(pid) - cpu0) / wrk.last_requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    from layers.catalogue import get_layer
    from tiles.cache import TileCache
    from tiles.mvt import cache_namespace

    runs: dict[str, list[tuple[float, float]]] = {"static": [], "hits": []}
    with demo_database() as (url, engine), tempfile.TemporaryDirectory() as var_dir:
        tiles = [t for t in demo_tiles(engine, (14, 15, 16, 17)) if t.z >= 12]
        with gunicorn(url, Path(var_dir), workers=2) as (base, pid):
            urls = [f"{base}/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt" for t in tiles]
            for u in urls:
                assert requests.get(u, timeout=60).status_code == 200
            assert requests.get(urls[0], timeout=10).headers["X-Tile-Cache"] == "hit"
            health = wrk([f"{base}/health"], seconds=args.seconds)
            contents = [requests.get(u, timeout=10).content for u in urls]
            with static_server(url, contents) as (static_base, static_pid):
                static_urls = [f"{static_base}/tiles/static/{i}.mvt" for i in range(len(tiles))]
                for _ in range(2):  # A/B/A/B: load changes on the shared machine hit both alike
                    runs["static"].append(measure(static_urls, static_pid, args.seconds))
                    runs["hits"].append(measure(urls, pid, args.seconds))
        with engine.connect() as conn:
            info = get_layer(conn, "parcels")
        with gunicorn(url, Path(var_dir), workers=2, threads=4) as (base, pid):
            threaded = wrk([f"{base}/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt" for t in tiles], seconds=args.seconds)
        with gunicorn(url, Path(var_dir), workers=2, threads=4, production=True) as (base, pid):
            production = [measure([f"{base}/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt" for t in tiles], pid, args.seconds)
                          for _ in range(2)]
        disk, pg = storage_comparison(engine, TileCache(Path(var_dir) / "tiles"), cache_namespace("mvt", info), tiles)
    (floor, floor_cpu), (hits, cpu_per_hit) = (
        (statistics.mean(r[0] for r in runs[k]), statistics.mean(r[1] for r in runs[k])) for k in ("static", "hits"))
    print(f"tiles: {len(tiles)} vector tiles of the demo parcels, gunicorn 2 sync workers, wrk 2 threads 4 connections")
    print(f"static WSGI app, same gunicorn (baseline): {floor:6.0f} req/s  runs {[round(r[0]) for r in runs['static']]}"
          f"  server CPU {floor_cpu * 1000:.3f} ms/req")
    print(f"GET .mvt cache hits                      : {hits:6.0f} tiles/s  runs {[round(r[0]) for r in runs['hits']]}"
          f"  server CPU {cpu_per_hit * 1000:.3f} ms/hit")
    print(f"ratio hits / static app                  : {hits / floor:.2f}x  (target >= 2000 tiles/s)")
    print(f"hits/s if the 2 workers had 2 cores      : {2 / cpu_per_hit:6.0f}  (2 / server CPU per hit)")
    print(f"GET /health (reads the database)         : {health:6.0f} req/s")
    print(f"GET .mvt cache hits, gthread x4, keep-alive: {threaded:6.0f} tiles/s")
    print(f"GET .mvt cache hits, gisserver serve (asgi worker, hits through a2wsgi to the WSGI fast path): "
          f"{statistics.mean(r[0] for r in production):6.0f} tiles/s  runs {[round(r[0]) for r in production]}"
          f"  server CPU {statistics.mean(r[1] for r in production) * 1000:.3f} ms/hit")
    print(f"cache read, disk                         : {disk:8.1f} µs/tile")
    print(f"cache read, PostgreSQL bytea by key      : {pg:8.1f} µs/tile  ratio {pg / disk:.1f}x disk")


if __name__ == "__main__":
    main()
