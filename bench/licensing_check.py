"""Benchmark: a full compliance check at 1,000,000 parcels (target p95 < 200 ms).

Builds a scratch database on the embedded cluster (or TEST_DATABASE_URL's server), migrates it,
and generates with SQL ``generate_series`` a city of N parcels (10 m x 20 m, 40 per block) around
E 600000 N 1190000 in the city SRID, with a road network cut per block (12 m streets, 20/30 m
avenues), red lines both sides, zoning zones of 2 km, 110 kV and 22 kV power lines and their
protection corridors. Then it times, over random parcels and in the same run:

* baseline: the bare parcel lookup (``register.get_parcel``: one indexed row with its geometry);
* the full check (``check.check_building``: every rule, every query, report assembly).

    .venv/bin/python bench/licensing_check.py                # 1,000,000 parcels, 400 checks
    .venv/bin/python bench/licensing_check.py --parcels 40000 --samples 200 --keep

Figures are printed; the wall-clock target is checked here, never in the tests.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_db import server_url  # noqa: E402
from shapely.geometry import box  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from gisserver.config import Settings  # noqa: E402
from gisserver.db import create_database, database_url_for, drop_database, make_engine  # noqa: E402

E0, N0 = 587_000.0, 1_185_000.0
PER_BLOCK, BLOCK_W, BLOCK_H, STREET = 40, 212.0, 52.0, 12.0


def _exists(url: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(url).close()
    except psycopg2.OperationalError:
        return False
    return True


# the whole synthetic city, in bound parameters (no value is formatted into SQL)
GENERATE = [
    # parcels: block (bx, by) holds 2 rows of 20 parcels between streets centred on x=bx*W, y=by*H
    """
    INSERT INTO parcel (ward_code, sheet_no, parcel_no, land_use, geom)
    SELECT 'W' || lpad((b / 1000)::text, 3, '0'), b + 1, i + 1, 'ODT',
           ST_Multi(ST_MakeEnvelope(x, y, x + 10, y + 20, 909210))
    FROM generate_series(0, :blocks - 1) AS b,
         generate_series(0, :per_block - 1) AS i,
         LATERAL (SELECT :e0 + (b % :cols) * :bw + :half + (i % 20) * 10.0 AS x,
                         :n0 + (b / :cols) * :bh + :half + (i / 20) * 20.0 AS y) AS xy
    """,
    # streets per block edge (east-west then north-south); every 5th line is an avenue
    """
    INSERT INTO road (name, road_class, row_width, geom)
    SELECT 'Street EW ' || r || '-' || c, CASE WHEN r % 5 = 0 THEN 'arterial' ELSE 'local' END,
           CASE WHEN r % 5 = 0 THEN 30.0 WHEN r % 5 = 3 THEN 20.0 ELSE :street END,
           ST_SetSRID(ST_Multi(ST_MakeLine(ST_MakePoint(:e0 + c * :bw, :n0 + r * :bh),
                                           ST_MakePoint(:e0 + (c + 1) * :bw, :n0 + r * :bh))), 909210)
    FROM generate_series(0, :rows) AS r, generate_series(0, :cols - 1) AS c
    """,
    """
    INSERT INTO road (name, road_class, row_width, geom)
    SELECT 'Street NS ' || c || '-' || r, 'local', :street,
           ST_SetSRID(ST_Multi(ST_MakeLine(ST_MakePoint(:e0 + c * :bw, :n0 + r * :bh),
                                           ST_MakePoint(:e0 + c * :bw, :n0 + (r + 1) * :bh))), 909210)
    FROM generate_series(0, :cols) AS c, generate_series(0, :rows - 1) AS r
    """,
    # red lines both sides of each street at half its right of way (parallel offsets)
    """
    INSERT INTO red_line (road_id, decision, geom)
    SELECT id, 'bench', ST_Multi(ST_Collect(ST_OffsetCurve(ST_GeometryN(geom, 1), row_width / 2),
                                            ST_OffsetCurve(ST_GeometryN(geom, 1), -row_width / 2)))
    FROM road
    """,
    # zoning zones of 2 km
    """
    INSERT INTO zoning_zone (zone_code, name, land_use, max_density, max_far, max_floors, max_height,
                             min_setback, min_ground_elevation, subdivision_zone, plan_decision, geom)
    SELECT 'Z' || zx || '-' || zy, 'bench zone', 'ODT', 0.8, CASE WHEN (zx + zy) % 2 = 0 THEN 5.0 ELSE 7.0 END,
           CASE WHEN (zx + zy) % 2 = 0 THEN 5 ELSE 8 END, CASE WHEN (zx + zy) % 2 = 0 THEN 21.0 ELSE 32.0 END,
           0.0, 2.0, 1 + (zx + zy) % 3, 'bench',
           ST_Multi(ST_MakeEnvelope(:e0 + zx * 2000, :n0 + zy * 2000, :e0 + (zx + 1) * 2000,
                                    :n0 + (zy + 1) * 2000, 909210))
    FROM generate_series(0, (:cols * :bw / 2000)::int) AS zx, generate_series(0, (:rows * :bh / 2000)::int) AS zy
    """,
    # power lines crossing blocks north-south every ~2 km (110 kV) and 22 kV along some streets, 1 km spans
    """
    INSERT INTO power_line (name, voltage_kv, conductor, geom)
    SELECT 'bench ' || kv || ' kV', kv, 'bare',
           ST_SetSRID(ST_Multi(ST_MakeLine(ST_MakePoint(x, :n0 + s * 1000),
                                           ST_MakePoint(x, :n0 + (s + 1) * 1000))), 909210)
    FROM (SELECT 110.0 AS kv, :e0 + c * :bw + 100 AS x FROM generate_series(0, :cols - 1, 10) AS c
          UNION ALL SELECT 22.0, :e0 + c * :bw + 2 FROM generate_series(5, :cols - 1, 10) AS c) AS lines,
         generate_series(0, (:rows * :bh / 1000)::int) AS s
    """,
]


def build(url: str, parcels: int) -> None:
    from gisserver import migrate
    from layers.catalogue import sync_canonical_layers
    from licensing.corridors import generate_corridors

    engine = make_engine(url, pool_size=2)
    migrate.upgrade(engine)
    blocks = parcels // PER_BLOCK
    cols = max(1, round((blocks * BLOCK_H / BLOCK_W) ** 0.5 * 2))
    rows = -(-blocks // cols)
    params = {"blocks": blocks, "per_block": PER_BLOCK, "cols": cols, "rows": rows, "e0": E0, "n0": N0,
              "bw": BLOCK_W, "bh": BLOCK_H, "half": STREET / 2, "street": STREET}
    t0 = time.perf_counter()
    with engine.begin() as conn:
        sync_canonical_layers(conn)
        for sql in GENERATE:
            names = [k for k in params if f":{k}" in sql]
            conn.execute(text(sql), {k: params[k] for k in names})
        counts = generate_corridors(conn, "bench")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    print(f"generated {parcels:,} parcels on {cols} x {rows} blocks, corridors {counts} "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    engine.dispose()


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return p(0.50) * 1000, p(0.95) * 1000, statistics.fmean(ordered) * 1000


def measure(url: str, samples: int, seed: int = 11) -> None:
    from gisserver import schema
    from licensing import check, register

    engine = make_engine(url, pool_size=2)
    rng = random.Random(seed)
    with engine.connect() as conn:
        lo, hi, n = conn.execute(select(func.min(schema.parcel.c.id), func.max(schema.parcel.c.id),
                                        func.count())).one()
        ids = [rng.randint(lo, hi) for _ in range(samples)]
        proposals = {}
        for pid in ids:
            b = register.get_parcel(conn, pid)["geom"].bounds
            # 10 x 14 m on a 10 x 20 m lot, touching the street side for half of them
            y0 = b[1] if rng.random() < 0.5 else b[1] + 6
            proposals[pid] = check.Proposal(footprint=box(b[0], y0, b[2], y0 + 14), floors=rng.choice((3, 4, 6)),
                                            height=rng.choice((11.5, 15.0, 23.0)), floor_elevation=2.3)
        for pid in ids[:20]:  # warm caches, plans and imports
            check.check_building(conn, pid, proposals[pid])
        base, full, fails = [], [], 0
        for pid in ids:
            t = time.perf_counter()
            register.get_parcel(conn, pid)
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            report = check.check_building(conn, pid, proposals[pid])
            full.append(time.perf_counter() - t)
            fails += report["overall"] == "fail"
        splits = _time_splits(conn, ids[: max(10, samples // 20)])
    http = _time_http(url, ids[: samples // 2], proposals)
    engine.dispose()
    b50, b95, bmean = _percentiles(base)
    f50, f95, fmean = _percentiles(full)
    print(f"parcels in database: {n:,}; checks timed: {samples} ({fails} with a failing rule)")
    print(f"baseline parcel lookup : p50 {b50:7.2f} ms   p95 {b95:7.2f} ms   mean {bmean:7.2f} ms")
    print(f"full compliance check  : p50 {f50:7.2f} ms   p95 {f95:7.2f} ms   mean {fmean:7.2f} ms")
    print(f"check / lookup (p50)   : {f50 / b50:.1f}x;  target p95 < 200 ms: {'met' if f95 < 200 else 'NOT met'}")
    h50, h95, hmean = _percentiles(http)
    print(f"full check over HTTP   : p50 {h50:7.2f} ms   p95 {h95:7.2f} ms   mean {hmean:7.2f} ms "
          f"(POST /api/checks, Flask test client, {len(http)} requests)")
    s50, s95, smean = _percentiles(splits)
    print(f"register split (rolled back, incl. parcels layer bump): p50 {s50:.0f} ms   p95 {s95:.0f} ms "
          f"over {len(splits)}")


def _time_http(url: str, ids: list[int], proposals: dict) -> list[float]:
    """The same checks through the HTTP API (parse, check, serialize), as a logged-in officer."""
    import tempfile

    from shapely.geometry import mapping

    from gisserver import create_app
    from gisserver.security import create_user

    app = create_app(Settings.from_env(database_url=url, var_dir=Path(tempfile.mkdtemp()), secret_key="bench"))
    engine = app.extensions["gisserver"].engine
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM app_user WHERE username = 'bench_officer'"))
        user_id = create_user(conn, "bench_officer", "officer")
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["user"] = {"id": user_id, "username": "bench_officer", "role": "officer", "agency_id": None}
    times = []
    for pid in ids:
        p = proposals[pid]
        body = {"parcel_id": pid, "footprint": mapping(p.footprint), "floors": p.floors, "height": p.height,
                "floor_elevation": p.floor_elevation}
        t = time.perf_counter()
        resp = client.post("/api/checks", json=body)
        times.append(time.perf_counter() - t)
        if resp.status_code != 200:
            raise SystemExit(f"check over HTTP failed: {resp.status_code} {resp.get_data(as_text=True)[:200]}")
    engine.dispose()
    return times


def _time_splits(conn, ids: list[int]) -> list[float]:
    """A split of random parcels across their depth, each in a transaction rolled back."""
    from shapely.geometry import LineString

    from licensing import register

    times = []
    conn.rollback()  # end the read transaction the lookups began
    for pid in ids:
        with conn.begin() as tx:
            b = register.get_parcel(conn, pid)["geom"].bounds
            t = time.perf_counter()
            register.split_parcel(conn, "bench", pid, LineString([(b[0] - 1, b[1] + 10), (b[2] + 1, b[1] + 10)]))
            times.append(time.perf_counter() - t)
            tx.rollback()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the scratch database")
    args = parser.parse_args()
    name = f"gisserver_bench_licensing_{args.parcels}"
    server = server_url()
    url = database_url_for(server, name)
    if not (args.keep and _exists(url)):
        drop_database(server, name)
        create_database(server, name)
        build(url, args.parcels)
    try:
        measure(url, args.samples)
    finally:
        if not args.keep:
            drop_database(server, name)


if __name__ == "__main__":
    main()
