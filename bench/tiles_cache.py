"""Tile cache: hits per second through gunicorn (2 workers), and disk vs PostgreSQL storage.

Run: .venv/bin/python bench/tiles_cache.py [--seconds S]
1. The demo data in a throw-away database; the app under gunicorn with 2 sync workers; every
   vector tile z14-17 of the parcels requested once (misses), then wrk cycles through them for
   S seconds (hits: catalogue lookup + cache file read + ETag headers).  Target >= 2000 tiles/s.
2. The storage choice, measured in-process: reading a cached tile from the disk cache vs
   ``SELECT data FROM tile_cache WHERE key`` from a PostgreSQL table holding the same tiles.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    from layers.catalogue import get_layer
    from tiles.cache import TileCache
    from tiles.mvt import cache_namespace

    with demo_database() as (url, engine), tempfile.TemporaryDirectory() as var_dir:
        tiles = [t for t in demo_tiles(engine, (14, 15, 16, 17)) if t.z >= 12]
        with gunicorn(url, Path(var_dir), workers=2) as (base, pid):
            urls = [f"{base}/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt" for t in tiles]
            for u in urls:
                assert requests.get(u, timeout=60).status_code == 200
            assert requests.get(urls[0], timeout=10).headers["X-Tile-Cache"] == "hit"
            health = wrk([f"{base}/health"], seconds=args.seconds)
            cpu0 = process_tree_cpu(pid)
            hits = wrk(urls, seconds=args.seconds)
            cpu_per_hit = (process_tree_cpu(pid) - cpu0) / wrk.last_requests
        with engine.connect() as conn:
            info = get_layer(conn, "parcels")
        with gunicorn(url, Path(var_dir), workers=2, threads=4) as (base, pid):
            threaded = wrk([f"{base}/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt" for t in tiles], seconds=args.seconds)
        disk, pg = storage_comparison(engine, TileCache(Path(var_dir) / "tiles"), cache_namespace("mvt", info), tiles)
    print(f"tiles: {len(tiles)} vector tiles of the demo parcels, gunicorn 2 sync workers, wrk 2 threads 4 connections")
    print(f"GET /health (baseline, no tile work)  : {health:8.0f} req/s")
    print(f"GET .mvt cache hits                    : {hits:8.0f} tiles/s  ratio to /health {hits / health:.2f}"
          "  (target >= 2000/s)")
    print(f"GET .mvt cache hits, gthread x4, keep-alive: {threaded:8.0f} tiles/s")
    print(f"server CPU per hit (gunicorn workers)  : {cpu_per_hit * 1000:8.3f} ms  -> {2 / cpu_per_hit:.0f} tiles/s "
          "if the 2 workers had 2 cores to themselves")
    print(f"cache read, disk                       : {disk:8.1f} µs/tile")
    print(f"cache read, PostgreSQL bytea by key    : {pg:8.1f} µs/tile  ratio {pg / disk:.1f}x disk")


if __name__ == "__main__":
    main()
