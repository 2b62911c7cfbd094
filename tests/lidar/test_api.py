"""LiDAR over HTTP: upload or server-side path -> job (worker) -> file and tile index, rasters,
buildings; auth, limits, bad files (400, nothing registered), audit entries.

The cloud is the real AHN3 Delft crop moved into Quận 8 (``relocated_las`` in conftest), sent as
LAZ; the unmoved Delft file checks the CRS rules (none in the file; declared EPSG:28992 lies
outside the city).
"""

from __future__ import annotations

import json
from collections import Counter

import laspy
import numpy as np
import pytest
from sqlalchemy import func, select

from gisserver import schema
from gisserver.config import Settings
from lidar import jobs
from lidar.tables import lidar_file, lidar_tile
from tests.conftest import auth

AHN3_POINTS = 208_432


@pytest.fixture(scope="module")
def allowed_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lidar_allowed")


@pytest.fixture(scope="module")
def lidar_app(db_engine, database_url, tmp_path_factory, allowed_dir):
    """The application with LiDAR limits small enough to test (4 MiB uploads, 3-building exports)."""
    from gisserver import create_app
    from layers.catalogue import sync_canonical_layers

    with db_engine.begin() as conn:
        sync_canonical_layers(conn)
    app = create_app(Settings.from_env(
        database_url=database_url, var_dir=tmp_path_factory.mktemp("var"), secret_key="test-secret",
        max_upload_mb=8, token_cache_seconds=0, lidar_max_upload_mb=4, lidar_export_max_buildings=400,
        lidar_allowed_dirs=(allowed_dir,)))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def lidar_client(lidar_app, catalogue):
    return lidar_app.test_client()


@pytest.fixture(scope="module")
def q8_laz(relocated_las, tmp_path_factory):
    """The relocated AHN3 crop as LAZ (1.2 MB; EPSG:9210 in a GeoTIFF key)."""
    path = tmp_path_factory.mktemp("q8") / "ahn3_q8.laz"
    laspy.read(relocated_las).write(path)
    return path


def _upload(client, path_or_bytes, filename, token=None, **fields):
    """A multipart body built here: werkzeug's test client leaks the file it spools big bodies to."""
    content = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    boundary = "lidar-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    body = b"".join(parts) + head + content + f"\r\n--{boundary}--\r\n".encode()
    return client.post("/api/lidar/files", data=body, headers=auth(token) if token else {},
                       content_type=f"multipart/form-data; boundary={boundary}")


def _counts(engine) -> tuple[int, int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (lidar_file, lidar_tile, schema.raster, schema.building))


def _run_worker(lidar_app, engine) -> int:
    out = lidar_app.extensions["gisserver"].settings.var_dir / "lidar" / "jobs"
    return jobs.work(engine, out, once=True, processes=False, n_workers=1)


def test_upload_is_processed_by_the_worker_and_indexed(lidar_app, lidar_client, catalogue, make_user, q8_laz):
    _, planner = make_user("planner")
    resp = _upload(lidar_client, q8_laz, "khảo sát Q8.laz", planner, vertical_datum="NAP", resolution="1")
    assert resp.status_code == 202, resp.json
    job = resp.json
    assert job["status"] == "queued" and job["kind"] == "lidar-ingest" and job["progress"] == 0
    assert job["params"]["name"] == "khảo sát Q8.laz" and "path" not in job["params"]
    self_url = next(link["href"] for link in job["links"] if link["rel"] == "self")
    assert _counts(catalogue) == (0, 0, 0, 0)  # queued: nothing registered yet

    # the job as a client polling it sees it at every progress write: running, percent rising, each stage
    seen = []

    def poll(fraction, stage):
        now = lidar_client.get(self_url, headers=auth(planner)).json
        seen.append((now["status"], now["progress"], now["message"]))

    assert jobs.claim_next(catalogue) == job["id"]
    jobs.run_ingest_job(catalogue, job["id"], lidar_app.extensions["gisserver"].settings.var_dir / "lidar" / "jobs",
                        processes=False, n_workers=1, on_progress=poll)
    assert {s[0] for s in seen} == {"running"} and 0 < len(seen)
    assert [p for _, p, _ in seen] == sorted(p for _, p, _ in seen) and 0 < seen[-2][1] < 100
    stages = [m for _, _, m in seen]
    assert [m for i, m in enumerate(stages) if m not in stages[:i]] == [
        "validate", "retile", "tiles", "rasters", "register"], stages
    assert _run_worker(lidar_app, catalogue) == 0  # nothing left in the queue
    done = lidar_client.get(self_url, headers=auth(planner)).json
    assert done["status"] == "succeeded" and done["progress"] == 100, done
    result = done["result"]
    assert set(result["rasters"]) == {"dtm", "dsm", "ndsm", "hillshade"}
    assert result["points"] == AHN3_POINTS and sum(result["classes"].values()) == AHN3_POINTS
    # the Delft crop's urban blocks: 7 footprints in the whole-file pipeline (test_buildings.py)
    assert 5 <= result["buildings"]["detected"] <= 9
    assert len(result["buildings"]["ids"]) == result["buildings"]["detected"]

    # the file index: footprint in CRS84 around the relocated crop (Quận 8), counts, CRS, classes
    files = lidar_client.get("/api/lidar/files", headers=auth(planner))
    assert files.status_code == 200 and files.mimetype == "application/geo+json"
    [feature] = files.json["features"]
    props = feature["properties"]
    assert feature["id"] == result["file_id"] and props["name"] == "khảo sát Q8.laz"
    assert props["point_count"] == AHN3_POINTS and props["crs"].endswith("/9210") and props["crs_source"] == "geotiff"
    assert props["vertical_datum"] == "NAP" and 10 < props["density"] < 20
    assert props["classes"]["2"] > 50_000 and props["classes"]["6"] > 10_000
    assert -10 < props["z_range"][0] < props["z_range"][1] < 150
    ring = np.asarray(feature["geometry"]["coordinates"][0])
    assert feature["geometry"]["type"] == "Polygon"
    assert 106.5 < ring[:, 0].min() < ring[:, 0].max() < 106.8 and 10.6 < ring[:, 1].min() < ring[:, 1].max() < 10.9
    assert lidar_client.get(f"/api/lidar/files/{feature['id']}", headers=auth(planner)).json["id"] == feature["id"]

    tiles = lidar_client.get(f"/api/lidar/tiles?job={job['id']}", headers=auth(planner)).json["features"]
    assert len(tiles) == result["tiles"] >= 1
    assert all(t["properties"]["status"] == "done" for t in tiles)
    assert sum(t["properties"]["point_count"] for t in tiles) == AHN3_POINTS

    with catalogue.connect() as conn:
        rasters = conn.execute(select(schema.raster.c.name, schema.raster.c.kind)).all()
        lidar_buildings = conn.execute(select(func.count()).select_from(schema.building)
                                       .where(schema.building.c.source == "lidar")).scalar_one()
        actions = conn.execute(select(schema.audit_log.c.action, schema.audit_log.c.actor)
                               .where(schema.audit_log.c.action.like("lidar.%")).order_by(schema.audit_log.c.id)).all()
    assert {r.kind for r in rasters} == {"dtm", "dsm", "ndsm", "hillshade"}
    assert all(r.name.startswith(f"lidar_{job['id']}_") for r in rasters)
    assert lidar_buildings == result["buildings"]["detected"]
    assert [a.action for a in actions] == ["lidar.ingest.submit", "lidar.ingest"]
    assert len({a.actor for a in actions}) == 1 and actions[0].actor.startswith("planner_")

    # the same survey's exported buildings carry the stored heights (CityJSON of the area)
    lon0, lat0 = ring.min(axis=0)
    lon1, lat1 = ring.max(axis=0)
    city = lidar_client.get(f"/api/lidar/export/cityjson?bbox={lon0},{lat0},{lon1},{lat1}")
    assert city.status_code == 200 and city.mimetype == "application/city+json"
    objects = city.json["CityObjects"]
    assert {f"building-{i}" for i in result["buildings"]["ids"]} == set(objects)
    for obj in objects.values():  # Delft's blocks: 3-30 m tall, ground near NAP 0
        a = obj["attributes"]
        assert 3 < a["measuredHeight"] < 30 and -3 < a["h_ground_p10"] < 3
        assert a["lidar_date"] == props["acquisition_date"]
    # Delft's row-house blocks: some get LoD2 roofs (test_roofs.py: 2 of 7), the others keep LoD1 and say why
    lod2 = [k for k, o in objects.items() if len(o["geometry"]) == 2 or o.get("children")]
    assert len(lod2) == result["buildings"]["lod2"] >= 1
    assert all(o["attributes"]["lod2_status"].startswith(("lod2", "planes explain", "no roof plane"))
               for o in objects.values()), [o["attributes"]["lod2_status"] for o in objects.values()]


def _roof_cloud(path) -> dict:
    """A synthetic survey in the city CRS: a gable, a hip and a flat roof (the generator of
    ``test_roofs.py``) on flat ground at 1 m, 10 pts/m2, 3 cm noise, single returns, fixed seed."""
    import math

    import shapely
    from laspy.vlrs.known import GeoKeyDirectoryVlr, GeoKeyEntryStruct

    from tests.lidar.test_roofs import TrueBuilding

    rng = np.random.default_rng(5)
    pitch = math.tan(math.radians(30)), math.tan(math.radians(25))
    truths = {"gable": TrueBuilding("gable", (ROOF_X0 + 25, ROOF_Y0 + 25), 18, 10, 20, 6, pitch[0], 1),
              "hip": TrueBuilding("hip", (ROOF_X0 + 65, ROOF_Y0 + 25), 16, 11, 75, 7, pitch[1], 1),
              "flat": TrueBuilding("flat", (ROOF_X0 + 100, ROOF_Y0 + 25), 14, 10, 10, 9, 0.0, 1)}
    n = 10 * 125 * 50
    x, y = ROOF_X0 + rng.uniform(0, 125, n), ROOF_Y0 + rng.uniform(0, 50, n)
    z = 1.0 + rng.normal(0, 0.03, n)
    cls = np.full(n, 2, np.uint8)
    for t in truths.values():
        inside = shapely.contains_xy(t.footprint, x, y)
        z[inside] = t.roof(x[inside], y[inside]) + rng.normal(0, 0.03, inside.sum())
        cls[inside] = 6
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales, header.offsets = np.array([0.001, 0.001, 0.001]), np.array([ROOF_X0, ROOF_Y0, 0.0])
    geo = GeoKeyDirectoryVlr()
    geo.geo_keys_header.number_of_keys = 1
    geo.geo_keys = [GeoKeyEntryStruct(3072, 0, 1, 9210)]
    header.vlrs.append(geo)
    las = laspy.LasData(header)
    las.x, las.y, las.z, las.classification = x, y, z, cls
    las.return_number = las.number_of_returns = np.ones(n, np.uint8)
    las.write(path)
    return truths


ROOF_X0, ROOF_Y0 = 603_400.0, 1_191_400.0


def _ingest(lidar_app, engine, client, token, path, name) -> dict:
    resp = _upload(client, path, name, token)
    assert resp.status_code == 202, resp.json
    assert _run_worker(lidar_app, engine) == 1
    done = client.get(f"/api/lidar/jobs/{resp.json['id']}", headers=auth(token)).json
    assert done["status"] == "succeeded", done
    return done["result"]


def _roof_rows(engine) -> dict:
    from lidar.tables import building_roof

    with engine.connect() as conn:
        return {r.building_id: r for r in conn.execute(select(building_roof))}


def test_ingest_stores_lod2_roofs_and_the_exports_use_them(lidar_app, lidar_client, catalogue, make_user,
                                                            tmp_path):
    """Gable and hip roofs through the HTTP ingest: stored with the heights, exported as LoD2 Solids
    with RoofSurface semantics (CityJSON, checked with the cjval rules and cjio), LoD2 GLB triangles
    (Khronos validator) and tileset height; an area mixes LoD2 and LoD1 as stored; a second survey of
    the area replaces the roofs like the heights."""
    from geoalchemy2.shape import from_shape
    from shapely.geometry import MultiPolygon, box
    from sqlalchemy import insert

    from gisserver.crs import CITY_SRID
    from tests.lidar.test_export import _parse_glb, check_cityjson, check_with_cjio, check_with_gltf_validator

    truths = _roof_cloud(tmp_path / "roofs.las")
    with catalogue.begin() as conn:  # the hip is in the cadastre: its footprint gets the heights and the roof
        hip_id = conn.execute(insert(schema.building).values(
            source="cadastre", geom=from_shape(MultiPolygon([truths["hip"].footprint]), srid=CITY_SRID)
        ).returning(schema.building.c.id)).scalar_one()
    _, planner = make_user("planner")
    result = _ingest(lidar_app, catalogue, lidar_client, planner, tmp_path / "roofs.las", "roofs.las")
    built = result["buildings"]
    assert (built["detected"], len(built["ids"]), built["cadastral_updated"], built["lod2"]) == (3, 2, 1, 3)
    roofs = _roof_rows(catalogue)
    assert set(roofs) == {*built["ids"], hip_id} and all(r.lod2 and r.status == "lod2" for r in roofs.values())
    assert sorted(r.roof_type for r in roofs.values()) == ["flat", "gable", "hip"]
    with catalogue.connect() as conn:
        dates = dict(conn.execute(select(schema.building.c.id, schema.building.c.lidar_date)).all())
    assert all(r.lidar_date is not None and r.lidar_date == dates[i] for i, r in roofs.items())
    gable_id = next(i for i, r in roofs.items() if r.roof_type == "gable")

    # one building: LoD1 Solid and the LoD2 Solid with semantic surfaces, the right roof type and planes
    for bid, kind, planes in ((gable_id, "gable", 2), (hip_id, "hip", 4)):
        doc = lidar_client.get(f"/api/lidar/buildings/{bid}/cityjson").json
        check_cityjson(doc, 9210)
        check_with_cjio(doc, 9210, tmp_path)
        obj = doc["CityObjects"][f"building-{bid}"]
        lod1, lod2 = obj["geometry"]
        assert (lod1["lod"], lod2["lod"], lod2["type"]) == ("1", "2.0", "Solid")
        kinds = Counter(lod2["semantics"]["surfaces"][v]["type"] for v in lod2["semantics"]["values"][0])
        assert kinds["RoofSurface"] == planes and kinds["GroundSurface"] == 1 and kinds["WallSurface"] >= 4
        a = obj["attributes"]
        assert (a["lod2_status"], a["roof_type"], a["roof_planes"]) == ("lod2", kind, planes)
        assert a["roof_plane_rmse"] < 0.05 and a["lidar_date"] == roofs[bid].lidar_date.isoformat()
        # the LoD2 ridge is the true one, above the LoD1 top (p70)
        ridge = max(_cj_vertices(doc)[i][2] for shell in lod2["boundaries"] for s in shell for r in s for i in r)
        t = truths[kind]
        assert ridge == pytest.approx(float(t.roof(*t.centre)), abs=0.1) and ridge > a["h_roof_p70"] + 0.5

    # GLB: the LoD2 shell (more triangles than the LoD1 prism of the same footprint, up to the ridge)
    doc = lidar_client.get(f"/api/lidar/buildings/{gable_id}/cityjson").json
    ring = doc["CityObjects"][f"building-{gable_id}"]["geometry"][0]["boundaries"][0][1][0]  # LoD1 top face
    glb = lidar_client.get(f"/api/lidar/buildings/{gable_id}/glb")
    _, pos = _parse_glb(glb.data)
    origin = [float(v) for v in glb.headers["X-Model-Origin"].split(",")]
    assert len(pos) // 3 > 4 * len(ring) - 4  # an LoD1 prism of n corners has 4n - 4 triangles
    assert pos[:, 1].max() + origin[2] == pytest.approx(float(truths["gable"].roof(*truths["gable"].centre)), abs=0.1)

    # an area: the three LoD2 buildings and one stored without a roof (LoD1 only)
    with catalogue.begin() as conn:
        lod1_id = conn.execute(insert(schema.building).values(
            source="lidar", ground_z=1.0, roof_p50=7.0, roof_p70=7.0, roof_p90=7.0, height=6.0, floors=2,
            geom=from_shape(MultiPolygon([box(ROOF_X0 + 110, ROOF_Y0 + 40, ROOF_X0 + 120, ROOF_Y0 + 48)]),
                            srid=CITY_SRID)).returning(schema.building.c.id)).scalar_one()
    bbox = f"bbox={ROOF_X0},{ROOF_Y0},{ROOF_X0 + 125},{ROOF_Y0 + 50}&bbox-crs=EPSG:9210"
    area = lidar_client.get(f"/api/lidar/export/cityjson?{bbox}").json
    check_cityjson(area, 9210)
    check_with_cjio(area, 9210, tmp_path)
    lods = {k: [g["lod"] for g in o["geometry"]] for k, o in area["CityObjects"].items()}
    assert lods == {**{f"building-{i}": ["1", "2.0"] for i in (*built["ids"], hip_id)}, f"building-{lod1_id}": ["1"]}
    assert "lod2_status" not in area["CityObjects"][f"building-{lod1_id}"]["attributes"]
    area_glb = lidar_client.get(f"/api/lidar/export/glb?{bbox}")
    (tmp_path / "area.glb").write_bytes(area_glb.data)
    (tmp_path / "gable.glb").write_bytes(glb.data)
    check_with_gltf_validator([tmp_path / "area.glb", tmp_path / "gable.glb"])
    tileset = lidar_client.get(f"/api/lidar/3dtiles/tileset.json?{bbox}").json
    top = tileset["root"]["boundingVolume"]["region"][5]
    assert top == pytest.approx(max(float(t.roof(*t.centre)) for t in truths.values()), abs=0.1)

    # a second survey of the area: detected buildings and their roofs replaced, the cadastral roof rewritten
    again = _ingest(lidar_app, catalogue, lidar_client, planner, tmp_path / "roofs.las", "roofs again.las")["buildings"]
    assert again["replaced"] == 3 and again["lod2"] == 3  # the two detected ones and the LoD1 row
    after = _roof_rows(catalogue)
    assert set(after) == {*again["ids"], hip_id} and not set(built["ids"]) & set(after)
    assert after[hip_id].created_at > roofs[hip_id].created_at and after[hip_id].roof_type == "hip"


def _cj_vertices(doc) -> np.ndarray:
    t = doc["transform"]
    return np.asarray(doc["vertices"], dtype=float) * t["scale"] + t["translate"]


def test_bad_files_are_400_at_once_and_nothing_is_queued(lidar_client, catalogue, make_user, q8_laz, ahn3_path):
    _, planner = make_user("planner")
    laz = q8_laz.read_bytes()
    cases = [
        (ahn3_path.read_bytes(), "delft.laz", {}, "missing-crs"),  # no CRS in the file, none declared
        (ahn3_path.read_bytes(), "delft.laz", {"crs": "EPSG:28992"}, "invalid-input"),  # Delft is not in the city
        (laz[: len(laz) // 2], "cut.laz", {}, "invalid-file"),  # truncated LAZ: its chunk table is gone
        (b"LASF" + b"\0" * 300, "zeros.las", {}, "invalid-file"),
        (b"not a point cloud at all", "junk.laz", {}, "invalid-file"),
        (laz, "q8.laz", {"crs": "EPSG:999999"}, "unknown-crs"),
        (laz, "q8.laz", {"resolution": "0"}, "invalid-parameter"),
        (laz, "q8.laz", {"resolution": "1", "tile_size": "500.5"}, "invalid-parameter"),
        (laz, "q8.laz", {"access_level": "secret"}, "invalid-parameter"),
        (laz, "q8.laz", {"prefix": "x; DROP TABLE raster"}, "invalid-parameter"),
    ]
    for content, name, fields, code in cases:
        resp = _upload(lidar_client, content, name, planner, **fields)
        assert resp.status_code == 400 and resp.content_type == "application/problem+json", (name, fields, resp.json)
        assert resp.json["code"] == code, (name, fields, resp.json)
    missing = _upload(lidar_client, ahn3_path.read_bytes(), "delft.laz", planner)
    assert "declare" in missing.json["detail"].lower() or "crs" in missing.json["detail"].lower()
    wrong_type = _upload(lidar_client, laz, "cloud.xyz", planner)
    assert wrong_type.status_code == 415 and wrong_type.json["code"] == "unsupported-format"
    with catalogue.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.job)).scalar_one() == 0
    assert _counts(catalogue) == (0, 0, 0, 0)


def test_upload_limit_is_413_and_auth_is_checked(lidar_app, lidar_client, catalogue, make_user, q8_laz):
    _, officer = make_user("officer")
    _, public = make_user("public")
    body = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.laz\"\r\n\r\n" + b"\0" * (5 << 20)
    resp = lidar_client.post("/api/lidar/files", data=body, headers=auth(officer),
                             content_type="multipart/form-data; boundary=x")  # the app allows 4 MiB of LiDAR
    assert resp.status_code == 413 and resp.json["code"] == "payload-too-large" and "4 MiB" in resp.json["detail"]
    assert _upload(lidar_client, q8_laz, "q8.laz").status_code == 401
    assert _upload(lidar_client, q8_laz, "q8.laz", public).status_code == 403
    assert lidar_client.get("/api/lidar/files").status_code == 401
    assert lidar_client.get("/api/lidar/jobs/1", headers=auth(public)).status_code == 403
    upload_dir = lidar_app.extensions["gisserver"].settings.upload_dir
    assert not upload_dir.exists() or list(upload_dir.iterdir()) == []


def test_server_side_path_needs_planner_and_an_allowed_folder(lidar_app, lidar_client, catalogue, make_user,
                                                              q8_laz, allowed_dir, tmp_path):
    _, planner = make_user("planner")
    _, officer = make_user("officer")
    inside = allowed_dir / "q8_path.laz"
    inside.write_bytes(q8_laz.read_bytes())
    outside = tmp_path / "elsewhere.laz"
    outside.write_bytes(q8_laz.read_bytes())

    def post(body, token=planner):
        return lidar_client.post("/api/lidar/files/from-path", json=body, headers=auth(token))

    assert post({"path": str(inside)}, officer).status_code == 403
    assert post({"path": str(outside)}).status_code == 403
    assert post({"path": str(allowed_dir / ".." / outside.parent.name / outside.name)}).status_code == 403
    assert post({"path": str(allowed_dir / "missing.laz")}).status_code == 400
    assert post({"path": "relative/q8.laz"}).status_code == 400
    assert post({"nothing": 1}).status_code == 400
    resp = post({"path": str(inside), "prefix": "q8_path", "resolution": 2, "tile_size": 250})
    assert resp.status_code == 202, resp.json
    assert resp.json["params"]["path"] == str(inside.resolve())  # a server path is the caller's own
    assert post({"path": str(inside)}).status_code == 409  # queued once is enough: the index is unique per path

    # the file is damaged on disk before the worker gets to it: the job fails, nothing is registered,
    # and a server-side file (not ours) is left where it is
    inside.write_bytes(q8_laz.read_bytes()[:-200_000])
    _run_worker(lidar_app, catalogue)
    job = lidar_client.get(resp.json["links"][0]["href"], headers=auth(planner)).json
    assert job["status"] == "failed" and job["error"].startswith("invalid-file"), job
    assert job["result"]["error"] == "invalid-file"
    assert _counts(catalogue) == (0, 0, 0, 0) and inside.exists()


def test_an_upload_that_fails_in_the_job_is_removed(lidar_app, lidar_client, catalogue, make_user, q8_laz):
    """Damage that only a pass over the points finds (here: the stored upload loses its tail)."""
    _, admin = make_user("admin")
    files_dir = lidar_app.extensions["gisserver"].settings.var_dir / "lidar" / "files"
    before = set(files_dir.iterdir()) if files_dir.exists() else set()
    resp = _upload(lidar_client, q8_laz, "q8.laz", admin)
    assert resp.status_code == 202
    [stored] = set(files_dir.iterdir()) - before
    stored.write_bytes(stored.read_bytes()[:-300_000])
    with pytest.raises(Exception):  # noqa: B017 - the job's own error, recorded on the job below
        jobs.run_ingest_job(catalogue, resp.json["id"], files_dir.parent / "jobs", processes=False, n_workers=1)
    job = lidar_client.get(f"/api/lidar/jobs/{resp.json['id']}", headers=auth(admin)).json
    assert job["status"] == "failed" and ("truncated" in job["error"] or "corrupt" in job["error"]), job
    assert not stored.exists() and _counts(catalogue) == (0, 0, 0, 0)


def test_lidar_routes_are_in_the_openapi_document(lidar_client):
    from openapi_spec_validator import validate

    doc = lidar_client.get("/openapi").json
    validate(doc)
    upload = doc["paths"]["/api/lidar/files"]["post"]
    assert "file" in upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"202", "401", "403", "413", "415"} <= set(upload["responses"])
    for path in ("/api/lidar/files/from-path", "/api/lidar/jobs/{job_id}", "/api/lidar/tiles",
                 "/api/lidar/buildings/{building_id}/cityjson", "/api/lidar/buildings/{building_id}/glb",
                 "/api/lidar/export/cityjson", "/api/lidar/export/glb", "/api/lidar/3dtiles/tileset.json"):
        assert path in doc["paths"], path
    assert set(doc["paths"]["/api/lidar/export/cityjson"]) == {"get", "post"}
    assert json.dumps(doc)  # serialisable as served


def test_upload_over_real_http_is_streamed_and_kept_for_the_job(app, live_server, catalogue, make_user, q8_laz):
    import requests

    _, officer = make_user("officer")
    settings = app.extensions["gisserver"].settings
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    before = set(settings.upload_dir.iterdir())  # other tests' uploads (e.g. dossiers) stay as they are
    with open(q8_laz, "rb") as fh:
        resp = requests.post(f"{live_server}/api/lidar/files", headers=auth(officer), timeout=60,
                             files={"file": ("Quận 8.laz", fh, "application/octet-stream")},
                             data={"crs": "EPSG:9210", "vertical_datum": "Hon Dau"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["params"]["crs"] == "EPSG:9210" and resp.json()["params"]["name"] == "Quận 8.laz"
    assert set(settings.upload_dir.iterdir()) == before  # the streamed part went to a temporary folder, now gone
    [kept] = list((settings.var_dir / "lidar" / "files").iterdir())
    assert kept.read_bytes() == q8_laz.read_bytes()
    status = requests.get(f"{live_server}/api/lidar/jobs/{resp.json()['id']}", headers=auth(officer), timeout=30)
    assert status.json()["status"] == "queued"


def test_worker_command_runs_the_queue(database_url, catalogue, tmp_path, capsys):
    from lidar.worker import main

    assert main(["--database-url", database_url, "--once", "--output", str(tmp_path)]) == 0
    assert "0 job(s) done" in capsys.readouterr().out


def test_single_worker_requeues_a_job_its_predecessor_left_running(lidar_client, catalogue, make_user, q8_laz):
    _, planner = make_user("planner")
    job_id = _upload(lidar_client, q8_laz, "q8.laz", planner).json["id"]
    assert jobs.claim_next(catalogue) == job_id  # a worker took it, then died
    assert jobs.claim_next(catalogue) is None
    assert jobs.requeue_running(catalogue) == 1
    state = lidar_client.get(f"/api/lidar/jobs/{job_id}", headers=auth(planner)).json
    assert state["status"] == "queued" and state["progress"] == 0 and "requeued" in state["message"]
    assert jobs.claim_next(catalogue) == job_id


def test_a_job_whose_worker_stopped_beating_is_taken_again(lidar_client, catalogue, make_user, q8_laz):
    from sqlalchemy import text, update

    _, planner = make_user("planner")
    job_id = _upload(lidar_client, q8_laz, "q8.laz", planner).json["id"]
    assert jobs.claim_next(catalogue) == job_id  # a worker took it: its heartbeat is fresh
    assert jobs.claim_next(catalogue) is None  # busy, not dead: no second worker takes it
    with catalogue.begin() as conn:  # no heartbeat for ten minutes: the worker died
        conn.execute(update(schema.job).where(schema.job.c.id == job_id)
                     .values(heartbeat_at=func.now() - text("interval '10 minutes'")))
    assert jobs.claim_next(catalogue, stale_after=3600) is None
    assert jobs.claim_next(catalogue, stale_after=120) == job_id
    assert jobs.claim_next(catalogue, stale_after=120) is None  # the new claim beat


def test_the_heartbeat_is_written_while_a_job_runs(lidar_client, catalogue, make_user, q8_laz):
    import time

    from sqlalchemy import text, update

    _, planner = make_user("planner")
    job_id = _upload(lidar_client, q8_laz, "q8.laz", planner).json["id"]
    assert jobs.claim_next(catalogue) == job_id

    def beat():
        with catalogue.connect() as conn:
            return conn.execute(select(func.now() - schema.job.c.heartbeat_at).where(
                schema.job.c.id == job_id)).scalar()

    with catalogue.begin() as conn:
        conn.execute(update(schema.job).where(schema.job.c.id == job_id)
                     .values(heartbeat_at=func.now() - text("interval '1 hour'")))
    with jobs._Heartbeat(catalogue, job_id, interval=0.05) as heartbeat:
        deadline = time.monotonic() + 10
        while beat().total_seconds() > 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beat().total_seconds() < 60
    assert not heartbeat._thread.is_alive()


def test_cadastral_footprint_outside_the_surveyed_cells_keeps_its_heights(catalogue):
    """A cadastral building where the run's DTM has no value is left as it was (never NaN heights)."""
    from geoalchemy2.shape import from_shape
    from shapely.geometry import MultiPolygon, box
    from sqlalchemy import insert

    from gisserver.crs import CITY_SRID
    from lidar.grid import GridSpec
    from lidar.store import store_run_buildings

    x0, y0 = 603_400.0, 1_191_400.0
    inside, outside = box(x0 + 2, y0 + 2, x0 + 12, y0 + 12), box(x0 + 22, y0 + 2, x0 + 32, y0 + 12)
    with catalogue.begin() as conn:
        ids = [conn.execute(insert(schema.building).values(
            source="cadastre", height=10.0, floors=3, geom=from_shape(MultiPolygon([g]), srid=CITY_SRID)
        ).returning(schema.building.c.id)).scalar_one() for g in (inside, outside)]
    grid = GridSpec(x0, y0 + 20, 0.5, 80, 40)
    dtm = np.full(grid.shape, 1.0)
    dtm[:, 40:] = np.nan  # the second footprint lies on cells no tile produced
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(x0 + 3, x0 + 11, 400), rng.uniform(x0 + 23, x0 + 31, 400)])
    y = rng.uniform(y0 + 3, y0 + 11, 800)
    z = np.full(800, 12.0)
    with catalogue.begin() as conn:
        done = store_run_buildings(conn, [], x, y, z, np.ones(800, np.uint8), dtm, grid,
                                   area=box(x0, y0, x0 + 40, y0 + 20))
        rows = {r.id: r for r in conn.execute(select(schema.building).where(schema.building.c.id.in_(ids)))}
    assert done["cadastral_updated"] == 1 and done["stored"] == []
    measured, kept = rows[ids[0]], rows[ids[1]]
    assert (measured.ground_z, measured.roof_p70, measured.height) == (1.0, 12.0, 11.0)
    assert (kept.ground_z, kept.roof_p70, kept.height, kept.floors) == (None, None, 10.0, 3)


def test_lidar_limit_applies_instead_of_the_general_upload_limit(database_url, catalogue, make_user, relocated_las,
                                                                  tmp_path):
    """Point clouds are larger than vector files: a LAS above GISSERVER_MAX_UPLOAD_MB but below the LiDAR limit."""
    from gisserver import create_app

    size = relocated_las.stat().st_size
    assert 2 << 20 < size < 7 << 20
    app = create_app(Settings.from_env(database_url=database_url, var_dir=tmp_path, secret_key="test-secret",
                                       max_upload_mb=1, token_cache_seconds=0, lidar_max_upload_mb=8))
    _, planner = make_user("planner")
    client = app.test_client()
    assert _upload(client, relocated_las, "q8.las", planner).status_code == 202
    assert _upload(client, relocated_las.read_bytes() * 2, "q8.las", planner).status_code == 413
    app.extensions["gisserver"].engine.dispose()


def test_area_beyond_the_ingest_limit_is_400(database_url, catalogue, make_user, q8_laz, tmp_path):
    """The crop covers 0.0165 km2 (header bounds); an ingest limited to 0.01 km2 refuses it at once."""
    from gisserver import create_app

    app = create_app(Settings.from_env(database_url=database_url, var_dir=tmp_path, secret_key="test-secret",
                                       token_cache_seconds=0, lidar_max_ingest_km2=0.01))
    _, planner = make_user("planner")
    resp = _upload(app.test_client(), q8_laz, "q8.laz", planner)
    assert resp.status_code == 400 and resp.json["code"] == "invalid-input", resp.json
    assert resp.json["limit_km2"] == 0.01 and 0.015 < resp.json["area_km2"] < 0.018
    assert "--per-tile" in resp.json["detail"]
    with catalogue.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.job)).scalar_one() == 0
    app.extensions["gisserver"].engine.dispose()


def test_a_queued_upload_can_be_cancelled(lidar_app, lidar_client, catalogue, make_user, q8_laz):
    _, officer = make_user("officer")
    _, public = make_user("public")
    files_dir = lidar_app.extensions["gisserver"].settings.var_dir / "lidar" / "files"
    before = set(files_dir.iterdir()) if files_dir.exists() else set()
    resp = _upload(lidar_client, q8_laz, "q8.laz", officer)
    job_id = resp.json["id"]
    [stored] = set(files_dir.iterdir()) - before
    assert lidar_client.post(f"/api/lidar/jobs/{job_id}/cancel", headers=auth(public)).status_code == 403
    done = lidar_client.post(f"/api/lidar/jobs/{job_id}/cancel", headers=auth(officer))
    assert done.status_code == 200 and done.json["status"] == "cancelled"
    assert not stored.exists()
    assert lidar_client.post(f"/api/lidar/jobs/{job_id}/cancel", headers=auth(officer)).status_code == 409
    assert lidar_client.post("/api/lidar/jobs/999999/cancel", headers=auth(officer)).status_code == 404
    assert _run_worker(lidar_app, catalogue) == 0  # a cancelled job is not taken
    with catalogue.connect() as conn:
        actions = conn.execute(select(schema.audit_log.c.action).where(schema.audit_log.c.target_id == str(job_id))
                               .order_by(schema.audit_log.c.id)).scalars().all()
    assert actions == ["lidar.ingest.submit", "lidar.ingest.cancel"]
