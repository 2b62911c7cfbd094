"""LoD2 roofs (lidar.roofs): plane fit, roof model, watertight LoD2 solids, CityJSON and GLB.

Three clouds: a deterministic test city built here with known flat, shed, gable and hip roofs, an
L-shaped cross gable (a max of two lower envelopes), a block with a low annex (a vertical step:
two building parts) and a building hidden under tree crowns (no plane: it must fall back to
LoD1); the project's synthetic Quận 8 demo (flat roofs at their cadastral heights); and the real
AHN3 Delft crop.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely import affinity
from shapely.geometry import Polygon, box

from lidar.buildings import Building, building_heights, detect_buildings
from lidar.cityjson import to_cityjson, write_cityjson, write_glb
from lidar.dtm import build_surfaces
from lidar.grid import GridSpec
from lidar.ground import classify_ground
from lidar.roof_shell import lod2_shells, lod2_surfaces
from lidar.roofs import reconstruct_roofs, roof_statistics

KINDS = ("flat", "shed", "gable", "hip")


def _roof_above_eaves(kind, u, v, length, width, pitch):
    """Roof height above the eaves in the building's frame (u along the ridge, v across)."""
    if kind == "flat":
        return np.zeros_like(u)
    if kind == "shed":
        return pitch * (v + width / 2)
    if kind == "gable":
        return pitch * (width / 2 - np.abs(v))
    if kind == "hip":
        return pitch * np.minimum(width / 2 - np.abs(v), length / 2 - np.abs(u))
    raise ValueError(kind)


class TrueBuilding:
    def __init__(self, kind, centre, length, width, angle, eave, pitch, ground):
        self.kind, self.centre, self.length, self.width = kind, centre, length, width
        self.angle, self.eave, self.pitch, self.ground = math.radians(angle), eave, pitch, ground
        rect = box(-length / 2, -width / 2, length / 2, width / 2)
        self.footprint = affinity.translate(affinity.rotate(rect, angle, origin=(0, 0)), *centre)

    def roof(self, x, y):
        dx, dy = np.asarray(x) - self.centre[0], np.asarray(y) - self.centre[1]
        u = dx * math.cos(self.angle) + dy * math.sin(self.angle)
        v = -dx * math.sin(self.angle) + dy * math.cos(self.angle)
        return self.ground + self.eave + _roof_above_eaves(self.kind, u, v, self.length, self.width, self.pitch)

    def volume(self, step=0.05):
        x0, y0, x1, y1 = self.footprint.bounds
        xx, yy = np.meshgrid(np.arange(x0 + step / 2, x1, step), np.arange(y0 + step / 2, y1, step))
        inside = shapely.contains_xy(self.footprint, xx, yy)
        return float(np.sum(self.roof(xx[inside], yy[inside]) - self.ground) * step * step)


def _cross_gable(centre, ground):
    """An L of two gabled wings (ridges 9 m above ground): valleys, the max of two gable envelopes."""
    cx, cy = centre
    wing_a = box(cx - 10, cy - 4, cx + 10, cy + 4)
    wing_b = box(cx + 2, cy - 4, cx + 10, cy + 14)
    footprint = shapely.union_all([wing_a, wing_b]).normalize()

    def roof(x, y):
        za = 9.0 - 0.6 * np.abs(y - cy)
        zb = 9.0 - 0.6 * np.abs(x - (cx + 6))
        in_a = shapely.contains_xy(wing_a, x, y)
        in_b = shapely.contains_xy(wing_b, x, y)
        return ground + np.where(in_a & in_b, np.maximum(za, zb), np.where(in_a, za, zb))

    return footprint, roof


def _stepped(centre, ground):
    """A 12 m flat block with a 4 m flat annex: a vertical step inside the footprint."""
    cx, cy = centre
    block, annex = box(cx - 8, cy - 6, cx + 2, cy + 6), box(cx + 2, cy - 6, cx + 10, cy + 6)

    def roof(x, y):
        return ground + np.where(shapely.contains_xy(block, x, y), 12.0, 4.0)

    return shapely.union_all([block, annex]).normalize(), roof


def _under_trees(centre, ground, rng):
    """Crowns over a 12 x 12 m building: heights anywhere between 5 and 12 m, no plane."""
    cx, cy = centre
    return box(cx - 6, cy - 6, cx + 6, cy + 6), lambda x, y: ground + rng.uniform(5, 12, len(x))


@pytest.fixture(scope="module")
def test_city():
    """12 rectangular buildings (3 of each roof kind, random size, orientation, pitch), a cross
    gable, a stepped block and a building under trees, ground points around, 10 pts/m2 with 3 cm noise, fixed seed."""
    rng = np.random.default_rng(3)
    truths = []
    for i in range(12):
        kind = KINDS[(i // 4 + i % 4) % 4]
        pitch = 0.0 if kind == "flat" else math.tan(math.radians(rng.uniform(8, 15) if kind == "shed"
                                                                 else rng.uniform(20, 40)))
        centre = (40.0 * (i % 4) + 20, 40.0 * (i // 4) + 20)
        truths.append(TrueBuilding(kind, centre, rng.uniform(12, 22), rng.uniform(8, 12), rng.uniform(0, 90),
                                   rng.uniform(5, 12), pitch, 1.0 + 0.005 * centre[0]))
    n = int(10.0 * 160 * 160)
    x, y = rng.uniform(0, 160, n), rng.uniform(0, 160, n)
    z = 1.0 + 0.005 * x + rng.normal(0, 0.03, n)
    cls = np.full(n, 2, dtype=np.uint8)
    for t in truths:
        inside = shapely.contains_xy(t.footprint, x, y)
        z[inside] = t.roof(x[inside], y[inside]) + rng.normal(0, 0.03, inside.sum())
        cls[inside] = 6
    buildings = [Building(t.footprint, t.ground, 0.0, 0.0, 0.0, 0) for t in truths]
    others = []
    for make, centre in ((_cross_gable, (40.0, 130.0)), (_stepped, (110.0, 135.0)),
                         (lambda c, g: _under_trees(c, g, rng), (145.0, 135.0))):
        footprint, roof = make(centre, 1.0 + 0.005 * centre[0])
        inside = shapely.contains_xy(footprint, x, y)
        z[inside] = roof(x[inside], y[inside]) + rng.normal(0, 0.03, inside.sum())
        cls[inside] = 6
        buildings.append(Building(footprint, 1.0 + 0.005 * centre[0], 0.0, 0.0, 0.0, 0))
        others.append(roof)
    models = reconstruct_roofs(buildings, x, y, z, cls)
    return truths, buildings, models, others


def test_simple_roofs_are_recovered(test_city):
    """Every flat, shed, gable and hip roof gets LoD2 of its kind; the model surface is within 5 cm of
    the true roof everywhere over the footprint; the fit RMSE is the 3 cm noise."""
    truths, buildings, models, _ = test_city
    for t, m in zip(truths, models, strict=False):
        assert m.lod2, (t.kind, m.reason)
        assert m.roof_type == t.kind
        assert len(m.planes) == {"flat": 1, "shed": 1, "gable": 2, "hip": 4}[t.kind]
        x0, y0, x1, y1 = t.footprint.bounds
        xx, yy = np.meshgrid(np.linspace(x0, x1, 80), np.linspace(y0, y1, 80))
        inside = shapely.contains_xy(t.footprint, xx, yy)
        error = m.envelope(xx[inside], yy[inside]) - t.roof(xx[inside], yy[inside])
        assert np.max(np.abs(error)) < 0.05, t.kind
        assert m.explained > 0.99 and 0.02 < m.plane_rmse < 0.035
        for p in m.planes:
            assert abs(p.slope_degrees - math.degrees(math.atan(t.pitch))) < 0.5
    stats = roof_statistics(models[:12])
    assert stats.lod2_fraction == 1.0 and stats.roof_types == {k: 3 for k in KINDS}
    assert stats.plane_rmse == pytest.approx(0.03, abs=0.004)


def test_cross_gable_steps_and_trees(test_city):
    """The cross gable is one continuous roof of two groups; the step splits the block into two
    parts (two closed shells); the building under trees has no roof plane and keeps LoD1."""
    _, buildings, models, (cross_roof, step_roof, _) = test_city
    cross, step, trees = models[-3:]
    assert cross.lod2 and cross.roof_type == "multi-part" and len(cross.planes) == 4
    assert sorted(len(g) for g in cross.groups) == [2, 2]
    fp = buildings[-3].footprint
    x0, y0, x1, y1 = fp.bounds
    xx, yy = np.meshgrid(np.linspace(x0, x1, 100), np.linspace(y0, y1, 100))
    inside = shapely.contains_xy(fp.buffer(-0.01), xx, yy)
    assert np.max(np.abs(cross.envelope(xx[inside], yy[inside]) - cross_roof(xx[inside], yy[inside]))) < 0.05
    roof_faces = [f for f, _ in cross.faces]
    # wing A runs through to wing B's far eave: each of its slopes shows on both sides of B's ridge
    assert len(roof_faces) == 6 and abs(sum(f.area for f in roof_faces) - fp.area) < 0.01
    assert step.lod2 and step.roof_type == "stepped" and len(step.parts) == 2
    with pytest.raises(ValueError, match="one shell per part"):
        lod2_surfaces(step, buildings[-2].ground_p10)
    assert sorted(round(p.area) for p, _ in step.parts) == [96, 120]
    for poly, part in step.parts:
        c = poly.representative_point()
        assert part.roof_type == "flat" and abs(part.envelope(c.x, c.y) - step_roof(c.x, c.y)) < 0.02
    assert not trees.lod2 and trees.faces == [] and trees.roof_type == "unknown"
    assert trees.reason == "no roof plane"
    assert buildings[-1].roof is trees


def _check_closed_shell(shell, vertices):
    """Each directed edge once and its reverse once (closed, consistently oriented); returns the volume."""
    edges = Counter()
    for surface in shell:
        for ring in surface:
            assert len(set(ring)) == len(ring) >= 3  # no repeated vertex (cjval's rule)
            for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
                edges[(a, b)] += 1
    assert all(n == 1 for n in edges.values())
    assert all(edges[(b, a)] == 1 for a, b in edges)
    v = np.asarray(vertices, dtype=float)
    volume = 0.0
    for surface in shell:
        for ring in surface:
            p0 = v[ring[0]]
            for i in range(1, len(ring) - 1):
                volume += np.dot(p0, np.cross(v[ring[i]], v[ring[i + 1]])) / 6.0
    return volume


def _planarity(ring_xyz) -> float:
    pts = np.asarray(ring_xyz, dtype=float)
    centred = pts - pts.mean(axis=0)
    return float(np.linalg.svd(centred, compute_uv=False)[-1] / math.sqrt(len(pts)))


def _lod2_shells(doc: dict, oid: str) -> list:
    """The LoD2 shells of a building: its own LoD2 Solid, or its BuildingParts' (a stepped roof)."""
    obj = doc["CityObjects"][oid]
    if len(obj["geometry"]) == 2:
        assert obj["geometry"][1]["type"] == "Solid" and "children" not in obj
        return [obj["geometry"][1]["boundaries"][0]]
    parts = [doc["CityObjects"][c] for c in obj.get("children", [])]
    assert all(p["type"] == "BuildingPart" and p["parents"] == [oid] for p in parts)
    assert all(len(p["geometry"]) == 1 and p["geometry"][0]["lod"] == "2.0" for p in parts)
    return [p["geometry"][0]["boundaries"][0] for p in parts]


def test_lod2_solids_are_closed_planar_and_hold_the_true_volume(test_city):
    truths, buildings, _, _ = test_city
    doc = to_cityjson(buildings, 9210)
    scale, translate = doc["transform"]["scale"][0], np.array(doc["transform"]["translate"])
    vertices = np.asarray(doc["vertices"], dtype=float) * scale + translate
    objects = [doc["CityObjects"][f"lidar-building-{i}"] for i in range(1, len(buildings) + 1)]
    for t, obj in zip(truths, objects, strict=False):
        lod1, lod2 = obj["geometry"]
        assert lod1["lod"] == "1" and lod2["lod"] == "2.0" and lod2["type"] == "Solid"
        shell = lod2["boundaries"][0]
        volume = _check_closed_shell(shell, vertices - vertices.min(axis=0))
        assert volume == pytest.approx(t.volume(), rel=0.01), t.kind
        kinds = [lod2["semantics"]["surfaces"][i]["type"] for i in lod2["semantics"]["values"][0]]
        assert len(kinds) == len(shell)
        assert set(kinds) == {"RoofSurface", "WallSurface", "GroundSurface"}
        for surface in shell:
            assert _planarity([vertices[i] for i in surface[0]]) < 0.002
        assert obj["attributes"]["lod2_status"] == "lod2" and obj["attributes"]["roof_type"] == t.kind
    cross_roof = test_city[3][0]
    x0, y0, x1, y1 = buildings[-3].footprint.bounds
    xx, yy = np.meshgrid(np.arange(x0 + 0.025, x1, 0.05), np.arange(y0 + 0.025, y1, 0.05))
    inside = shapely.contains_xy(buildings[-3].footprint, xx, yy)
    true_volume = np.sum(cross_roof(xx[inside], yy[inside]) - buildings[-3].ground_p10) * 0.05**2
    (cross,) = _lod2_shells(doc, "lidar-building-13")
    assert _check_closed_shell(cross, vertices - vertices.min(axis=0)) == pytest.approx(true_volume, rel=0.01)
    stepped = _lod2_shells(doc, "lidar-building-14")
    assert len(objects[-2]["geometry"]) == 1 and len(stepped) == 2  # LoD1 on the building, LoD2 on its parts
    volumes = [_check_closed_shell(shell, vertices - vertices.min(axis=0)) for shell in stepped]
    assert sorted(volumes) == [pytest.approx(8 * 12 * 4.0, rel=0.01), pytest.approx(10 * 12 * 12.0, rel=0.01)]
    assert doc["CityObjects"]["lidar-building-14-part-1"]["attributes"]["roof_type"] == "flat"
    fallback = objects[-1]
    assert len(fallback["geometry"]) == 1 and fallback["attributes"]["lod2_status"] == "no roof plane"


def test_lod2_ground_is_the_footprint_and_walls_stand_on_it(test_city):
    truths, buildings, _, _ = test_city
    for t, b in zip(truths, buildings, strict=False):
        surfaces = lod2_surfaces(b.roof, b.ground_p10)
        grounds = [rings for kind, rings in surfaces if kind == "GroundSurface"]
        assert len(grounds) == 1
        ground = Polygon([p[:2] for p in grounds[0][0]])
        assert ground.hausdorff_distance(t.footprint) < 0.002 and not ground.exterior.is_ccw  # snapped to 1 mm
        walls = [rings[0] for kind, rings in surfaces if kind == "WallSurface"]
        assert sum(math.dist(w[0][:2], w[1][:2]) for w in walls) == pytest.approx(t.footprint.length, rel=1e-4)
        assert all(w[0][2] == w[1][2] == b.ground_p10 and w[2][2] > w[1][2] + 4 for w in walls)


def test_cityjson_with_lod2_loads_in_cjio(test_city, tmp_path):
    _, buildings, _, _ = test_city
    path = write_cityjson(tmp_path / "roofs.city.json", buildings, 9210)
    cjio = str(Path(sys.executable).with_name("cjio"))
    out = subprocess.run([cjio, str(path), "info", "--long"], capture_output=True, text=True, check=True).stdout
    assert "CityJSON version = 2.0" in out and f"Building ({len(buildings)})" in out
    assert "LoD = ['1', '2.0']" in out
    assert "semantics surfaces = ['GroundSurface', 'RoofSurface', 'WallSurface']" in out
    # cjio keeps the LoD2 geometry alone and writes it back (its OBJ/glTF export would need the
    # non-free `triangle` package, an opt-in extra of this project, so it is not used here)
    lod2 = tmp_path / "roofs_lod2.city.json"
    subprocess.run([cjio, str(path), "lod_filter", "2.0", "save", str(lod2)],
                   capture_output=True, text=True, check=True)
    out = subprocess.run([cjio, str(lod2), "info", "--long"], capture_output=True, text=True, check=True).stdout
    assert "LoD = ['2.0']" in out and f"Building ({len(buildings)})" in out
    doc = json.loads(lod2.read_text())
    surfaces = [s for o in doc["CityObjects"].values() for g in o.get("geometry", [])
                for shell in g["boundaries"] for s in shell]
    assert len(surfaces) > 14 * 5


def test_glb_uses_lod2_when_present(test_city, tmp_path):
    truths, buildings, _, _ = test_city
    path, origin = write_glb(tmp_path / "roofs.glb", buildings[:12])
    data = path.read_bytes()
    json_len = struct.unpack("<I", data[12:16])[0]
    gltf = json.loads(data[20:20 + json_len])
    count = gltf["accessors"][0]["count"]
    positions = np.frombuffer(data[28 + json_len:28 + json_len + count * 12], dtype=np.float32).reshape(-1, 3)
    # the glTF top (y up) is the highest ridge, above every LoD1 (p70) top: LoD2 was exported
    ridge = max(b.roof.envelope(*np.asarray(t.footprint.exterior.coords).T).max() for t, b in
                zip(truths, buildings, strict=False))
    ridges = [t.roof(t.centre[0], t.centre[1]) for t in truths]
    assert positions[:, 1].max() + origin[2] == pytest.approx(max(ridges), abs=0.05)
    assert ridge <= max(ridges) + 0.05
    # closed mesh: total signed volume from the triangles equals the sum of the true volumes
    tris = positions.reshape(-1, 3, 3).astype(np.float64)
    volume = np.sum(np.einsum("ij,ij->i", tris[:, 0], np.cross(tris[:, 1], tris[:, 2]))) / 6.0
    assert volume == pytest.approx(sum(t.volume() for t in truths), rel=0.01)


# --- the synthetic Quận 8 demo (flat roofs) --------------------------------------------------------


@pytest.fixture(scope="module")
def demo_roofs():
    from layers.demo_lidar import demo_survey

    survey = demo_survey()
    pts, cls, surfaces = survey.points, survey.classification, survey.surfaces
    x, y, z = pts["x"], pts["y"], pts["z"]
    buildings = building_heights(survey.footprints, x, y, z, cls, surfaces.dtm, survey.grid)
    models = reconstruct_roofs(buildings, x, y, z, cls)
    return survey.data, pts, cls, surfaces, buildings, models


def test_demo_flat_roofs_get_lod2(demo_roofs):
    """Cadastral footprints of the demo, our own ground classes: every roof is one flat plane at the
    true level. Reached: LoD2 for 124 of 124, plane RMSE 0.040 m (the generator's roof noise is 4 cm),
    roof at the centroid within a median 0.02 m of the true level."""
    data, _, _, _, buildings, models = demo_roofs
    from layers import demo

    stats = roof_statistics(models)
    assert stats.buildings > 100 and stats.lod2_fraction >= 0.98 and set(stats.roof_types) == {"flat"}
    assert 0.035 < stats.plane_rmse < 0.045
    errors = []
    for b in buildings:
        if b.roof.lod2:
            c = b.footprint.centroid
            true_height = next(t["height"] for t in data.tables["building"]
                               if max(shapely.get_parts(t["geom"]), key=lambda g: g.area).equals(b.footprint))
            true_roof = demo.terrain_height(np.array([c.x]), np.array([c.y]), data.origin)[0] + true_height
            errors.append(b.roof.envelope(c.x, c.y) - true_roof)
    assert np.median(np.abs(errors)) < 0.03 and np.max(np.abs(errors)) < 0.1


def test_demo_detected_footprints_heights_and_stepped_roofs(demo_roofs):
    """*Detected* footprints (not the cadastre's): LoD1 heights vs the generator's true building
    heights where one true building covers the footprint (an independent reference), and LoD2 for
    all of them: touching row houses of different heights merge into one detected block, which the
    roof model splits at its steps into parts. Reached: median |height error| 0.076 m on 33 one-to-one
    matches; 47 of 47 LoD2 (34 flat, 13 stepped), plane RMSE 0.042 m; LoD2 roof vs true roof level
    at 0.5 m samples median 0.002 m, p99 0.045 m."""
    from layers import demo

    data, pts, cls, surfaces, _, _ = demo_roofs
    grid = surfaces.grid
    found, _ = detect_buildings(pts["x"], pts["y"], pts["z"], cls, pts["number_of_returns"], surfaces.dtm, grid)
    truth = [(max(shapely.get_parts(t["geom"]), key=lambda g: g.area), t["height"]) for t in data.tables["building"]]
    tree = shapely.STRtree([g for g, _ in truth])
    errors = []
    for b in found:
        hits = tree.query(b.footprint, predicate="intersects")
        best = max(hits, key=lambda i: truth[i][0].intersection(b.footprint).area, default=None)
        if best is not None and truth[best][0].intersection(b.footprint).area > 0.8 * b.area:
            errors.append(b.height - truth[best][1])
    # touching row houses merge into one detected block: only one-to-one matches are scored
    assert len(found) > 40 and len(errors) >= 30
    assert np.median(np.abs(errors)) <= 0.30
    stats = roof_statistics(reconstruct_roofs(found, pts["x"], pts["y"], pts["z"], cls))
    assert stats.lod2_fraction >= 0.95 and stats.roof_types.get("stepped", 0) >= 5
    assert set(stats.roof_types) <= {"flat", "stepped"} and stats.plane_rmse < 0.05
    doc = to_cityjson(found, 9210)
    vertices = np.asarray(doc["vertices"], dtype=float) * doc["transform"]["scale"][0]
    vertices -= vertices.min(axis=0)
    roof_errors = []
    for i, b in enumerate(found, start=1):
        if not b.roof.lod2:
            continue
        shells = _lod2_shells(doc, f"lidar-building-{i}")
        assert len(shells) == max(1, len(b.roof.parts))
        assert all(_check_closed_shell(shell, vertices) > 0 for shell in shells)
        # the LoD2 roof against the true roof level of the building under each 0.5 m sample
        x0, y0, x1, y1 = b.footprint.bounds
        xx, yy = np.meshgrid(np.arange(x0 + 0.25, x1, 0.5), np.arange(y0 + 0.25, y1, 0.5))
        for i in tree.query(b.footprint, predicate="intersects"):
            inside = shapely.contains_xy(truth[i][0].buffer(-0.5), xx, yy) & shapely.contains_xy(b.footprint, xx, yy)
            c = truth[i][0].centroid
            level = demo.terrain_height(np.array([c.x]), np.array([c.y]), data.origin)[0] + truth[i][1]
            roof_errors.append(b.roof.envelope(xx[inside], yy[inside]) - level)
    roof_errors = np.concatenate(roof_errors)
    assert np.median(np.abs(roof_errors)) < 0.03 and np.percentile(np.abs(roof_errors), 99) < 0.15


# --- the real AHN3 Delft crop ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def delft_roofs(ahn3_points):
    pc = ahn3_points
    cls = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns).classification
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 0.5)
    surfaces = build_surfaces(pc.x, pc.y, pc.z, cls, pc.return_number, grid)
    buildings, _ = detect_buildings(pc.x, pc.y, pc.z, cls, pc.number_of_returns, surfaces.dtm, grid)
    models = reconstruct_roofs(buildings, pc.x, pc.y, pc.z, cls)
    return buildings, models


def test_delft_roofs(delft_roofs, tmp_path):
    """Delft's detected footprints are mostly blocks of row houses with dormers, valleys, terraces
    and steps: for five of seven no model explains 85 % of their points (45-60 %), so they keep
    LoD1 with the reason recorded. Reached: 2 of 7 LoD2 (a 41 m2 gable, 92 % explained; the
    1293 m2 block as 8 parts, 20 planes, 86 % explained), plane RMSE 0.041 m."""
    buildings, models = delft_roofs
    stats = roof_statistics(models)
    assert stats.lod2 >= 2 and stats.plane_rmse < 0.05 and stats.explained > 0.85
    for m in models:
        assert m.reason == "lod2" if m.lod2 else m.reason.startswith("planes explain")
    doc = to_cityjson(buildings, 28992)
    scale = doc["transform"]["scale"][0]
    vertices = np.asarray(doc["vertices"], dtype=float) * scale
    shells = [_lod2_shells(doc, f"lidar-building-{i}") for i in range(1, len(buildings) + 1)]
    assert sum(1 for s in shells if s) == stats.lod2
    assert all(_check_closed_shell(shell, vertices - vertices.min(axis=0)) > 0 for s in shells for shell in s)


def test_courtyard_building_keeps_its_courtyard():
    """A 24 x 24 m block around an 8 x 8 m courtyard, roofs sloping down towards the courtyard and
    the street on all four wings (a ring of hips): LoD2 with a hole in the roof and ground surfaces,
    walls around the courtyard, closed."""
    rng = np.random.default_rng(11)
    outer, court = box(0, 0, 24, 24), box(8, 8, 16, 16)
    footprint = outer.difference(court)
    x, y = rng.uniform(-5, 29, 20_000), rng.uniform(-5, 29, 20_000)
    inside = shapely.contains_xy(footprint, x, y)
    # ridge along the middle of each 8 m wing, 2.4 m above 6 m eaves
    dist = np.minimum(np.minimum(x, 24 - x), np.minimum(y, 24 - y))
    z = np.where(inside, 7.0 + 2.4 - 0.6 * np.abs(dist - 4.0), 1.0) + rng.normal(0, 0.03, len(x))
    cls = np.where(inside, 6, 2)
    building = Building(footprint, 1.0, 0.0, 0.0, 0.0, 0)
    (model,) = reconstruct_roofs([building], x, y, z, cls)
    assert model.lod2, model.reason
    doc = to_cityjson([building], 9210)
    vertices = np.asarray(doc["vertices"], dtype=float) * doc["transform"]["scale"][0]
    volume = sum(_check_closed_shell(shell, vertices) for shell in _lod2_shells(doc, "lidar-building-1"))
    xx, yy = np.meshgrid(np.arange(0.025, 24, 0.05), np.arange(0.025, 24, 0.05))
    d = np.minimum(np.minimum(xx, 24 - xx), np.minimum(yy, 24 - yy))
    keep = shapely.contains_xy(footprint, xx, yy)
    true_volume = np.sum((6.0 + 2.4 - 0.6 * np.abs(d - 4.0))[keep]) * 0.05**2
    assert volume == pytest.approx(true_volume, rel=0.01)
    grounds = [rings for kind, rings in (s for shell in lod2_shells(model, 1.0) for s in shell)
               if kind == "GroundSurface"]
    ground_area = sum(abs(Polygon([p[:2] for p in g[0]], [[p[:2] for p in r] for r in g[1:]]).area) for g in grounds)
    assert ground_area == pytest.approx(footprint.area, abs=0.05)


def test_city_model_command_writes_lod2_cityjson_and_3dtiles(ahn3_path, tmp_path):
    """``gisserver lidar city-model`` on the Delft file (CRS declared, kept native): the CityJSON holds
    LoD1 for every building and LoD2 where the roofs allowed it; the tileset points at its GLB."""
    from click.testing import CliRunner

    from lidar.cli import lidar

    result = CliRunner().invoke(lidar, ["city-model", str(ahn3_path), "--out", str(tmp_path), "--crs", "EPSG:28992",
                                        "--vertical-datum", "NAP", "--native"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["srid"] == 28992 and summary["vertical_datum"] == "NAP"
    assert summary["buildings"] == 7 and summary["lod2"] >= 2
    doc = json.loads((tmp_path / "buildings.city.json").read_text())
    lods = Counter(g["lod"] for o in doc["CityObjects"].values() for g in o["geometry"])
    assert lods["1"] == 7 and lods["2.0"] >= 2
    tileset = json.loads((tmp_path / "tileset.json").read_text())
    assert tileset["root"]["content"]["uri"] == "buildings.glb" and (tmp_path / "buildings.glb").stat().st_size > 1000


def test_random_roofs_make_closed_planar_shells():
    """40 random buildings (rectangles, L shapes, rectangles with a courtyard; roofs of 1-4 random
    planes, some with a step; 3-16 pts/m2): every LoD2 shell is closed, outward and planar."""
    rng = np.random.default_rng(5)
    lod2 = 0
    for _ in range(40):
        length, width = rng.uniform(6, 30), rng.uniform(5, 14)
        fp = box(-length / 2, -width / 2, length / 2, width / 2)
        kind = rng.integers(0, 3)
        if kind == 1:
            fp = fp.union(box(length / 2 - width, -width / 2, length / 2, width / 2 + rng.uniform(4, 12)))
        elif kind == 2 and length > 12:
            fp = fp.difference(box(-2, -1, 2, 1))
        fp = affinity.rotate(fp, rng.uniform(0, 180), origin=(0, 0))
        x0, y0, x1, y1 = fp.bounds
        n = int(rng.uniform(3, 16) * (x1 - x0 + 10) * (y1 - y0 + 10))
        x, y = rng.uniform(x0 - 5, x1 + 5, n), rng.uniform(y0 - 5, y1 + 5, n)
        planes = [(rng.normal(0, 0.5), rng.normal(0, 0.5), rng.uniform(6, 12)) for _ in range(rng.integers(1, 5))]
        roof = np.min([a * x + b * y + c for a, b, c in planes], axis=0)
        if rng.random() < 0.3:
            roof = np.where(x > 0, roof, roof - rng.uniform(2, 5))
        inside = shapely.contains_xy(fp, x, y)
        z = np.where(inside, np.maximum(roof, 3.5), 0.0) + rng.normal(0, 0.04, n)
        building = Building(fp, 0.0, 0.0, 0.0, 0.0, 0)
        (model,) = reconstruct_roofs([building], x, y, z, np.where(inside, 6, 2))
        if not model.lod2:
            continue
        lod2 += 1
        doc = to_cityjson([building], 9210)
        vertices = np.asarray(doc["vertices"], dtype=float) * doc["transform"]["scale"][0]
        for shell in _lod2_shells(doc, "lidar-building-1"):
            assert _check_closed_shell(shell, vertices - vertices.min(axis=0)) > 0
            assert all(_planarity([vertices[i] for i in surface[0]]) < 0.003 for surface in shell)
    assert lod2 >= 30
