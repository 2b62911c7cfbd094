"""Building footprints, heights, LoD1 CityJSON/glTF export on the AHN3 Delft crop."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon

from lidar.buildings import building_heights, detect_buildings, points_in_footprints, regularize
from lidar.cityjson import to_cityjson, write_3dtiles, write_cityjson, write_glb
from lidar.dtm import build_surfaces
from lidar.evaluate import detection_f1
from lidar.grid import GridSpec, sample_bilinear
from lidar.ground import classify_ground


@pytest.fixture(scope="module")
def delft_buildings(ahn3_points):
    pc = ahn3_points
    cls = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns).classification
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 0.5)
    surfaces = build_surfaces(pc.x, pc.y, pc.z, cls, pc.return_number, grid)
    buildings, mask = detect_buildings(pc.x, pc.y, pc.z, cls, pc.number_of_returns, surfaces.dtm, grid)
    return buildings, mask, surfaces, cls


def test_building_detection_f1_against_ahn3_class_6(delft_buildings, ahn3_points):
    """Per point: inside a detected footprint and > 2 m above our DTM vs vendor class 6.

    Reached: F1 0.930 (precision 0.979, recall 0.887) with regularised outlines; the raw roof
    mask reaches 0.945. Target of issue 3: 0.92.
    """
    buildings, mask, surfaces, _ = delft_buildings
    pc = ahn3_points
    grid = surfaces.grid
    above = pc.z - sample_bilinear(surfaces.dtm, pc.x, pc.y, grid.x0, grid.y1, grid.cell) > 2.0
    scored = pc.classification != 9
    reference = pc.classification == 6
    f = detection_f1((points_in_footprints(buildings, pc.x, pc.y) & above)[scored], reference[scored])
    assert f.f1 >= 0.925 and f.precision >= 0.97 and f.recall >= 0.88
    rows, cols = grid.cell_index(pc.x, pc.y)
    raw = detection_f1((mask[rows, cols] & above)[scored], reference[scored])
    assert raw.f1 >= 0.94
    assert all(b.area >= 20 for b in buildings) and len(buildings) == 7


def test_heights_against_vendor_classes(delft_buildings, ahn3_points):
    """LoD1 heights vs the same footprints measured on vendor classes (class 6 roofs, vendor-ground DTM).

    Not independent survey heights (none are available offline): this measures what our ground
    and roof selection change. Reached: median |error| 0.05 m on (p70 - p10) heights.
    """
    buildings, _, surfaces, _ = delft_buildings
    pc = ahn3_points
    # gridded like ours: no water level in the canal (a footprint edge over the quay holds water cells)
    vendor = build_surfaces(pc.x, pc.y, pc.z, pc.classification, pc.return_number, surfaces.grid, water_classes=())
    roof = pc.classification == 6
    ref = building_heights([b.footprint for b in buildings], pc.x[roof], pc.y[roof], pc.z[roof],
                           pc.classification[roof], vendor.dtm, surfaces.grid)
    assert len(ref) == len(buildings)
    errors = np.array([b.height - r.height for b, r in zip(buildings, ref, strict=True)])
    assert np.median(np.abs(errors)) <= 0.10
    ground = np.array([b.ground_p10 - r.ground_p10 for b, r in zip(buildings, ref, strict=True)])
    assert np.max(np.abs(ground)) < 0.15 and np.median(np.abs(ground)) < 0.01
    for b in buildings:
        assert b.ground_p10 < b.roof_p50 <= b.roof_p70 <= b.roof_p90
        assert 1 <= b.floors <= 5 and 4 < b.height < 14  # Delft: 2-4 storey houses


def test_regularisation_squares_a_staircase_outline():
    # a 20 x 12 m rectangle rotated by 30 degrees, as a 0.5 m raster staircase would trace it
    angle = np.radians(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[0, 0], [20, 0], [20, 12], [0, 12]]) @ rot.T
    xs = np.arange(-10, 25, 0.5)
    ys = np.arange(-2, 25, 0.5)
    rect = Polygon(corners)
    from shapely.geometry import box
    from shapely.ops import unary_union

    cells = [box(x, y, x + 0.5, y + 0.5) for x in xs for y in ys if rect.contains(box(x, y, x + 0.5, y + 0.5).centroid)]
    stair = unary_union(cells)
    assert len(stair.exterior.coords) > 60
    reg = regularize(stair, 1.0, 15.0)
    assert len(reg.exterior.coords) - 1 <= 6
    assert abs(reg.area - rect.area) < 0.05 * rect.area
    assert reg.symmetric_difference(rect).area < 0.1 * rect.area


def _check_closed_solid(boundaries, vertices):
    """Every directed edge of a closed, outward-oriented shell appears exactly once, its reverse once."""
    shell = boundaries[0]
    edges = Counter()
    for surface in shell:
        for ring in surface:
            for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
                edges[(a, b)] += 1
    assert all(n == 1 for n in edges.values())
    assert all(edges[(b, a)] == 1 for a, b in edges)
    # divergence theorem: signed volume from the oriented outer surfaces is positive
    v = np.asarray(vertices, dtype=float)
    volume = 0.0
    for surface in shell:
        ring = surface[0]
        p0 = v[ring[0]]
        for i in range(1, len(ring) - 1):
            volume += np.dot(p0, np.cross(v[ring[i]], v[ring[i + 1]])) / 6.0
        for hole in surface[1:]:
            q0 = v[hole[0]]
            for i in range(1, len(hole) - 1):
                volume += np.dot(q0, np.cross(v[hole[i]], v[hole[i + 1]])) / 6.0
    return volume


def test_cityjson_lod1_is_closed_and_loads_in_cjio(delft_buildings, tmp_path):
    buildings, _, _, _ = delft_buildings
    doc = to_cityjson(buildings, 28992, lidar_date="2014-03-04")
    assert doc["type"] == "CityJSON" and doc["version"] == "2.0"
    assert doc["metadata"]["referenceSystem"].endswith("/EPSG/0/28992")
    assert len(doc["CityObjects"]) == len(buildings)
    scale = doc["transform"]["scale"][0]
    for (oid, obj), b in zip(doc["CityObjects"].items(), buildings, strict=True):
        geom = obj["geometry"][0]
        assert obj["type"] == "Building" and geom["type"] == "Solid" and geom["lod"] == "1"
        assert obj["attributes"]["storeysAboveGround"] == b.floors
        volume = _check_closed_solid(geom["boundaries"], doc["vertices"]) * scale**3
        assert volume == pytest.approx(b.footprint.area * b.height, rel=0.01), oid
    path = write_cityjson(tmp_path / "delft.city.json", buildings, 28992)
    # cjio parses it (its schema validator needs cjvalpy, which has no wheel here)
    out = subprocess.run([str(Path(sys.executable).with_name("cjio")), str(path), "info"], capture_output=True,
                         text=True, check=True).stdout
    assert "CityJSON version = 2.0" in out and f"Building ({len(buildings)})" in out and "EPSG = 28992" in out


def test_glb_export(delft_buildings, tmp_path):
    buildings, _, _, _ = delft_buildings
    path, origin = write_glb(tmp_path / "delft.glb", buildings)
    data = path.read_bytes()
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2 and length == len(data) and length % 4 == 0
    json_len, kind = struct.unpack("<I4s", data[12:20])
    gltf = json.loads(data[20:20 + json_len])
    assert kind == b"JSON" and gltf["asset"]["version"] == "2.0"
    count = gltf["accessors"][0]["count"]
    assert count % 3 == 0 and count > 100
    bin_len, bin_kind = struct.unpack("<I4s", data[20 + json_len:28 + json_len])
    assert bin_kind == b"BIN\0" and bin_len >= count * 24
    assert 84_990 < origin[0] < 85_010 and gltf["accessors"][0]["max"][1] == pytest.approx(
        max(b.roof_p70 for b in buildings) - origin[2], abs=1e-3)


def test_3dtiles_tileset_places_the_model_on_the_ellipsoid(delft_buildings, tmp_path):
    from pyproj import Transformer

    buildings, _, _, _ = delft_buildings
    path = write_3dtiles(tmp_path / "tiles", buildings, 28992)
    tileset = json.loads(path.read_text())
    root = tileset["root"]
    assert tileset["asset"]["version"] == "1.1" and root["content"]["uri"] == "buildings.glb"
    assert (tmp_path / "tiles" / "buildings.glb").stat().st_size > 1000
    west, south, east, north, hmin, hmax = root["boundingVolume"]["region"]
    lon, lat = Transformer.from_crs("EPSG:28992", "EPSG:4326", always_xy=True).transform(85_036.0, 447_526.0)
    assert west < np.radians(lon) < east and south < np.radians(lat) < north and hmin < hmax
    m = np.array(root["transform"]).reshape(4, 4).T  # column-major
    assert np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)  # a rotation
    assert 6.36e6 < np.linalg.norm(m[:3, 3]) < 6.40e6  # origin on the Earth's surface
