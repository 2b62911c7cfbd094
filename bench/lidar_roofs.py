"""LoD2 roofs: accuracy and cost on the synthetic Quận 8 demo and the real AHN3 Delft crop.

    .venv/bin/python bench/lidar_roofs.py

For each cloud: ground (SMRF) -> DTM -> footprints -> LoD1 heights -> LoD2 roofs. Prints the share
of buildings with LoD2, roof types, the RMS distance of the explained roof points to their planes,
the demo's roof error against the generator's true roof levels, the LoD1 height error against
independent heights where they exist, and the roof time as a ratio to the footprint detection
time measured in the same run (CPU seconds of this process: the machine may be shared).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from layers import demo, demo_lidar  # noqa: E402
from lidar.buildings import building_heights, detect_buildings  # noqa: E402
from lidar.dtm import build_surfaces  # noqa: E402
from lidar.grid import GridSpec  # noqa: E402
from lidar.ground import classify_ground  # noqa: E402
from lidar.io import open_cloud  # noqa: E402
from lidar.roofs import reconstruct_roofs, roof_statistics  # noqa: E402

AHN3 = ROOT.parent / "shared" / "data" / "lidar" / "ahn3_delft_urban.laz"


def cpu(fn, *args):
    t = time.process_time()
    out = fn(*args)
    return out, time.process_time() - t


def report(name, buildings, x, y, z, cls, detect_seconds):
    models, seconds = cpu(reconstruct_roofs, buildings, x, y, z, cls)
    s = roof_statistics(models)
    points = sum(m.point_count for m in models)
    print(f"{name}: {s.buildings} buildings, LoD2 {s.lod2} ({s.lod2_fraction:.0%}) {s.roof_types}")
    print(f"  plane RMSE {s.plane_rmse:.3f} m, median |residual| {s.surface_mae:.3f} m, explained {s.explained:.1%}")
    reasons = sorted({m.reason for m in models if not m.lod2})
    if reasons:
        print("  LoD1 kept:", "; ".join(reasons))
    ratio = f", {seconds / detect_seconds:.2f}x footprint detection ({detect_seconds:.2f} s)" if detect_seconds else ""
    print(f"  roofs {seconds:.2f} s CPU, {points / seconds / 1e3:.0f} k roof points/s{ratio}")
    return models


def true_level(data, geom, height):
    c = geom.centroid
    return demo.terrain_height(np.array([c.x]), np.array([c.y]), data.origin)[0] + height


def demo_run():
    survey = demo_lidar.demo_survey()
    data, pts, cls, grid, dtm = survey.data, survey.points, survey.classification, survey.grid, survey.surfaces.dtm
    x, y, z = pts["x"], pts["y"], pts["z"]
    truth = [(max(shapely.get_parts(b["geom"]), key=lambda g: g.area), b["height"]) for b in data.tables["building"]]
    cadastral = building_heights(survey.footprints, x, y, z, cls, dtm, grid)
    report("demo, cadastral footprints", cadastral, x, y, z, cls, None)
    (found, _), detect_seconds = cpu(detect_buildings, x, y, z, cls, pts["number_of_returns"], dtm, grid)
    report("demo, detected footprints", found, x, y, z, cls, detect_seconds)
    tree = shapely.STRtree([g for g, _ in truth])
    roof_err, height_err = [], []
    for b in found:
        x0, y0, x1, y1 = b.footprint.bounds
        xx, yy = np.meshgrid(np.arange(x0 + 0.25, x1, 0.5), np.arange(y0 + 0.25, y1, 0.5))
        hits = tree.query(b.footprint, predicate="intersects")
        for i in hits:
            geom, height = truth[i]
            inside = shapely.contains_xy(geom.buffer(-0.5), xx, yy) & shapely.contains_xy(b.footprint, xx, yy)
            if b.roof.lod2 and inside.any():
                roof_err.append(b.roof.envelope(xx[inside], yy[inside]) - true_level(data, geom, height))
        best = max(hits, key=lambda i: truth[i][0].intersection(b.footprint).area, default=None)
        if best is not None and truth[best][0].intersection(b.footprint).area > 0.8 * b.area:
            height_err.append(b.height - truth[best][1])
    roof_err = np.abs(np.concatenate(roof_err))
    print(f"  LoD2 roof vs true roof level (0.5 m samples, {roof_err.size}): median {np.median(roof_err):.3f} m,"
          f" p95 {np.percentile(roof_err, 95):.3f} m, p99 {np.percentile(roof_err, 99):.3f} m")
    print(f"  LoD1 height (p70 - p10) vs true height, {len(height_err)} one-to-one matches:"
          f" median |error| {np.median(np.abs(height_err)):.3f} m")


def delft_run():
    pc = open_cloud(AHN3, crs="EPSG:28992", vertical_datum="NAP").read_all()
    cls = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns).classification
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 0.5)
    surfaces = build_surfaces(pc.x, pc.y, pc.z, cls, pc.return_number, grid)
    (found, _), detect_seconds = cpu(detect_buildings, pc.x, pc.y, pc.z, cls, pc.number_of_returns,
                                     surfaces.dtm, grid)
    models = report("AHN3 Delft, detected footprints", found, pc.x, pc.y, pc.z, cls, detect_seconds)
    for b, m in zip(found, models, strict=True):
        print(f"    {b.area:7.0f} m2 {m.point_count:6d} pts: {m.reason} (explained {m.explained:.0%})")
    # the roof points of the LoD2 buildings against the vendor's building class (independent labels)
    vendor = build_surfaces(pc.x, pc.y, pc.z, pc.classification, pc.return_number, grid)
    roof = pc.classification == 6
    ref = building_heights([b.footprint for b in found], pc.x[roof], pc.y[roof], pc.z[roof],
                           pc.classification[roof], vendor.dtm, grid)
    diff = np.array([b.height - r.height for b, r in zip(found, ref, strict=True)])
    print(f"  LoD1 height vs the same footprints on vendor classes: median |diff| {np.median(np.abs(diff)):.3f} m")


if __name__ == "__main__":
    import os

    print(f"load average {os.getloadavg()[0]:.2f}")
    demo_run()
    delft_run()
