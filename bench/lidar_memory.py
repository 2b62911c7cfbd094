"""Peak memory of the streaming LiDAR path on a large LAS file.

    .venv/bin/python bench/lidar_memory.py [--gb 2] [--replicate N] [--tile-size 250] [--per-tile]

Writes the AHN3 Delft crop replicated n x n into a temporary LAS under /tmp (``--gb 2``: the
smallest n giving >= 2 GB, n=19: 75 M points; ``--replicate 9``: 17 M points, ~470 MB), then in a
fresh child process each: (1) ``summarize`` (one chunked pass), (2) the tiled pipeline run
sequentially in-process (retile + every tile + mosaic + COGs, no Dask; ``--per-tile``: per-tile
COGs and VRT mosaics, the city-scale mode). Prints file size, points, wall time and the child's
peak RSS (getrusage ru_maxrss): memory must stay bounded by the chunk and tile sizes, not by the
file size (issue 3: a 2 GB LAS with < 2 GB RSS). The temporary file is deleted at the end.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import laspy
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AHN3 = ROOT.parent / "shared" / "data" / "lidar" / "ahn3_delft_urban.laz"
CRS = "EPSG:28992"


def write_replicated(path: Path, n: int) -> int:
    """Append n x n translated copies of the crop to a LAS file, one copy at a time."""
    las = laspy.read(AHN3)
    w = float(las.header.maxs[0] - las.header.mins[0]) + 1.0
    h = float(las.header.maxs[1] - las.header.mins[1]) + 1.0
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = las.header.scales
    header.offsets = las.header.offsets
    total = 0
    with laspy.open(path, mode="w", header=header) as writer:
        for i in range(n):
            for j in range(n):
                rec = laspy.ScaleAwarePointRecord.zeros(len(las.points), header=header)
                rec.x = np.asarray(las.x) + i * w
                rec.y = np.asarray(las.y) + j * h
                rec.z = np.asarray(las.z)
                for name in ("intensity", "return_number", "number_of_returns", "classification"):
                    rec[name] = np.asarray(getattr(las, name))
                writer.write_points(rec)
                total += len(rec)
    return total


def _summarize(path, queue):
    from lidar.io import summarize

    t = time.perf_counter()
    s = summarize(path, crs=CRS)
    queue.put((s.point_count, time.perf_counter() - t, _cpu(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def _tiled(path, outdir, tile_size, per_tile, queue):
    from lidar.grid import GridSpec
    from lidar.ground import SMRFParams
    from lidar.tiling import Source, TiledRun, TileScheme, mosaic, process_tile, retile, write_products, write_vrts

    t = time.perf_counter()
    params = SMRFParams()
    scheme = TileScheme(tile_size, params.buffer)
    work = Path(outdir) / ".tiles"
    files, bounds, srid, info = retile([Source(str(path), CRS)], scheme, work, target_srid=None)
    tile_cogs = {"dir": str(Path(outdir) / "tiles"), "srid": srid} if per_tile else None
    results = []
    for key, f in sorted(files.items()):
        results.append(process_tile(str(f), key, scheme, params, 1.0, str(work), tile_cogs))
        os.remove(f)  # spill files are read once
    grid = GridSpec.covering(bounds, 1.0)
    if per_tile:
        write_vrts(TiledRun(grid, srid, None, results, info, None), Path(outdir))
    else:
        write_products(TiledRun(grid, srid, mosaic(results, grid), results, info, None), Path(outdir))
    points = sum(r.points for r in results)
    queue.put((points, time.perf_counter() - t, _cpu(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def _cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _child(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.0, help="size of the generated LAS (default 2 GB)")
    ap.add_argument("--replicate", type=int, help="n x n copies instead of --gb")
    ap.add_argument("--tile-size", type=float, default=250.0)
    ap.add_argument("--per-tile", action="store_true", help="per-tile COGs + VRT mosaics (city mode)")
    args = ap.parse_args(argv)
    # 28 bytes per point (format 1) and 208 432 points per copy
    n_copies = args.replicate or math.ceil(math.sqrt(args.gb * 1e9 / (28 * 208_432)))
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = Path(tmp) / "big.las"
        n = write_replicated(path, n_copies)
        size_mb = path.stat().st_size / 1e6
        print(f"{path.name}: {n_copies}x{n_copies} copies, {n:,} points, {size_mb:,.0f} MB; "
              f"load average {os.getloadavg()[0]:.2f}")
        pts, secs, cpu, rss = _child(_summarize, str(path))
        print(f"summarize (chunked pass): {pts:,} points in {secs:.1f} s wall, {cpu:.1f} s CPU, "
              f"peak RSS {rss / 1024:,.0f} MB")
        pts, secs, cpu, rss = _child(_tiled, str(path), tmp, args.tile_size, args.per_tile)
        mode = "per-tile COGs + VRT" if args.per_tile else "in-memory mosaic"
        print(f"tiled pipeline ({mode}), {args.tile_size:.0f} m tiles, sequential: {pts:,} points in {secs:.1f} s "
              f"({pts / secs:,.0f} pts/s wall; {cpu:.1f} s CPU, {pts / cpu:,.0f} pts/s CPU), "
              f"peak RSS {rss / 1024:,.0f} MB; load average {os.getloadavg()[0]:.2f}")
    print(f"temporary file deleted: {not path.exists()}")


if __name__ == "__main__":
    main()
