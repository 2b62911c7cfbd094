"""LiDAR pipeline benchmark: bare chunked read vs end to end, and a side by side with WhiteboxTools.

    .venv/bin/python bench/lidar_pipeline.py [--replicate 3] [--skip-whitebox] [--tiled] [--backends]

Input: the AHN3 Delft crop (../shared/data/lidar/ahn3_delft_urban.laz), replicated n x n side by
side (translated copies, n=3 -> 1.9 M points) into a temporary LAS and LAZ so that timings are
not dominated by start-up. Prints points/s (wall clock and CPU time of this process: the machine
may be shared) for:

* bare chunked read (lidar.io, 1 M point chunks, coordinates scaled to float64);
* end to end on one core: read -> SMRF ground -> DTM (TIN) + DSM + nDSM -> COGs; the ratio to the
  bare read rate of the same run; with the default Delaunay (startinpy, MIT) and, with
  --backends, on LAS also with Qhull and Triangle (opt-in extra, when installed);
* optionally (--tiled) the same through run_tiled on a 2-worker Dask LocalCluster;
* side by side on the original tile with whitebox-workflows (improved_ground_point_filter +
  lidar_tin_gridding at 1 m): time and accuracy of both against the vendor classes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import laspy
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lidar.cog import write_cog  # noqa: E402
from lidar.dtm import DEFAULT_TIN_BACKEND, HYDRAULIC_DTM_TAGS, build_surfaces, hillshade  # noqa: E402
from lidar.evaluate import ground_accuracy  # noqa: E402
from lidar.grid import GridSpec  # noqa: E402
from lidar.ground import classify_ground  # noqa: E402
from lidar.io import PointChunk, open_cloud  # noqa: E402

AHN3 = ROOT.parent / "shared" / "data" / "lidar" / "ahn3_delft_urban.laz"
CRS = "EPSG:28992"


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def replicate(src: Path, n: int, out_dir: Path) -> tuple[Path, Path]:
    """n x n translated copies of the crop as one LAS and one LAZ file."""
    las = laspy.read(src)
    w = float(las.header.maxs[0] - las.header.mins[0]) + 1.0
    h = float(las.header.maxs[1] - las.header.mins[1]) + 1.0
    parts = []
    for i in range(n):
        for j in range(n):
            parts.append((i * w, j * h))
    header = laspy.LasHeader(point_format=las.header.point_format.id, version="1.2")
    header.scales = las.header.scales
    header.offsets = las.header.offsets
    out = laspy.LasData(header)
    x, y = np.asarray(las.x), np.asarray(las.y)
    out.x = np.concatenate([x + dx for dx, _ in parts])
    out.y = np.concatenate([y + dy for _, dy in parts])
    out.z = np.tile(np.asarray(las.z), len(parts))
    for name in ("intensity", "return_number", "number_of_returns", "classification", "gps_time"):
        setattr(out, name, np.tile(np.asarray(getattr(las, name)), len(parts)))
    las_path, laz_path = out_dir / "bench.las", out_dir / "bench.laz"
    out.write(las_path)
    out.write(laz_path)
    return las_path, laz_path


def bare_read(path: Path) -> tuple[int, Timer]:
    cloud = open_cloud(path, crs=CRS)
    n = 0
    with Timer() as t:
        for chunk in cloud.chunks(1_000_000):
            n += len(chunk)
    return n, t


def end_to_end(path: Path, out_dir: Path, resolution: float = 1.0,
               backend: str = DEFAULT_TIN_BACKEND) -> tuple[int, Timer, dict]:
    with Timer() as t:
        cloud = open_cloud(path, crs=CRS)
        pc = PointChunk.concatenate(list(cloud.chunks(1_000_000)))
        steps = {}
        t0 = time.perf_counter()
        cls = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns).classification
        steps["ground"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), resolution)
        s = build_surfaces(pc.x, pc.y, pc.z, cls, pc.return_number, grid, backend=backend)
        steps["dtm+dsm"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_cog(out_dir / "dtm.tif", s.dtm, grid, 28992, tags=HYDRAULIC_DTM_TAGS)
        write_cog(out_dir / "dsm.tif", s.dsm, grid, 28992)
        write_cog(out_dir / "ndsm.tif", s.ndsm, grid, 28992)
        write_cog(out_dir / "hillshade.tif", hillshade(s.dtm, resolution), grid, 28992, nodata=None)
        steps["cogs"] = time.perf_counter() - t0
    return len(pc), t, steps


def tin_only(path: Path, backends: list[str], resolution: float = 1.0) -> None:
    """Delaunay alone on the DTM's input (lowest vendor-ground point per cell), best of 3."""
    from lidar.dtm import _cell_points, tin_surface, triangulate

    pc = open_cloud(path, crs=CRS).read_all()
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), resolution)
    g = pc.classification == 2
    x, y, z = _cell_points(pc.x[g], pc.y[g], pc.z[g], grid, True)
    x, y = x - grid.x0, y - grid.y1
    print(f"\nDelaunay of the DTM points ({len(x):,} lowest ground points, one per {resolution:g} m cell), best of 3:")
    for backend in backends:
        best = best_cpu = np.inf
        for _ in range(3):
            with Timer() as t:
                tin = triangulate(x, y, z, backend)
            best, best_cpu = min(best, t.wall), min(best_cpu, t.cpu)
        print(f"  {backend:10s} {best * 1000:8.1f} ms wall {best_cpu * 1000:8.1f} ms cpu  "
              f"{len(x) / best_cpu / 1e6:6.2f} M pts/s cpu  {len(tin[2]):,} triangles")
    # the rasterised DTMs (before gap filling) against the default backend's
    ref = tin_surface(x + grid.x0, y + grid.y1, z, grid, backend=backends[0])
    for backend in backends[1:]:
        other = tin_surface(x + grid.x0, y + grid.y1, z, grid, backend=backend)
        both = np.isfinite(ref) & np.isfinite(other)
        d = np.abs(other - ref)[both]
        same = np.array_equal(np.isfinite(ref), np.isfinite(other))
        print(f"  TIN raster {backend} vs {backends[0]}: same support {same}, max |diff| {d.max():.2e} m, "
              f"mean {d.mean():.2e} m")


def tiled(path: Path, out_dir: Path) -> tuple[int, float]:
    from lidar.tiling import Source, run_tiled

    t0 = time.perf_counter()
    run = run_tiled([Source(str(path), CRS)], out_dir, tile_size=250, resolution=1.0, n_workers=2, processes=True)
    return sum(run.classes.values()), time.perf_counter() - t0


def _vendor_dtm_error(dtm: np.ndarray, grid: GridSpec, pc, vendor) -> tuple[float, float]:
    ground = pc.classification == 2
    rows, cols = grid.cell_index(pc.x[ground], pc.y[ground])
    measured = np.zeros(grid.shape, dtype=bool)
    measured[rows, cols] = True
    d = (dtm - vendor.dtm)[measured & np.isfinite(dtm)]
    return float(d.mean()), float(np.sqrt(np.mean(d**2)))


def side_by_side(work: Path) -> None:
    import rasterio
    import whitebox_workflows as wbw

    src = work / "delft.las"
    laspy.read(AHN3).write(src)
    pc = open_cloud(src, crs=CRS).read_all()
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 1.0)
    vendor = build_surfaces(pc.x, pc.y, pc.z, pc.classification, pc.return_number, grid)

    with Timer() as ours_t:
        pts = open_cloud(src, crs=CRS).read_all()
        cls = classify_ground(pts.x, pts.y, pts.z, pts.return_number, pts.number_of_returns).classification
        ours = build_surfaces(pts.x, pts.y, pts.z, cls, pts.return_number, grid)
        write_cog(work / "ours_dtm.tif", ours.dtm, grid, 28992)
    acc = ground_accuracy(cls == 2, pc.classification)
    bias, rmse = _vendor_dtm_error(ours.dtm, grid, pc, vendor)

    wbe = wbw.WbEnvironment()
    t0 = time.perf_counter()
    wbe.lidar.filtering_classification.improved_ground_point_filter(input=str(src), output=str(work / "wbe_g.las"))
    t1 = time.perf_counter()
    wbe.lidar.interpolation_gridding.lidar_tin_gridding(input=str(work / "wbe_g.las"), output=str(work / "wbe.tif"),
                                                        resolution=1.0)
    t2 = time.perf_counter()
    g = laspy.read(work / "wbe_g.las")
    # whitebox writes only the ground points (with its own scale/offset): match them back by mm coordinates
    raw = laspy.read(src)

    def key(a):
        mm = [np.round(np.asarray(v) * 1000).astype(np.int64) for v in (a.x, a.y, a.z)]
        return (mm[0] - 85_000_000) * 10**12 + (mm[1] - 447_000_000) * 10**5 + (mm[2] + 10_000)

    wbe_ground = np.isin(key(raw), key(g))
    wacc = ground_accuracy(wbe_ground, pc.classification)
    with rasterio.open(work / "wbe.tif") as ds:
        # resample whitebox's grid onto ours by cell centres
        xs = grid.x0 + (np.arange(grid.width) + 0.5) * grid.cell
        ys = grid.y1 - (np.arange(grid.height) + 0.5) * grid.cell
        xx, yy = np.meshgrid(xs, ys)
        vals = np.array([v[0] for v in ds.sample(zip(xx.ravel(), yy.ravel(), strict=True))], dtype=float)
        if ds.nodata is not None:
            vals[vals == ds.nodata] = np.nan
        wdtm = vals.reshape(grid.shape)
    wbias, wrmse = _vendor_dtm_error(wdtm, grid, pc, vendor)

    n = len(pc)
    print(f"\nside by side on {AHN3.name} ({n:,} points, 1 m DTM), accuracy vs vendor classes (water excluded)")
    print(f"{'':28s}{'time s':>9s}{'pts/s':>12s}{'TE %':>8s}{'T1 %':>8s}{'T2 %':>8s}{'kappa':>8s}"
          f"{'DTM bias m':>12s}{'DTM RMSE m':>12s}")
    print(f"{'ours (SMRF + TIN + COG)':28s}{ours_t.wall:9.2f}{n / ours_t.wall:12,.0f}{acc.total_error * 100:8.2f}"
          f"{acc.type1 * 100:8.2f}{acc.type2 * 100:8.2f}{acc.kappa:8.4f}{bias:12.3f}{rmse:12.3f}")
    print(f"{'whitebox (IGPF + TIN grid)':28s}{t2 - t0:9.2f}{n / (t2 - t0):12,.0f}{wacc.total_error * 100:8.2f}"
          f"{wacc.type1 * 100:8.2f}{wacc.type2 * 100:8.2f}{wacc.kappa:8.4f}{wbias:12.3f}{wrmse:12.3f}")
    print(f"  whitebox split: ground filter {t1 - t0:.2f} s, TIN gridding {t2 - t1:.2f} s; "
          f"ours is {(t2 - t0) / ours_t.wall:.1f}x faster")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicate", type=int, default=3, help="n x n copies of the crop (default 3)")
    ap.add_argument("--skip-whitebox", action="store_true")
    ap.add_argument("--tiled", action="store_true", help="also run the Dask tiled pipeline (2 workers)")
    ap.add_argument("--backends", action="store_true", help="end to end on LAS with every Delaunay backend")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        las_path, laz_path = replicate(AHN3, args.replicate, work)
        # warm-up: numba kernels are compiled (and cached) outside the timed runs
        end_to_end(AHN3, work)
        print(f"input: {AHN3.name} x {args.replicate}x{args.replicate}")
        backends = [DEFAULT_TIN_BACKEND]
        if args.backends:
            backends += ["qhull"] + (["triangle"] if importlib.util.find_spec("triangle") else [])
        for label, path in (("LAS", las_path), ("LAZ", laz_path)):
            n, read_t = bare_read(path)
            read_rate = n / read_t.wall
            print(f"\n{label} {n:,} points ({path.stat().st_size / 1e6:.0f} MB), load average {os.getloadavg()[0]:.2f}")
            print(f"  bare chunked read : {read_rate:12,.0f} pts/s wall  {n / max(read_t.cpu, 1e-9):12,.0f} pts/s cpu")
            for backend in backends if label == "LAS" else backends[:1]:
                n2, e2e_t, steps = end_to_end(path, work, backend=backend)
                assert n == n2
                e2e_rate = n / e2e_t.wall
                cpu_ratio = read_t.cpu / max(e2e_t.cpu, 1e-9)
                print(f"  end to end (1 core, TIN {backend}): {e2e_rate:11,.0f} pts/s wall  "
                      f"{n / max(e2e_t.cpu, 1e-9):12,.0f} pts/s cpu   ratio to bare read {e2e_rate / read_rate:.3f} "
                      f"wall, {cpu_ratio:.3f} cpu")
                print("    steps (wall s): " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
        if args.backends:
            tin_only(las_path, backends)
        if args.tiled:
            n, secs = tiled(laz_path, work / "tiled")
            print(f"\ntiled (Dask LocalCluster start-up included, 2 worker processes, 250 m tiles) LAZ: "
                  f"{n / secs:,.0f} pts/s wall")
        if not args.skip_whitebox:
            side_by_side(work)


if __name__ == "__main__":
    main()
