"""The generated demo neighbourhood: deterministic, inside the real district, coherent, loadable."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import shapely
from sqlalchemy import func, select, text

from gisserver import schema
from layers import demo
from layers.codelists import land_use_codes


@pytest.fixture(scope="module")
def data():
    return demo.generate()


def _digest(d: demo.DemoData) -> str:
    h = hashlib.sha256()
    for name in sorted(d.tables):
        for row in d.tables[name]:
            h.update(row["geom"].wkb)
            h.update(repr(sorted((k, v) for k, v in row.items() if k != "geom")).encode())
    return h.hexdigest()


def test_deterministic(data):
    assert _digest(demo.generate()) == _digest(data)
    assert _digest(demo.generate(seed=7)) != _digest(data)


def test_inside_the_real_district(data):
    district = demo.load_district()
    for name, rows in data.tables.items():
        if name in ("power_line",):
            continue  # the 110 kV line enters from outside the square on purpose
        for row in rows:
            assert district.buffer(50).contains(row["geom"]), name


def test_parcels_are_a_valid_cadastre(data):
    parcels = data.tables["parcel"]
    assert 3000 <= len(parcels) <= 10000
    geoms = [p["geom"] for p in parcels]
    assert all(shapely.is_valid(geoms))
    tree = shapely.STRtree(geoms)
    assert tree.query(geoms, predicate="overlaps").shape[1] == 0
    keys = {(p["ward_code"], p["sheet_no"], p["parcel_no"]) for p in parcels}
    assert len(keys) == len(parcels)
    codes = {c["code"] for c in land_use_codes()}
    assert {p["land_use"] for p in parcels} <= codes
    assert len({p["ward_code"] for p in parcels}) == 3


def test_buildings_inside_their_parcels(data):
    parcels = data.tables["parcel"]
    for b in data.tables["building"]:
        assert parcels[b["parcel_ref"]]["geom"].buffer(0.01).contains(b["geom"])
        assert 1 <= b["floors"] <= 9 and b["height"] > 3


def test_networks_and_zoning(data):
    assert {r["row_width"] for r in data.tables["road"]} >= {30.0, 20.0, 12.0, 7.0}
    assert {p["voltage_kv"] for p in data.tables["power_line"]} == {22.0, 110.0}
    assert len(data.tables["red_line"]) == len(data.tables["road"])
    zones = data.tables["zoning_zone"]
    assert all(z["max_density"] and z["max_far"] and z["max_floors"] for z in zones)
    union = shapely.union_all([z["geom"] for z in zones])
    ox, oy = data.origin
    assert abs(union.area - demo.SIZE**2) < 1.0  # the zones cover the whole area


def test_terrain_is_low_and_falls_to_the_canal(data):
    ox, oy = data.origin
    xs, ys = np.meshgrid(np.linspace(ox, ox + demo.SIZE, 101), np.linspace(oy, oy + demo.SIZE, 101))
    z = demo.terrain_height(xs, ys, data.origin)
    canal = data.tables["water_body"][0]["geom"]
    inside = shapely.contains_xy(canal, xs, ys)
    land = ~shapely.contains_xy(canal.buffer(3.0), xs, ys)  # past the canal's banks
    assert z[land].min() >= 0.0 and z[land].max() <= 2.5
    assert z[inside].max() < 0.0 and z[inside].min() >= -2.25


def test_load_into_postgis(catalogue, data):
    counts = demo.load(catalogue, data)
    with catalogue.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.parcel)).scalar() == counts["parcel"]
        # the generated 3857 copy and the computed area are filled by the database
        row = conn.execute(
            select(func.ST_SRID(schema.parcel.c.geom_3857), schema.parcel.c.area).limit(1)
        ).one()
        assert row[0] == 3857 and row[1] > 20
        versions = dict(conn.execute(text("SELECT name, data_version FROM layer")).all())
        assert versions["parcels"] >= 2
        assert conn.execute(text("SELECT count(*) FROM audit_log WHERE action = 'demo.load'")).scalar() == 1
        # buildings point at their parcels, red lines at their roads
        assert conn.execute(text(
            "SELECT count(*) FROM building b JOIN parcel p ON p.id = b.parcel_id "
            "WHERE ST_Within(b.geom, ST_Buffer(p.geom, 0.01))"
        )).scalar() == counts["building"]
        assert conn.execute(text("SELECT count(*) FROM red_line WHERE road_id IS NULL")).scalar() == 0


def test_synthetic_lidar_matches_the_vector_demo(data, tmp_path):
    import laspy

    from gisserver.crs import CITY_SRID, srid_from_pyproj
    from layers import demo_lidar

    ox, oy = data.origin
    # a 200 m x 200 m window across the canal
    bounds = (ox + 300, oy + 320, ox + 500, oy + 520)
    pts = demo_lidar.synthesize(data, density=4.0, bounds=bounds)
    path = demo_lidar.write_las(pts, tmp_path / "q8.laz")
    las = laspy.read(path)
    assert srid_from_pyproj(las.header.parse_crs()) == CITY_SRID
    cls = np.asarray(las.classification)
    assert {2, 5, 6, 9} <= set(np.unique(cls).tolist())
    assert las.header.point_count == len(pts["x"]) >= 4 * 200 * 200
    x, y, z = np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)
    ground = cls == 2
    # ground points lie on the demo terrain (noise 3 cm, LAS scale 1 mm)
    resid = z[ground] - demo.terrain_height(x[ground], y[ground], data.origin)
    assert abs(np.median(resid)) < 0.01 and np.percentile(np.abs(resid), 99) < 0.12
    # roof points stand at the building's cadastral height above the ground
    b = max((b for b in data.tables["building"] if b["geom"].within(shapely.box(*bounds))),
            key=lambda b: b["geom"].area)
    inside = shapely.contains_xy(b["geom"].buffer(-0.5), x, y) & (cls == 6)
    c = b["geom"].centroid
    expected = demo.terrain_height(np.array([c.x]), np.array([c.y]), data.origin)[0] + b["height"]
    assert inside.sum() > 20 and abs(np.median(z[inside]) - expected) < 0.05
    # the canal is water at the canal level
    water = cls == 9
    assert abs(np.median(z[water]) - demo_lidar.CANAL_WATER_LEVEL) < 0.02
