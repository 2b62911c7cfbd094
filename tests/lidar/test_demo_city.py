"""The pipeline on the project's synthetic LiDAR of the Quận 8 demo (layers.demo_lidar), whose
true terrain and cadastral building heights are known: an independent check of DTM and LoD1
heights in the city CRS. (Real files remain the reference for classification accuracy.)
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from scipy import ndimage

from gisserver.crs import CITY_SRID
from layers import demo, demo_lidar
from lidar.buildings import building_heights, detect_buildings, points_in_footprints
from lidar.dtm import build_surfaces
from lidar.evaluate import detection_f1, ground_accuracy
from lidar.grid import GridSpec, sample_bilinear
from lidar.ground import SMRFParams, classify_ground
from lidar.io import open_cloud


@pytest.fixture(scope="module")
def demo_cloud(tmp_path_factory):
    data = demo.generate()
    ox, oy = data.origin
    bounds = (ox + 300, oy + 320, ox + 500, oy + 520)  # 200 m x 200 m across the canal
    pts = demo_lidar.synthesize(data, density=8.0, bounds=bounds)
    path = demo_lidar.write_las(pts, tmp_path_factory.mktemp("demo") / "q8.laz")
    cloud = open_cloud(path)
    assert cloud.crs.srid == CITY_SRID and cloud.crs.source == "wkt"
    pc = cloud.read_all(target_srid=CITY_SRID)
    cls = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns).classification
    grid = GridSpec.covering(bounds, 0.5)
    surfaces = build_surfaces(pc.x, pc.y, pc.z, cls, pc.return_number, grid)
    return data, bounds, pc, cls, surfaces


def test_dtm_against_the_true_terrain(demo_cloud):
    """Away from the canal (its bed is under water, the DTM holds the water level): bias and spread.

    Reached: bias -0.03 m, 95 % of cells within 0.06 m.
    """
    data, _, pc, _, s = demo_cloud
    g = s.grid
    xx, yy = np.meshgrid(g.x0 + (np.arange(g.width) + 0.5) * g.cell, g.y1 - (np.arange(g.height) + 0.5) * g.cell)
    truth = demo.terrain_height(xx.ravel(), yy.ravel(), data.origin).reshape(g.shape)
    water = np.zeros(g.shape, dtype=bool)
    rows, cols = g.cell_index(pc.x[pc.classification == 9], pc.y[pc.classification == 9])
    water[rows, cols] = True
    land = s.support & ~ndimage.binary_dilation(water, iterations=3)
    diff = (s.dtm - truth)[land]
    assert land.mean() > 0.6
    assert abs(diff.mean()) < 0.05 and np.percentile(np.abs(diff), 95) < 0.08


def test_lod1_heights_with_cadastral_footprints(demo_cloud):
    """Roof p70 over the cadastral footprints vs the true roof level (terrain at centroid + height).

    Reached: median |roof error| 0.02 m, median |height error| 0.07 m (issue target 0.30 m).
    """
    data, bounds, pc, cls, s = demo_cloud
    roof_err, height_err = [], []
    for b in data.tables["building"]:
        if not b["geom"].within(shapely.box(*bounds)):
            continue
        poly = max(shapely.get_parts(b["geom"]), key=lambda g: g.area)
        found = building_heights([poly], pc.x, pc.y, pc.z, cls, s.dtm, s.grid)
        if not found:
            continue
        c = poly.centroid
        true_roof = demo.terrain_height(np.array([c.x]), np.array([c.y]), data.origin)[0] + b["height"]
        roof_err.append(found[0].roof_p70 - true_roof)
        height_err.append(found[0].height - b["height"])
    assert len(roof_err) > 100
    assert np.median(np.abs(roof_err)) <= 0.05 and np.median(np.abs(height_err)) <= 0.30


def test_detection_and_ground_with_multipath_outliers_next_to_the_canal(demo_cloud):
    """Footprint detection F1 0.957 against the true class 6; ground TE 0.60 %, kappa 0.988.

    The cloud holds multipath outliers 2-5 m under the ground, some beside the canal: with a 5 m
    drop (Pingel's slope 5 per cell) they survive, flood the canal void with their level and make
    the banks a cliff (Type I > 5 %); a 1 m drop on measured cells removes them first.
    """
    _, _, pc, cls, s = demo_cloud
    g = s.grid
    buildings, _ = detect_buildings(pc.x, pc.y, pc.z, cls, pc.number_of_returns, s.dtm, g)
    above = pc.z - sample_bilinear(s.dtm, pc.x, pc.y, g.x0, g.y1, g.cell) > 2.0
    scored = pc.classification != 9
    f = detection_f1((points_in_footprints(buildings, pc.x, pc.y) & above)[scored],
                     (pc.classification == 6)[scored])
    assert f.f1 >= 0.95
    acc = ground_accuracy(cls == 2, pc.classification)
    assert acc.total_error < 0.008 and acc.type1 < 0.013 and acc.type2 < 0.001 and acc.kappa > 0.985
    legacy = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns,
                             params=SMRFParams(low_drop=5.0)).classification
    assert ground_accuracy(legacy == 2, pc.classification).type1 > 0.05
