"""Benchmark: 1,000,000 parcel polygons from a GeoPackage into the parcel table, all stages timed.

    .venv/bin/python bench/ingest_parcels.py [--n 1000000]

Generates (once, cached under var/bench/) a GeoPackage of jittered parcels in EPSG:4326 with VN
cadastral field names, creates a scratch database migrated to head, and times the full load
(read, reproject, validate, COPY, index, analyze, audit) through ``layers.ingest.load_layer``.
Baselines measured in the same run: a plain Arrow read of the file (the floor for reading) and
a plain COPY of the same rows into an unindexed table without generated columns (the floor for
writing). Target: the full load under 60 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gisserver import migrate  # noqa: E402
from gisserver.config import PROJECT_ROOT  # noqa: E402
from gisserver.crs import CITY_SRID, transformer  # noqa: E402
from gisserver.db import make_engine, scratch_database  # noqa: E402
from layers.catalogue import sync_canonical_layers  # noqa: E402
from layers.ingest import load_layer  # noqa: E402

TARGET_SECONDS = 60.0
FIELD_MAPPING = {
    "MaXa": "ward_code", "SoTo": "sheet_no", "SoThua": "parcel_no", "DienTichPL": "legal_area",
    "DiaChi": "address", "LoaiDat": "land_use", "ChuSuDung": "owner_name",
}
WARDS = ("26734", "26737", "26740", "26743", "26746", "26749", "26752", "26755")
LAND_USES = np.array(["ODT", "ODT", "ODT", "TMD", "CLN", "SKC", "DGT", "ONT"], dtype=object)
ORIGIN = (590_000.0, 1_180_000.0)  # city CRS metres, south-west of the centre


def parcel_polygons(n: int, seed: int = 7) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` parcel polygons in the city CRS and their attributes (vectorised; ~1 s per million)."""
    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(n * 3)))
    idx = np.arange(n)
    col, row = idx % cols, idx // cols
    x0 = ORIGIN[0] + col * 6.0
    y0 = ORIGIN[1] + row * 20.0
    jitter = rng.uniform(-0.4, 0.4, size=(n, 5, 2))
    corners = np.array([[0, 0], [6, 0], [6, 10], [6, 20], [0, 20]], dtype=float)
    coords = corners[None, :, :] + jitter
    coords[:, :, 0] += x0[:, None]
    coords[:, :, 1] += y0[:, None]
    ring = np.concatenate([coords, coords[:, :1, :]], axis=1)
    polys = shapely.polygons(ring)
    sheet_size = 500.0
    sheet = (1 + ((y0 - ORIGIN[1]) // sheet_size) * 100 + (x0 - ORIGIN[0]) // sheet_size).astype(np.int32)
    ward = np.array(WARDS, dtype=object)[(sheet % len(WARDS))]
    order = np.lexsort((idx, sheet))
    parcel_no = np.empty(n, dtype=np.int32)
    sorted_sheet = sheet[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_sheet)) + 1]
    counts = np.diff(np.r_[starts, n])
    parcel_no[order] = np.arange(n) - np.repeat(starts, counts) + 1
    street = np.char.add("Số ", (idx % 400 + 1).astype(str)).astype(object)
    address = street + ", Đường Nguyễn Văn Cừ, Phường Bến Thành, Quận 1"
    attrs = {
        "MaXa": ward,
        "SoTo": sheet,
        "SoThua": parcel_no,
        "DienTichPL": np.round(shapely.area(polys) + rng.normal(0, 0.5, n), 1),
        "DiaChi": address,
        "LoaiDat": LAND_USES[rng.integers(0, len(LAND_USES), n)],
        "ChuSuDung": np.char.add("Chủ sử dụng ", idx.astype(str)).astype(object),
    }
    return polys, attrs


def write_parcels_gpkg(path: Path, n: int, *, srid: int = 4326, seed: int = 7) -> Path:
    """Write ``n`` parcels to a GeoPackage in ``srid`` (cached by the caller)."""
    import pyarrow as pa
    import pyogrio

    polys, attrs = parcel_polygons(n, seed)
    if srid != CITY_SRID:
        t = transformer(CITY_SRID, srid)
        polys = shapely.transform(polys, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    table = pa.table({**{k: pa.array(v) for k, v in attrs.items()}, "geom": pa.array(shapely.to_wkb(polys))})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.gpkg")
    tmp.unlink(missing_ok=True)
    pyogrio.write_arrow(table, tmp, layer="parcels", driver="GPKG", geometry_name="geom",
                        geometry_type="Polygon", crs=f"EPSG:{srid}")
    tmp.rename(path)
    return path


def _embedded_server() -> str:
    from gisserver.config import Settings
    from gisserver.pgcluster import cluster_from_settings

    cluster = cluster_from_settings(Settings.from_env())
    cluster.start()
    return cluster.url("postgres")


def _read_baseline(path: Path) -> tuple[float, int]:
    import pyogrio

    t0 = time.perf_counter()
    n = 0
    with pyogrio.raw.open_arrow(path, batch_size=65536, use_pyarrow=True) as (_, reader):
        for batch in reader:
            n += batch.num_rows
    return time.perf_counter() - t0, n


def _copy_baseline(engine) -> float:
    """COPY of the loaded rows (as text) into a plain table: the server's floor for writing them."""
    from sqlalchemy import text

    columns = "ward_code, sheet_no, parcel_no, legal_area, address, land_use, owner_name, geom"
    buf = io.BytesIO()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.copy_expert(f"COPY (SELECT {columns} FROM parcel) TO STDOUT", buf)
        buf.seek(0)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE copy_baseline (ward_code text, sheet_no int, parcel_no int, "
                              "legal_area float8, address text, land_use text, owner_name text, geom geometry)"))
        t0 = time.perf_counter()
        cur.copy_expert(f"COPY copy_baseline ({columns}) FROM STDIN", buf, size=1 << 20)
        raw.commit()
        elapsed = time.perf_counter() - t0
    finally:
        raw.close()
    return elapsed


def _backend_pid(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar()


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a local process, from /proc (the benchmark's own cluster)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _queryable(engine) -> tuple[int, float, str]:
    from sqlalchemy import text

    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM parcel")).scalar()
        point = "SRID=909210;POINT(590003 1180010)"
        t0 = time.perf_counter()
        for _ in range(100):
            conn.execute(text("SELECT id FROM parcel WHERE ST_Intersects(geom, ST_GeomFromEWKT(:p))"), {"p": point})
        per_query = (time.perf_counter() - t0) / 100
        plan = "\n".join(conn.execute(text(
            "EXPLAIN SELECT id FROM parcel WHERE ST_Intersects(geom, ST_GeomFromEWKT(:p))"), {"p": point}).scalars())
    return count, per_query, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of parcels")
    args = parser.parse_args()

    path = PROJECT_ROOT / "var" / "bench" / f"parcels_{args.n}.gpkg"
    if not path.exists():
        t0 = time.perf_counter()
        write_parcels_gpkg(path, args.n)
        print(f"generated {path} in {time.perf_counter() - t0:.1f} s")
    print(f"machine load average before the run: {os.getloadavg()[0]:.1f} (2 cores, shared)")
    print(f"input: {path.name}, {path.stat().st_size / 1e6:.0f} MB, {args.n:,} parcels in EPSG:4326")

    with scratch_database(_embedded_server(), "gisserver_bench") as url:
        _measure(path, url)


def _measure(path: Path, url: str) -> None:
    engine = make_engine(url, pool_size=1)  # one pooled connection: the load runs on the backend we watch
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            sync_canonical_layers(conn)
        read_s, n_read = _read_baseline(path)
        pid = _backend_pid(engine)
        db_cpu0, py_cpu0 = _process_cpu(pid), time.process_time()
        report = load_layer(engine, path, "parcels", actor="bench", mapping=FIELD_MAPPING)
        db_cpu, py_cpu = _process_cpu(pid) - db_cpu0, time.process_time() - py_cpu0
        same_backend = _backend_pid(engine) == pid
        copy_s = _copy_baseline(engine)
        count, per_query, plan = _queryable(engine)
    finally:
        engine.dispose()

    s = report.seconds
    total = s["total"]
    print(f"loaded {report.loaded:,} of {report.read:,} (repaired {report.repaired}, rejected {report.rejected}); "
          f"{count:,} rows queryable")
    print("stages (s):")
    print(f"  prepare: reproject+validate+map+encode (worker thread, wall) {s.get('prepare', 0):6.1f}")
    print(f"  read+prepare CPU time (worker thread)                       {s.get('read_prepare_cpu', 0):7.1f}")
    print(f"  read+prepare+COPY, overlapped (wall)                        {s['read_prepare_copy']:7.1f}")
    print(f"    of which COPY waited for prepared input                   {s.get('copy_waiting_for_input', 0):7.1f}")
    print(f"  rebuild indexes (2 GiST + unique btree)                     {s['index']:7.1f}")
    print(f"  bump version + ANALYZE                                      {s['analyze']:7.1f}")
    print(f"  total load                                                  {total:7.1f}   "
          f"({report.loaded / total:,.0f} features/s; target < {TARGET_SECONDS:.0f} s: "
          f"{'met' if total < TARGET_SECONDS else 'NOT met'})")
    print("baselines in this run (s):")
    print(f"  plain Arrow read of the GeoPackage ({n_read:,} features)        {read_s:7.1f}   "
          f"load/read = {total / read_s:.1f}x")
    print(f"  plain COPY of the same rows, no indexes/generated columns  {copy_s:7.1f}   "
          f"load/COPY = {total / copy_s:.1f}x")
    print("CPU work of the load (independent of other processes on the machine):")
    print(f"  Python process, all threads                                 {py_cpu:7.1f}")
    print(f"  PostgreSQL backend (COPY, generated columns, indexes)       {db_cpu:7.1f}"
          f"{'' if same_backend else '   (warning: the load used another backend)'}")
    print(f"  on an idle 2-core machine: between {max(py_cpu, db_cpu):.1f} s (full overlap) and "
          f"{py_cpu + db_cpu:.1f} s (none)")
    print(f"machine load average after the run: {os.getloadavg()[0]:.1f}")
    print(f"identify-at-point after the load: {per_query * 1000:.2f} ms/query; plan uses the GiST index: "
          f"{'ix_parcel_geom' in plan}")


if __name__ == "__main__":
    main()
