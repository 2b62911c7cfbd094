"""3D exports over HTTP: one building or an area, as CityJSON 2.0, GLB and a 3D Tiles tileset.

Content is checked, not only status codes: vertices against the stored footprints, heights,
building ids, GLB triangles. CityJSON is checked with cjio (version, CRS, duplicate and orphan
vertices, its ``info`` command) and with the rules of the official validator (cjval) that can be
written down here: schema structure of CityJSON 2.0, vertex indices, no unused or duplicate
vertices, and every Solid shell closed and oriented outwards (each edge used once in each
direction, positive volume). cjio's own ``validate`` needs ``cjvalpy``, which pip cannot install
here (no distribution for this platform), hence the written-down rules. cjio runs in a child
process (see ``check_with_cjio``).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import shapely
from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon, box
from sqlalchemy import func, insert, update

from gisserver import schema
from gisserver.config import Settings
from gisserver.crs import CITY_SRID, transformer
from tests.conftest import auth

X0, Y0 = 603_400.0, 1_191_400.0  # near Bến Thành, city CRS
CITY_OBJECT_TYPES = {"Building", "BuildingPart", "Bridge", "CityFurniture", "CityObjectGroup", "GenericCityObject",
                     "LandUse", "OtherConstruction", "PlantCover", "SolitaryVegetationObject", "TINRelief",
                     "TransportSquare", "Railway", "Road", "Tunnel", "WaterBody", "Waterway"}
SOLID_DEPTH = {"MultiSurface": 3, "CompositeSurface": 3, "Solid": 4, "MultiSolid": 5, "CompositeSolid": 5}


@pytest.fixture(scope="module")
def export_app(db_engine, database_url, tmp_path_factory):
    """The application with an area export cap of 3 buildings."""
    from gisserver import create_app

    app = create_app(Settings.from_env(database_url=database_url, var_dir=tmp_path_factory.mktemp("var"),
                                       secret_key="test-secret", token_cache_seconds=0, lidar_export_max_buildings=3))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def export_client(export_app, catalogue):
    return export_app.test_client()


def _insert(conn, geom, ground=None, p70=None, *, p50=None, p90=None, source="lidar") -> int:
    multi = geom if isinstance(geom, MultiPolygon) else MultiPolygon([geom])
    height = None if p70 is None else round(p70 - ground, 3)
    return conn.execute(insert(schema.building).values(
        source=source, ground_z=ground, roof_p50=p50 if p50 is not None else p70, roof_p70=p70,
        roof_p90=p90 if p90 is not None else p70, height=height, floors=3, lidar_date="2026-03-01",
        attributes={"point_count": 321}, geom=from_shape(multi, srid=CITY_SRID)).returning(schema.building.c.id)
    ).scalar_one()


def _vertices(doc) -> np.ndarray:
    t = doc["transform"]
    return np.asarray(doc["vertices"], dtype=float) * t["scale"] + t["translate"]


def _solid_shells(geometry) -> list:
    if geometry["type"] == "Solid":
        return geometry["boundaries"]
    return [shell for solid in geometry["boundaries"] for shell in solid]


def _depth(a) -> int:
    d = 0
    while isinstance(a, list):
        d += 1
        a = a[0] if a else None
    return d


def check_cityjson(doc: dict, epsg: int) -> None:
    """The cjval rules that hold for these files, written down (see the module doc)."""
    assert doc["type"] == "CityJSON" and doc["version"] == "2.0"
    t = doc["transform"]
    assert len(t["scale"]) == 3 and len(t["translate"]) == 3 and all(s > 0 for s in t["scale"])
    assert re.fullmatch(r"https://www\.opengis\.net/def/crs/EPSG/0/\d+", doc["metadata"]["referenceSystem"])
    assert doc["metadata"]["referenceSystem"].endswith(f"/{epsg}")
    vertices = doc["vertices"]
    assert all(len(v) == 3 and all(isinstance(c, int) for c in v) for v in vertices)
    assert len({tuple(v) for v in vertices}) == len(vertices), "duplicate vertices"
    used = set()
    xyz = _vertices(doc)
    for key, obj in doc["CityObjects"].items():
        assert obj["type"] in CITY_OBJECT_TYPES, key
        assert isinstance(obj.get("attributes", {}), dict)
        for geometry in obj["geometry"]:
            assert re.fullmatch(r"\d(\.\d)?", geometry["lod"]), geometry["lod"]
            assert _depth(geometry["boundaries"]) == SOLID_DEPTH[geometry["type"]], (key, geometry["type"])
            if "semantics" in geometry:
                values, surfaces = geometry["semantics"]["values"], geometry["semantics"]["surfaces"]
                solids = [geometry["boundaries"]] if geometry["type"] == "Solid" else geometry["boundaries"]
                values = [values] if geometry["type"] == "Solid" else values
                for solid_values, solid in zip(values, solids, strict=True):  # one value per surface
                    assert [len(v) for v in solid_values] == [len(shell) for shell in solid]
                    assert all(v is None or 0 <= v < len(surfaces) for shell in solid_values for v in shell)
            for shell in _solid_shells(geometry):
                edges = Counter()
                volume = 0.0
                for surface in shell:
                    for ring in surface:
                        assert len(set(ring)) == len(ring) >= 3, (key, ring)
                        assert all(0 <= i < len(vertices) for i in ring), "vertex index out of range"
                        used.update(ring)
                        for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
                            edges[(a, b)] += 1
                        p = xyz[ring]
                        volume += sum(np.dot(p[0], np.cross(p[i], p[i + 1])) for i in range(1, len(p) - 1)) / 6
                # closed 2-manifold, consistently oriented: every edge once each way
                assert all(n == 1 and edges[(b, a)] == 1 for (a, b), n in edges.items()), f"{key}: shell not closed"
                assert volume > 0, f"{key}: shell oriented inwards"
    assert used == set(range(len(vertices))), "unused vertices"


# cjio runs in a child process: importing it replaces the json module's float encoder for the
# whole process (cjio.cityjson sets json.encoder.float), which rounds the floats pyproj sends as
# JSON (the city CRS's datum shift among them) and would move every later transformation ~226 m.
_CJIO_SCRIPT = """
import json, sys
from cjio import cityjson
with open(sys.argv[1], encoding="utf-8") as fh:
    cm = cityjson.CityJSON(file=fh)
cm.check_version()
print(json.dumps({"epsg": cm.get_epsg(), "duplicates": cm.remove_duplicate_vertices(),
                  "orphans": cm.remove_orphan_vertices(), "objects": len(cm.j["CityObjects"])}))
"""


def check_with_cjio(doc: dict, epsg: int, tmp_path) -> None:
    """cjio's checks available without cjvalpy: version, CRS, duplicate and orphan vertices, ``info``."""
    path = tmp_path / "check.city.json"
    path.write_text(json.dumps(doc))
    python = Path(sys.executable)
    out = subprocess.run([str(python), "-c", _CJIO_SCRIPT, str(path)], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"epsg": epsg, "duplicates": 0, "orphans": 0, "objects": len(doc["CityObjects"])}, report
    info = subprocess.run([str(python.with_name("cjio")), str(path), "info"], capture_output=True, text=True,
                          check=True).stdout
    assert "2.0" in info and str(len(doc["CityObjects"])) in info, info


_GLTF_VALIDATOR = """
const validator = require("gltf-validator");
const fs = require("fs");
Promise.all(process.argv.slice(1).map((f) => validator.validateBytes(new Uint8Array(fs.readFileSync(f)))))
  .then((reports) => console.log(JSON.stringify(reports.map((r) => r.issues))));
"""


def check_with_gltf_validator(paths: list[Path]) -> None:
    """Khronos glTF-Validator (npm ``gltf-validator``, a devDependency): no errors, no warnings."""
    from gisserver.config import PROJECT_ROOT

    out = subprocess.run(["node", "--input-type=commonjs", "-e", _GLTF_VALIDATOR, *map(str, paths)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    for path, issues in zip(paths, json.loads(out.stdout), strict=True):
        assert (issues["numErrors"], issues["numWarnings"]) == (0, 0), (path.name, issues["messages"])


def _parse_glb(data: bytes) -> tuple[dict, np.ndarray]:
    magic, version, total = struct.unpack_from("<4sII", data)
    assert (magic, version, total) == (b"glTF", 2, len(data))
    json_len, json_type = struct.unpack_from("<I4s", data, 12)
    gltf = json.loads(data[20:20 + json_len])
    bin_len, bin_type = struct.unpack_from("<I4s", data, 20 + json_len)
    assert (json_type, bin_type) == (b"JSON", b"BIN\0")
    blob = data[28 + json_len:28 + json_len + bin_len]
    acc = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    view = gltf["bufferViews"][acc["bufferView"]]
    positions = np.frombuffer(blob, np.float32, acc["count"] * 3, view["byteOffset"]).reshape(-1, 3)
    return gltf, positions


def test_one_building_as_cityjson_with_its_id_vertices_and_heights(export_client, catalogue, tmp_path):
    with catalogue.begin() as conn:
        bid = _insert(conn, box(X0, Y0, X0 + 10, Y0 + 20), 1.2, 13.2, p50=12.5, p90=14.0)
    resp = export_client.get(f"/api/lidar/buildings/{bid}/cityjson")
    assert resp.status_code == 200 and resp.mimetype == "application/city+json"
    assert f"building-{bid}.city.json" in resp.headers["Content-Disposition"]
    doc = resp.json
    check_cityjson(doc, 9210)
    check_with_cjio(doc, 9210, tmp_path)
    assert list(doc["CityObjects"]) == [f"building-{bid}"]
    obj = doc["CityObjects"][f"building-{bid}"]
    a = obj["attributes"]
    assert (a["measuredHeight"], a["h_ground_p10"], a["h_roof_p50"], a["h_roof_p70"], a["h_roof_p90"]) == (
        12.0, 1.2, 12.5, 13.2, 14.0)
    assert a["storeysAboveGround"] == 4 and a["source"] == "lidar" and a["lidar_date"] == "2026-03-01"
    assert a["footprint_area"] == 200.0
    [geometry] = obj["geometry"]
    assert geometry["type"] == "Solid" and geometry["lod"] == "1" and len(geometry["boundaries"][0]) == 6
    xyz = _vertices(doc)
    assert len(xyz) == 8
    assert {(round(x, 3), round(y, 3)) for x, y, _ in xyz} == {(X0, Y0), (X0 + 10, Y0), (X0 + 10, Y0 + 20),
                                                                 (X0, Y0 + 20)}
    assert sorted({round(z, 3) for z in xyz[:, 2]}) == [1.2, 13.2]


def test_a_building_of_two_polygons_is_one_multisolid(export_client, catalogue, tmp_path):
    two = MultiPolygon([box(X0, Y0, X0 + 8, Y0 + 8), box(X0 + 20, Y0, X0 + 26, Y0 + 10)])
    with catalogue.begin() as conn:
        bid = _insert(conn, two, 0.5, 9.5)
    doc = export_client.get(f"/api/lidar/buildings/{bid}/cityjson").json
    check_cityjson(doc, 9210)
    check_with_cjio(doc, 9210, tmp_path)
    [geometry] = doc["CityObjects"][f"building-{bid}"]["geometry"]
    assert geometry["type"] == "MultiSolid" and len(geometry["boundaries"]) == 2 and len(doc["vertices"]) == 16
    assert doc["CityObjects"][f"building-{bid}"]["attributes"]["footprint_area"] == 124.0


def test_one_building_as_glb_and_tileset(export_client, catalogue):
    with catalogue.begin() as conn:
        bid = _insert(conn, box(X0, Y0, X0 + 10, Y0 + 20), 1.2, 13.2)
    resp = export_client.get(f"/api/lidar/buildings/{bid}/glb")
    assert resp.status_code == 200 and resp.mimetype == "model/gltf-binary"
    assert resp.headers["X-Model-Origin"] == f"{X0:.3f},{Y0:.3f},1.200"
    assert resp.headers["X-Model-CRS"].endswith("/9210")
    gltf, pos = _parse_glb(resp.data)
    # 2 roof + 2 floor triangles, 4 walls of 2: 12 triangles, y up, -z north
    assert pos.shape == (36, 3) and gltf["accessors"][0]["count"] == 36
    assert np.allclose(pos.min(axis=0), [0, 0, -20], atol=1e-4) and np.allclose(pos.max(axis=0), [10, 12, 0], atol=1e-4)

    tileset = export_client.get(f"/api/lidar/buildings/{bid}/tileset.json").json
    assert tileset["asset"]["version"] == "1.1" and tileset["asset"]["extras"]["buildings"] == [bid]
    assert tileset["root"]["content"]["uri"] == f"/api/lidar/buildings/{bid}/glb"
    assert export_client.get(tileset["root"]["content"]["uri"]).data == resp.data


def _lonlat_bbox(minx, miny, maxx, maxy) -> str:
    lon, lat = transformer(CITY_SRID, 4326).transform([minx, maxx, minx, maxx], [miny, miny, maxy, maxy])
    # the Bến Thành check point of DOMAIN §1 (official datum shift): see the note on cjio above
    check = transformer(CITY_SRID, 4326).transform(603481.588, 1191454.611)
    assert np.allclose(check, (106.6980, 10.7725), atol=1e-7), check
    return f"{min(lon)},{min(lat)},{max(lon)},{max(lat)}"


def test_area_exports_by_bbox_in_either_crs_and_by_polygon(export_client, catalogue, tmp_path):
    with catalogue.begin() as conn:
        ids = [_insert(conn, box(X0 + 30 * i, Y0, X0 + 30 * i + 12, Y0 + 12), 1.0 + i, 7.0 + 2 * i) for i in range(3)]
        bare = _insert(conn, box(X0 + 100, Y0, X0 + 110, Y0 + 10), source="cadastre")  # no LiDAR heights
        far = _insert(conn, box(X0 + 2000, Y0, X0 + 2010, Y0 + 10), 1.0, 5.0)
    area = (X0 - 5, Y0 - 5, X0 + 120, Y0 + 20)
    by_lonlat = export_client.get(f"/api/lidar/export/cityjson?bbox={_lonlat_bbox(*area)}")
    by_city = export_client.get("/api/lidar/export/cityjson?bbox=" + ",".join(map(str, area)) + "&bbox-crs=EPSG:9210")
    for resp in (by_lonlat, by_city):
        assert resp.status_code == 200 and resp.mimetype == "application/city+json", resp.json
        assert list(resp.json["CityObjects"]) == [f"building-{i}" for i in ids]
        assert resp.headers["X-Buildings-Without-Heights"] == "1"
        heights = [o["attributes"]["measuredHeight"] for o in resp.json["CityObjects"].values()]
        assert heights == [6.0, 7.0, 8.0]
    check_cityjson(by_city.json, 9210)
    check_with_cjio(by_city.json, 9210, tmp_path)
    assert not {f"building-{far}", f"building-{bare}"} & set(by_city.json["CityObjects"])

    # a GeoJSON polygon around the second building only, in the city CRS and in CRS84
    ring = [[X0 + 25, Y0 - 2], [X0 + 50, Y0 - 2], [X0 + 50, Y0 + 15], [X0 + 25, Y0 + 15], [X0 + 25, Y0 - 2]]
    polygon = {"type": "Polygon", "coordinates": [ring]}
    one = export_client.post("/api/lidar/export/cityjson?crs=EPSG:9210", json=polygon)
    assert list(one.json["CityObjects"]) == [f"building-{ids[1]}"]
    lon, lat = transformer(CITY_SRID, 4326).transform([p[0] for p in ring], [p[1] for p in ring])
    feature = {"type": "Feature", "properties": {},
               "geometry": {"type": "Polygon", "coordinates": [[[a, b] for a, b in zip(lon, lat, strict=True)]]}}
    assert list(export_client.post("/api/lidar/export/cityjson", json=feature).json["CityObjects"]) == [
        f"building-{ids[1]}"]

    glb = export_client.post("/api/lidar/export/glb?crs=EPSG:9210", json=polygon)
    _, pos = _parse_glb(glb.data)
    assert glb.mimetype == "model/gltf-binary" and pos.shape == (36, 3) and np.isclose(pos[:, 1].max(), 7.0)


def test_area_cap_and_bad_areas_are_400(export_client, catalogue):
    with catalogue.begin() as conn:
        for i in range(4):
            _insert(conn, box(X0 + 20 * i, Y0, X0 + 20 * i + 10, Y0 + 10), 1.0, 8.0)
    bbox = ",".join(map(str, (X0 - 5, Y0 - 5, X0 + 100, Y0 + 20)))
    capped = export_client.get(f"/api/lidar/export/cityjson?bbox={bbox}&bbox-crs=EPSG:9210")
    assert capped.status_code == 400 and capped.json["limit"] == 3 and "more than 3" in capped.json["detail"]
    assert export_client.get(f"/api/lidar/export/glb?bbox={bbox}&bbox-crs=EPSG:9210").status_code == 400
    small = ",".join(map(str, (X0 - 5, Y0 - 5, X0 + 45, Y0 + 20)))
    assert len(export_client.get(f"/api/lidar/export/cityjson?bbox={small}&bbox-crs=EPSG:9210").json[
        "CityObjects"]) == 3
    bad = [
        export_client.get("/api/lidar/export/cityjson"),
        export_client.get("/api/lidar/export/cityjson?bbox=1,2,3"),
        export_client.get("/api/lidar/export/cityjson?bbox=a,b,c,d"),
        export_client.get("/api/lidar/export/cityjson?bbox=106,10,107,11&bbox-crs=EPSG:999999"),
        export_client.get("/api/lidar/export/cityjson?bbox=106,95,107,96"),
        export_client.post("/api/lidar/export/cityjson", json={"type": "Point", "coordinates": [106.7, 10.77]}),
        export_client.post("/api/lidar/export/cityjson", json={"type": "Polygon", "coordinates": [[[0, 0], [1]]]}),
        export_client.post("/api/lidar/export/cityjson", data="not json", content_type="application/json"),
        export_client.get("/api/lidar/3dtiles/tileset.json"),
    ]
    for resp in bad:
        assert resp.status_code == 400 and resp.content_type == "application/problem+json", resp.json


def test_area_tileset_points_at_the_glb_of_the_same_area(export_client, catalogue):
    with catalogue.begin() as conn:
        ids = [_insert(conn, box(X0 + 30 * i, Y0, X0 + 30 * i + 12, Y0 + 12), 1.0, 9.0) for i in range(2)]
    bbox = _lonlat_bbox(X0 - 5, Y0 - 5, X0 + 60, Y0 + 20)
    tileset = export_client.get(f"/api/lidar/3dtiles/tileset.json?bbox={bbox}")
    assert tileset.status_code == 200
    doc = tileset.json
    assert doc["asset"]["version"] == "1.1" and doc["asset"]["extras"]["buildings"] == ids
    uri = doc["root"]["content"]["uri"]
    assert uri.startswith("/api/lidar/export/glb?bbox=")
    glb = export_client.get(uri)
    assert glb.status_code == 200 and glb.data == export_client.get(f"/api/lidar/export/glb?bbox={bbox}").data
    west, south, east, north, zmin, zmax = doc["root"]["boundingVolume"]["region"]
    lon, lat = transformer(CITY_SRID, 4326).transform([X0, X0 + 42], [Y0, Y0 + 12])
    assert np.allclose([west, south, east, north], np.radians([lon[0], lat[0], lon[1], lat[1]]), atol=1e-8)
    assert (zmin, zmax) == (1.0, 9.0) and len(doc["root"]["transform"]) == 16


def test_missing_unmeasured_and_unreadable_buildings(export_client, catalogue, make_user):
    with catalogue.begin() as conn:
        bare = _insert(conn, box(X0, Y0, X0 + 10, Y0 + 10), source="cadastre")
        measured = _insert(conn, box(X0 + 20, Y0, X0 + 30, Y0 + 10), 1.0, 8.0)
    assert export_client.get("/api/lidar/buildings/999999/cityjson").status_code == 404
    resp = export_client.get(f"/api/lidar/buildings/{bare}/glb")
    assert resp.status_code == 409 and "no LiDAR heights" in resp.json["detail"]
    with catalogue.begin() as conn:
        conn.execute(update(schema.layer).where(schema.layer.c.name == "buildings").values(access_level="internal"))
    assert export_client.get(f"/api/lidar/buildings/{measured}/cityjson").status_code == 404
    _, officer = make_user("officer")
    assert export_client.get(f"/api/lidar/buildings/{measured}/cityjson", headers=auth(officer)).status_code == 200


def test_demo_buildings_export_validates_with_true_heights(client, catalogue, tmp_path):
    """The demo's cadastral buildings measured on its synthetic LiDAR (heights known), exported over HTTP."""
    from layers import demo
    from layers.demo_lidar import demo_survey
    from lidar.store import update_cadastral_heights

    survey = demo_survey()
    data, bounds, pts = survey.data, survey.bounds, survey.points
    demo.load(catalogue, data)
    with catalogue.begin() as conn:
        measured = update_cadastral_heights(conn, pts["x"], pts["y"], pts["z"], survey.classification,
                                            survey.surfaces.dtm, survey.grid)
    inside = [b for b in data.tables["building"] if b["geom"].within(shapely.box(*bounds))]
    assert measured >= 0.9 * len(inside) and len(inside) >= 20

    bbox = ",".join(map(str, bounds))
    resp = client.get(f"/api/lidar/export/cityjson?bbox={bbox}&bbox-crs=EPSG:9210")
    assert resp.status_code == 200 and int(resp.headers["X-Buildings-Without-Heights"]) >= 0
    doc = resp.json
    check_cityjson(doc, 9210)
    check_with_cjio(doc, 9210, tmp_path)
    assert abs(len(doc["CityObjects"]) - measured) <= 2  # the grid may reach one cell beyond the bbox
    truth = {round(b["geom"].area, 1): b["height"] for b in inside}
    errors = [abs(o["attributes"]["measuredHeight"] - truth[round(o["attributes"]["footprint_area"], 1)])
              for o in doc["CityObjects"].values() if round(o["attributes"]["footprint_area"], 1) in truth]
    assert len(errors) >= 0.9 * len(inside) and np.median(errors) < 0.3


def test_delft_buildings_cityjson_validates(ahn3_points, tmp_path):
    """Buildings detected in the real AHN3 file (EPSG:28992 declared), LoD1 and the LoD2 roofs."""
    from lidar.buildings import detect_buildings
    from lidar.cityjson import to_cityjson
    from lidar.dtm import build_surfaces
    from lidar.grid import GridSpec
    from lidar.ground import classify_ground
    from lidar.roofs import reconstruct_roofs

    pc = ahn3_points
    cls = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns).classification
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 0.5)
    dtm = build_surfaces(pc.x, pc.y, pc.z, cls, pc.return_number, grid).dtm
    buildings, _ = detect_buildings(pc.x, pc.y, pc.z, cls, pc.number_of_returns, dtm, grid)
    lod1 = to_cityjson(buildings, 28992, lidar_date="2014-03-04")
    check_cityjson(lod1, 28992)
    check_with_cjio(lod1, 28992, tmp_path)
    reconstruct_roofs(buildings, pc.x, pc.y, pc.z, cls)
    lod2 = to_cityjson(buildings, 28992)
    assert any(len(o["geometry"]) == 2 for o in lod2["CityObjects"].values())
    check_cityjson(lod2, 28992)
    check_with_cjio(lod2, 28992, tmp_path)


def test_glb_exports_pass_the_gltf_validator(export_client, catalogue, ahn3_points, tmp_path):
    """The GLB of one building, of an area (a courtyard building among them) and of the Delft LoD2 roofs."""
    from shapely.geometry import Polygon

    from lidar.buildings import detect_buildings
    from lidar.cityjson import to_glb
    from lidar.dtm import build_surfaces
    from lidar.grid import GridSpec
    from lidar.ground import classify_ground
    from lidar.roofs import reconstruct_roofs

    courtyard = Polygon([(X0 + 30, Y0), (X0 + 60, Y0), (X0 + 60, Y0 + 30), (X0 + 45, Y0 + 20), (X0 + 30, Y0 + 30)],
                        [[(X0 + 35, Y0 + 5), (X0 + 42, Y0 + 5), (X0 + 42, Y0 + 12), (X0 + 35, Y0 + 12)]])
    with catalogue.begin() as conn:
        one = _insert(conn, box(X0, Y0, X0 + 10, Y0 + 20), 1.2, 13.2)
        _insert(conn, courtyard, 0.8, 20.0)
    paths = {"one.glb": f"/api/lidar/buildings/{one}/glb",
             "area.glb": "/api/lidar/export/glb?bbox=" + ",".join(map(str, (X0 - 5, Y0 - 5, X0 + 70, Y0 + 40)))
             + "&bbox-crs=EPSG:9210"}
    files = []
    for name, url in paths.items():
        resp = export_client.get(url)
        assert resp.status_code == 200
        files.append(tmp_path / name)
        files[-1].write_bytes(resp.data)
    pc = ahn3_points
    cls = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns).classification
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), 0.5)
    dtm = build_surfaces(pc.x, pc.y, pc.z, cls, pc.return_number, grid).dtm
    buildings, _ = detect_buildings(pc.x, pc.y, pc.z, cls, pc.number_of_returns, dtm, grid)
    reconstruct_roofs(buildings, pc.x, pc.y, pc.z, cls)
    assert any(b.roof is not None and b.roof.lod2 for b in buildings)
    files.append(tmp_path / "delft_lod2.glb")
    files[-1].write_bytes(to_glb(buildings)[0])
    check_with_gltf_validator(files)


def _roof_survey():
    """Roof points in the city CRS: a gable, a stepped block (two flat parts) and a cadastral building
    of two polygons (a hip and a small gable), flat ground at 1 m, 10 pts/m2, 3 cm noise."""
    import math

    from tests.lidar.test_roofs import TrueBuilding, _stepped

    rng = np.random.default_rng(11)
    truths = [TrueBuilding("gable", (X0 + 15, Y0 + 15), 16, 10, 30, 6, math.tan(math.radians(35)), 1.0),
              TrueBuilding("hip", (X0 + 45, Y0 + 15), 14, 10, 0, 7, math.tan(math.radians(30)), 1.0),
              TrueBuilding("gable", (X0 + 45, Y0 + 38), 12, 8, 0, 5, math.tan(math.radians(30)), 1.0)]
    stepped, stepped_roof = _stepped((X0 + 80, Y0 + 15), 1.0)
    n = 10 * 100 * 50
    x, y = X0 + rng.uniform(0, 100, n), Y0 + rng.uniform(0, 50, n)
    z = 1.0 + rng.normal(0, 0.03, n)
    cls = np.full(n, 2, np.uint8)
    for footprint, roof in [(t.footprint, t.roof) for t in truths] + [(stepped, stepped_roof)]:
        inside = shapely.contains_xy(footprint, x, y)
        z[inside] = roof(x[inside], y[inside]) + rng.normal(0, 0.03, inside.sum())
        cls[inside] = 6
    return truths, stepped, (x, y, z, cls)


def test_stored_roofs_export_as_lod2_solids_parts_and_multisolids(export_client, catalogue, tmp_path):
    """Roofs stored by ``lidar.store`` come back as the LoD2 the model gives (same vertices as
    ``lidar.cityjson`` writes from the fitted model), a stepped roof as BuildingParts, a cadastral
    building of two polygons as an LoD2 MultiSolid; all pass the cjval rules, cjio and the glTF validator."""
    from lidar.buildings import Building
    from lidar.cityjson import to_cityjson
    from lidar.grid import GridSpec
    from lidar.roofs import reconstruct_roofs
    from lidar.store import store_buildings, update_cadastral_heights

    truths, stepped, (x, y, z, cls) = _roof_survey()
    detected = []
    for footprint in (truths[0].footprint, stepped):
        roof_z = z[shapely.contains_xy(footprint, x, y)]
        p50, p70, p90 = np.percentile(roof_z, [50, 70, 90])
        detected.append(Building(footprint, 1.0, float(p50), float(p70), float(p90), len(roof_z)))
    reconstruct_roofs(detected, x, y, z, cls)
    assert [b.roof.roof_type for b in detected] == ["gable", "stepped"]
    grid = GridSpec(X0, Y0 + 50, 0.5, 200, 100)
    with catalogue.begin() as conn:
        gable_id, stepped_id = store_buildings(conn, detected, srid=CITY_SRID, lidar_date="2026-03-01")
        cadastral_id = _insert(conn, MultiPolygon([truths[1].footprint, truths[2].footprint]), source="cadastre")
        assert update_cadastral_heights(conn, x, y, z, cls, np.full(grid.shape, 1.0), grid) == 1

    gable = export_client.get(f"/api/lidar/buildings/{gable_id}/cityjson").json
    direct = to_cityjson(detected[:1], CITY_SRID)

    def lod2_points(doc, oid):
        xyz = _vertices(doc)
        [solid] = [g for g in doc["CityObjects"][oid]["geometry"] if g["lod"] == "2.0"]
        return {tuple(np.round(xyz[i], 3)) for shell in solid["boundaries"] for s in shell for r in s for i in r}

    assert lod2_points(gable, f"building-{gable_id}") == lod2_points(direct, "lidar-building-1")
    assert gable["CityObjects"][f"building-{gable_id}"]["attributes"]["roof_type"] == "gable"
    with catalogue.begin() as conn:  # a footprint edited after the survey: its stored roof no longer fits
        conn.execute(update(schema.building).where(schema.building.c.id == gable_id).values(
            geom=func.ST_Translate(schema.building.c.geom, 2.0, 0.0)))
    moved = export_client.get(f"/api/lidar/buildings/{gable_id}/cityjson").json["CityObjects"][f"building-{gable_id}"]
    assert [g["lod"] for g in moved["geometry"]] == ["1"] and "lod2_status" not in moved["attributes"]

    bbox = f"bbox={X0},{Y0},{X0 + 100},{Y0 + 50}&bbox-crs=EPSG:9210"
    area = export_client.get(f"/api/lidar/export/cityjson?{bbox}").json
    check_cityjson(area, 9210)
    check_with_cjio(area, 9210, tmp_path)
    objects = area["CityObjects"]
    block = objects[f"building-{stepped_id}"]
    parts = [f"building-{stepped_id}-part-1", f"building-{stepped_id}-part-2"]
    assert [g["lod"] for g in block["geometry"]] == ["1"] and block["children"] == parts
    assert block["attributes"]["roof_type"] == "stepped"
    for name in parts:
        assert objects[name]["type"] == "BuildingPart" and objects[name]["parents"] == [f"building-{stepped_id}"]
        [solid] = objects[name]["geometry"]
        assert (solid["type"], solid["lod"]) == ("Solid", "2.0")
    two = objects[f"building-{cadastral_id}"]
    lod1, lod2 = two["geometry"]
    assert (lod1["type"], lod1["lod"], lod2["type"], lod2["lod"]) == ("MultiSolid", "1", "MultiSolid", "2.0")
    roof_faces = [sum(lod2["semantics"]["surfaces"][v]["type"] == "RoofSurface" for v in solid[0])
                  for solid in lod2["semantics"]["values"]]
    assert roof_faces == [4, 2]  # the hip, then the gable, in the stored polygon order
    assert two["attributes"]["lod2_status"] == "lod2" and "roof_type" not in two["attributes"]

    glb = export_client.get(f"/api/lidar/export/glb?{bbox}")
    assert glb.status_code == 200
    (tmp_path / "roofs.glb").write_bytes(glb.data)
    check_with_gltf_validator([tmp_path / "roofs.glb"])
    # the stepped block's two flat parts: every triangle is a flat roof or floor, or a vertical wall
    # (none slanted across the step), and its roofs are at the parts' heights (annex 4 m, block 12 m)
    block = export_client.get(f"/api/lidar/buildings/{stepped_id}/glb")
    _, pos = _parse_glb(block.data)
    tris = pos.reshape(-1, 3, 3).astype(float)
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    up = np.abs(normals[:, 1]) / np.linalg.norm(normals, axis=1)
    assert np.all((up > 1 - 1e-6) | (up < 1e-6)), np.sort(up)[len(up) // 2:]
    levels = np.unique(np.round(tris[up > 0.5][:, :, 1] + float(block.headers["X-Model-Origin"].split(",")[2]), 1))
    assert np.allclose(levels, [1.0, 5.0, 13.0], atol=0.1), levels
