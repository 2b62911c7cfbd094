"""LiDAR over HTTP: what the ingest job and the 3D exports cost, against baselines of the same run.

    .venv/bin/python bench/lidar_http.py [--replicate 2] [--requests 30]

The real AHN3 Delft crop (208 432 points) moved into Quận 8 (as the tests do), optionally
replicated N x N, written as LAZ. In a scratch database (embedded cluster or TEST_DATABASE_URL's
server), served over real HTTP by a threaded werkzeug server on 127.0.0.1:

1. baseline: ``run_tiled`` alone on the file (the raster part of the job), same settings;
2. upload: POST /api/lidar/files (multipart streamed to disk + pre-flight), wall time;
3. job: ``lidar.jobs.run_ingest_job`` (validating pass, tiled run, buildings, one transaction);
   printed as points/s and as a ratio to the baseline (the cost of validation + buildings +
   registration on top of the rasters);
4. exports over HTTP: CityJSON and GLB of the whole area, one building's CityJSON, the tileset:
   requests/s, against GET /health (the bare server round trip) measured in the same run.

Tiles run in-process (one thread) so the figures are per core and comparable between phases.
Peak RSS of the baseline and of the job: the process's high-water mark (VmHWM), reset before each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_db import server_url  # noqa: E402

from gisserver.config import Settings  # noqa: E402
from gisserver.db import make_engine, scratch_database  # noqa: E402

AHN3 = ROOT.parent / "shared" / "data" / "lidar" / "ahn3_delft_urban.laz"
SHIFT = (596_000.0 - 85_000.0, 1_186_000.0 - 447_400.0)  # tests/lidar/conftest.py RELOCATE


def relocated_laz(out: Path, replicate: int) -> tuple[Path, int]:
    """The AHN3 crop in Quận 8 (EPSG:9210 GeoTIFF key), replicated ``replicate`` x ``replicate``."""
    import laspy
    import numpy as np
    from laspy.vlrs.known import GeoKeyDirectoryVlr, GeoKeyEntryStruct

    las = laspy.read(AHN3)
    x, y = np.asarray(las.x) + SHIFT[0], np.asarray(las.y) + SHIFT[1]
    w, h = float(np.ptp(x)) + 1.0, float(np.ptp(y)) + 1.0
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = las.header.scales
    header.offsets = np.array([SHIFT[0] + 85_000.0, SHIFT[1] + 447_000.0, 0.0])
    geo = GeoKeyDirectoryVlr()
    geo.geo_keys_header.number_of_keys = 1
    geo.geo_keys = [GeoKeyEntryStruct(3072, 0, 1, 9210)]
    header.vlrs.append(geo)
    n = len(x)
    data = laspy.LasData(header)
    data.points = laspy.ScaleAwarePointRecord.zeros(n * replicate * replicate, header=header)
    xs, ys = [], []
    for i in range(replicate):
        for j in range(replicate):
            xs.append(x + i * w)
            ys.append(y + j * h)
    data.x, data.y = np.concatenate(xs), np.concatenate(ys)
    data.z = np.tile(np.asarray(las.z), replicate * replicate)
    for name in ("intensity", "return_number", "number_of_returns", "classification"):
        setattr(data, name, np.tile(np.asarray(getattr(las, name)), replicate * replicate))
    path = out / "ahn3_q8.laz"
    data.write(path)
    return path, n * replicate * replicate


def serve(app):
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):  # one line per request would dominate the output
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def reset_peak_rss() -> None:
    """Start a new high-water mark of this process's RSS (Linux: 5 to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rate(session, url: str, n: int, headers=None) -> float:
    """Requests per second for ``n`` sequential GETs (each must answer 200)."""
    t0 = time.perf_counter()
    for _ in range(n):
        r = session.get(url, headers=headers, timeout=120)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicate", type=int, default=2, help="N x N copies of the AHN3 crop")
    parser.add_argument("--requests", type=int, default=30, help="requests per export measurement")
    args = parser.parse_args()

    import requests

    from gisserver import create_app, migrate
    from gisserver.security import create_token, create_user
    from layers.catalogue import sync_canonical_layers
    from lidar import jobs
    from lidar.tiling import Source, run_tiled

    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-lidar-http-") as tmp, \
            scratch_database(server_url(), "bench_lidar_http") as url:
        tmp = Path(tmp)
        laz, points = relocated_laz(tmp, args.replicate)
        print(f"file: {laz.stat().st_size / 1e6:.1f} MB LAZ, {points} points")
        engine = make_engine(url, pool_size=4)
        migrate.upgrade(engine)
        with engine.begin() as conn:
            sync_canonical_layers(conn)
            token = create_token(conn, create_user(conn, "bench_planner", "planner"), "bench")
        app = create_app(Settings.from_env(database_url=url, var_dir=tmp / "var", token_cache_seconds=60))
        server, base = serve(app)
        headers = {"Authorization": f"Bearer {token}"}
        session = requests.Session()
        try:
            reset_peak_rss()
            t0 = time.perf_counter()
            run_tiled([Source(str(laz))], tmp / "baseline", tile_size=500.0, resolution=1.0, target_srid=None,
                      n_workers=1, processes=False)
            baseline = time.perf_counter() - t0
            print(f"baseline run_tiled (rasters only): {baseline:.2f} s, {points / baseline / 1e6:.2f} M pts/s, "
                  f"peak RSS {peak_rss_mb():.0f} MB")

            # warm the server (first connection, token check, imports) before timing the upload
            assert session.get(f"{base}/api/lidar/files", headers=headers, timeout=60).status_code == 200
            t0 = time.perf_counter()
            with open(laz, "rb") as fh:
                resp = session.post(f"{base}/api/lidar/files", headers=headers, timeout=600,
                                    files={"file": (laz.name, fh, "application/octet-stream")})
            upload = time.perf_counter() - t0
            assert resp.status_code == 202, resp.text
            print(f"upload + pre-flight over HTTP: {upload:.2f} s ({laz.stat().st_size / upload / 1e6:.1f} MB/s)")

            reset_peak_rss()
            t0 = time.perf_counter()
            result = jobs.run_ingest_job(engine, resp.json()["id"], tmp / "var" / "lidar" / "jobs",
                                         n_workers=1, processes=False)
            job = time.perf_counter() - t0
            print(f"ingest job: {job:.2f} s, {points / job / 1e6:.2f} M pts/s; ratio job / baseline = "
                  f"{job / baseline:.2f}; {len(result['buildings']['ids'])} buildings, {result['tiles']} tiles, "
                  f"peak RSS {peak_rss_mb():.0f} MB")

            lon0, lat0, lon1, lat1 = 106.0, 10.0, 107.5, 11.5  # the whole district
            bbox = f"bbox={lon0},{lat0},{lon1},{lat1}"
            one = result["buildings"]["ids"][0]
            n = args.requests
            health = rate(session, f"{base}/health", n)
            print(f"GET /health: {health:.0f} req/s (bare server round trip)")
            for name, path in (("CityJSON, whole area", f"/api/lidar/export/cityjson?{bbox}"),
                               ("GLB, whole area", f"/api/lidar/export/glb?{bbox}"),
                               ("tileset.json, whole area", f"/api/lidar/3dtiles/tileset.json?{bbox}"),
                               ("CityJSON, one building", f"/api/lidar/buildings/{one}/cityjson")):
                r = rate(session, base + path, n)
                print(f"{name}: {r:.1f} req/s; ratio to /health {r / health:.3f}")
        finally:
            server.shutdown()
            app.extensions["gisserver"].engine.dispose()
            engine.dispose()
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
