"""Vector tiles vs the raw ST_AsMVT query for the same tiles (target: within 1.5x).

Run: .venv/bin/python bench/tiles_mvt.py [--rounds N]
Creates a throw-away database with the demo neighbourhood (6.6k parcels), then times, for the
tiles covering the parcels at zooms 14-17:
  raw      hand-written ST_AsMVT SQL through psycopg2 (the baseline)
  domain   tiles.mvt.build_tile (catalogue + SQLAlchemy statement, no cache)
  http     GET /tiles/parcels/z/x/y.mvt through the Flask app with the cache file removed first
           (cache miss: auth, catalogue lookup, query, cache write, headers)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tiles_common import demo_database, demo_tiles

RAW_SQL = """
SELECT ST_AsMVT(q, 'parcels', 4096, 'geom', 'id') FROM (
  SELECT id, ward_code, sheet_no, parcel_no, area, land_use,
         ST_AsMVTGeom(geom_3857, ST_TileEnvelope(%(z)s, %(x)s, %(y)s), 4096, 64, true) AS geom
  FROM parcel
  WHERE geom_3857 && ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AND end_lifespan IS NULL
) q
"""


def interleaved(fns: dict, tiles, rounds: int) -> dict[str, float]:
    """Median over rounds of ms per tile for each function, tile by tile interleaved so that
    load changes on the (shared) machine hit every variant alike."""
    for fn in fns.values():  # warm-up
        for t in tiles:
            fn(t)
    totals: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        spent = dict.fromkeys(fns, 0.0)
        for t in tiles:
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(t)
                spent[name] += time.perf_counter() - start
        for name in fns:
            totals[name].append(spent[name] / len(tiles) * 1000)
    return {name: statistics.median(v) for name, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from gisserver import create_app
    from gisserver.config import Settings
    from layers.catalogue import get_layer
    from tiles import mvt

    with demo_database() as (url, engine), tempfile.TemporaryDirectory() as var_dir:
        tiles = [t for t in demo_tiles(engine, (14, 15, 16, 17)) if t.z >= mvt.MIN_ZOOM["parcels"]]
        raw = engine.raw_connection()
        cur = raw.cursor()

        def run_raw(t):
            cur.execute(RAW_SQL, {"z": t.z, "x": t.x, "y": t.y})
            return bytes(cur.fetchone()[0] or b"")

        conn = engine.connect()
        info = get_layer(conn, "parcels")

        def run_domain(t):
            return mvt.build_tile(conn, info, t.z, t.x, t.y)

        app = create_app(Settings.from_env(database_url=url, var_dir=Path(var_dir)))
        client = app.test_client()
        from gisserver.api.maps import tile_cache

        with app.app_context():
            cache = tile_cache()
        namespace = mvt.cache_namespace("mvt", info)

        def run_http(t):
            cache.path(namespace, t.z, t.x, t.y, "mvt").unlink(missing_ok=True)
            resp = client.get(f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt")
            assert resp.status_code == 200 and resp.headers["X-Tile-Cache"] == "miss"
            return resp.data

        sizes = [len(run_raw(t)) for t in tiles]
        ms = interleaved({"raw": run_raw, "domain": run_domain, "http": run_http}, tiles, args.rounds)
        t_raw, t_domain, t_http = ms["raw"], ms["domain"], ms["http"]
        conn.close()
        raw.close()
    print(f"tiles: {len(tiles)} (z14-17 over the demo parcels), mean raw tile {sum(sizes) / len(sizes) / 1024:.1f} KiB")
    print(f"raw ST_AsMVT (baseline) : {t_raw:7.2f} ms/tile")
    print(f"tiles.mvt.build_tile    : {t_domain:7.2f} ms/tile  ratio {t_domain / t_raw:.2f}x")
    print(f"GET .mvt (cache miss)   : {t_http:7.2f} ms/tile  ratio {t_http / t_raw:.2f}x  (target <= 1.5x)")


if __name__ == "__main__":
    main()
