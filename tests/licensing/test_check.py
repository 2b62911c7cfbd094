"""Compliance check: every rule passes on a compliant house and fails, with its geometry, on a bad one."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box, shape
from sqlalchemy import insert

from gisserver import schema
from gisserver.crs import city_crs
from gisserver.errors import InvalidGeometry, InvalidInput
from licensing import check, corridors, register
from licensing.geometry import to_db
from tests.licensing.helpers import E0, N0, add_power_line, add_red_line, add_road, add_zone, rect

# a 12 m road along y = -10: red lines at y = -4 and y = -16; the parcel fronts the northern one
PARCEL = rect(0, -4, 10, 21)  # 250 m2
ZONE = dict(zone_code="R2", max_density=0.8, max_far=5.0, max_floors=5, max_height=21.0, min_setback=0.0,
            min_ground_elevation=2.0, subdivision_zone=2, plan_decision="QH 1/2000 (test)")


@pytest.fixture
def site(lic_db):
    with lic_db.begin() as conn:
        road = add_road(conn, [(-100, -10), (100, -10)], row_width=12, name="Đường số 7")
        add_red_line(conn, [(-100, -4), (100, -4)], road_id=road)
        add_red_line(conn, [(-100, -16), (100, -16)], road_id=road)
        add_zone(conn, rect(-100, -4, 100, 100), **ZONE)
        parcel = register.create_parcel(conn, "officer1", ward_code="26734", sheet_no=5, parcel_no=1,
                                        geom=PARCEL, land_use="ODT")["created"][0]
    return parcel["id"]


def _by_rule(report):
    return {r["rule"]: r for r in report["results"]}


def _run(engine, parcel_id, proposal, **kw):
    with engine.connect() as conn:
        return check.check_building(conn, parcel_id, proposal, **kw)


def test_compliant_house_passes(lic_db, site):
    proposal = check.Proposal(footprint=rect(0, -4, 10, 12), floors=4, height=15.0, floor_elevation=2.2)
    report = _run(lic_db, site, proposal)
    results = _by_rule(report)
    assert report["overall"] == "pass", [r for r in report["results"] if r["status"] == "fail"]
    assert results["density"]["measured"] == pytest.approx(0.64)
    assert results["density"]["limit"] == pytest.approx(0.65)  # Table 2.8 at 250 m2, below the zone's 0.8
    assert results["density"]["rule_table"] == {"rule_id": "density_individual_house", "version": 1, "verify": False}
    assert "QCVN 01:2021" in results["density"]["legal_basis"]
    assert results["far"]["measured"] == pytest.approx(2.56) and results["far"]["limit"] == 5
    assert results["red_line_setback"]["limit"] == 0 and results["red_line_setback"]["measured"] == 0
    assert results["floors_by_row"]["limit"] == 7
    assert results["floor_vs_flood"]["limit"] == pytest.approx(2.1)
    assert "verify" in results["floor_vs_flood"]["legal_basis"]
    assert results["floor_vs_dtm"]["status"] == "not_evaluated"
    assert results["subdivision_min_lot"]["status"] == "not_evaluated"
    assert all(r["geometry"] is None for r in report["results"])


def test_bad_building_fails_each_rule_with_its_geometry(lic_db, site, tmp_path):
    with lic_db.begin() as conn:
        add_power_line(conn, [(5, -50), (5, 50)], kv=22, conductor="bare")
        corridors.generate_corridors(conn, "admin1")
        _register_dtm(conn, tmp_path, value=1.7)
    proposal = check.Proposal(footprint=rect(0, -5, 10, 20), floors=8, height=30.0, floor_elevation=1.5)
    report = _run(lic_db, site, proposal, raster_root=tmp_path)
    results = _by_rule(report)
    assert report["overall"] == "fail"
    failing = {k for k, r in results.items() if r["status"] == "fail"}
    assert failing == {"inside_parcel", "red_line_crossing", "red_line_setback", "density", "far", "zone_floors",
                       "zone_height", "floors_by_row", "protection_corridors", "floor_vs_dtm", "floor_vs_flood"}
    assert shape(results["inside_parcel"]["geometry"]).area == pytest.approx(10)
    assert results["red_line_setback"]["limit"] == 6  # road < 19 m, H >= 28 m
    setback_fault = shape(results["red_line_setback"]["geometry"])
    assert setback_fault.bounds[3] == pytest.approx(N0 + 2)  # the strip within 6 m of the red line
    corridor = shape(results["protection_corridors"]["geometry"])
    assert corridor.area == pytest.approx(4 * 25, rel=0.01)  # 2 m each side of the 22 kV bare line
    assert "22 kV" in results["protection_corridors"]["message"]
    assert results["floor_vs_dtm"]["limit"] == pytest.approx(1.7)
    assert results["zone_floors"]["limit"] == 5 and results["floors_by_row"]["limit"] == 7
    assert "Decree 14/2014" in results["protection_corridors"]["legal_basis"]


def test_flood_level_from_flood_rasters(lic_db, site, tmp_path):
    proposal = check.Proposal(footprint=rect(0, -4, 10, 12), floors=4, height=15.0, floor_elevation=2.3)
    with lic_db.begin() as conn:
        _register_dtm(conn, tmp_path, value=1.2)
        _register_dtm(conn, tmp_path, value=0.9, kind="flood_depth", name="depth_2050")
    res = _by_rule(_run(lic_db, site, proposal, raster_root=tmp_path))["floor_vs_flood"]
    assert res["status"] == "fail" and res["limit"] == pytest.approx(1.2 + 0.9 + 0.3)
    assert "depth_2050" in res["message"]
    with lic_db.begin() as conn:  # a water-level result wins over DTM + depth
        _register_dtm(conn, tmp_path, value=1.6, kind="flood_level", name="level_2050")
    res = _by_rule(_run(lic_db, site, proposal, raster_root=tmp_path))["floor_vs_flood"]
    assert res["status"] == "pass" and res["limit"] == pytest.approx(2.0)  # HCMC practice level 2.0 > 1.6 + 0.3
    assert "level_2050" in res["message"] and "HCMC practice" in res["message"]


def test_subdivision_lots_must_lie_in_the_parcel(lic_db, site):
    lots = (rect(0, -4, 5, 21), rect(5, -4, 12, 21))
    p = check.Proposal(footprint=rect(0, -4, 4, 10), floors=3, height=11, subdivision_lots=lots)
    res = _by_rule(_run(lic_db, site, p))["subdivision_min_lot"]
    assert res["status"] == "fail" and shape(res["geometry"]).area == pytest.approx(50)


LAND_USE_CASES = [
    ("ODT", "civil", "pass"), ("CLN", "civil", "fail"), ("odt+cln", "civil", "pass"), ("ODT", "industrial", "fail"),
    (None, "civil", "not_evaluated"),
]


def test_land_use_purpose(lic_db):
    for i, (land_use, use, status) in enumerate(LAND_USE_CASES):  # one database setup for all cases
        with lic_db.begin() as conn:
            parcel = register.create_parcel(conn, "officer1", ward_code="26734", sheet_no=6, parcel_no=1 + i,
                                            geom=rect(300 + 30 * i, 0, 320 + 30 * i, 20), land_use=land_use)
        p = check.Proposal(footprint=rect(302 + 30 * i, 2, 318 + 30 * i, 18), floors=2, height=8, use=use)
        res = _by_rule(_run(lic_db, parcel["created"][0]["id"], p))["land_use"]
        assert res["status"] == status, (land_use, use)
        if status == "fail":
            assert "convert the land-use purpose" in res["message"]
            assert shape(res["geometry"]).area == pytest.approx(400)


def test_existing_urban_small_lot_exception(lic_db):
    with lic_db.begin() as conn:
        parcel = register.create_parcel(conn, "officer1", ward_code="26734", sheet_no=5, parcel_no=2,
                                        geom=rect(200, 0, 209.5, 10), land_use="ODT")["created"][0]
    full = check.Proposal(footprint=rect(200, 0, 209.5, 10), floors=5, height=18, existing_urban=True)
    res = _by_rule(_run(lic_db, parcel["id"], full))["density"]
    assert res["status"] == "pass" and res["limit"] == 1.0 and "exception" in res["message"]
    tall = check.Proposal(footprint=rect(200, 0, 209.5, 10), floors=8, height=26, existing_urban=True)
    assert _by_rule(_run(lic_db, parcel["id"], tall))["density"]["status"] == "fail"
    # no zone, no road nearby: those rules are not evaluated, not passed
    results = _by_rule(_run(lic_db, parcel["id"], full))
    assert results["zone_floors"]["status"] == "not_evaluated"
    assert results["red_line_setback"]["status"] == "not_evaluated"


def test_subdivision_lot_size_and_frontage(lic_db, site):
    good = (rect(0, -4, 4, 21), rect(4, -4, 10, 21))  # 4 m and 6 m frontage, 100 and 150 m2 (zone 2: 50 m2, 4 m)
    p = check.Proposal(footprint=rect(0, -4, 4, 10), floors=3, height=11, subdivision_lots=good)
    res = _by_rule(_run(lic_db, site, p))["subdivision_min_lot"]
    assert res["status"] == "pass" and res["measured"] == pytest.approx(100)
    narrow = (rect(0, -4, 3, 21), rect(3, -4, 10, 21))
    p = check.Proposal(footprint=rect(0, -4, 3, 10), floors=3, height=11, subdivision_lots=narrow)
    res = _by_rule(_run(lic_db, site, p))["subdivision_min_lot"]
    assert res["status"] == "fail" and "frontage 3.00 m" in res["message"]
    assert shape(res["geometry"]).area == pytest.approx(75)


def test_checks_follow_the_rule_version_in_force(lic_db, site):
    from datetime import date

    from licensing import rules

    with lic_db.begin() as conn:
        rules.publish_rule_version(conn, "admin1", "far_limit", data={"max_far": 2.0},
                                   effective_from=date(2030, 1, 1))
    p = check.Proposal(footprint=rect(0, -4, 10, 12), floors=4, height=15.0)
    assert _by_rule(_run(lic_db, site, p))["far"]["status"] == "pass"
    later = _by_rule(_run(lic_db, site, p, on=date(2030, 6, 1)))["far"]
    assert later["status"] == "fail" and later["limit"] == 2 and later["rule_table"]["version"] == 2


def test_proposal_from_json_in_wgs84_and_errors(lic_db, site):
    from gisserver.crs import transformer

    t = transformer(909210, 4326)
    ring = [t.transform(x, y) for x, y in rect(1, -3, 9, 11).exterior.coords]
    body = {"parcel_id": site, "crs": "EPSG:4326", "floors": 3, "height": 11.5, "floor_elevation": 2.3,
            "footprint": {"type": "Polygon", "coordinates": [ring]}}
    parcel_id, proposal = check.proposal_from_json(body)
    assert parcel_id == site and proposal.footprint.area == pytest.approx(112, rel=1e-4)
    with pytest.raises(InvalidGeometry, match="longitude/latitude"):
        check.proposal_from_json({**body, "crs": None})
    ring = [[E0, N0], [E0 + 10, N0 + 10], [E0 + 10, N0], [E0, N0 + 10], [E0, N0]]
    bowtie = {"type": "Polygon", "coordinates": [ring]}
    with pytest.raises(InvalidGeometry, match="invalid geometry"):
        check.proposal_from_json({**body, "crs": "EPSG:9210", "footprint": bowtie})
    for bad in ({"floors": "3"}, {"floors": 0}, {"height": -1}, {"use": "nuclear"}, {"parcel_id": "x"}):
        with pytest.raises(InvalidInput):
            check.proposal_from_json({**body, **bad})


def _register_dtm(conn, folder, value: float, *, kind: str = "dtm", name: str = "dtm_test"):
    x0, y0, size = E0 - 50, N0 + 60, 120
    path = folder / f"{name}.tif"
    data = np.full((size, size), value, dtype="float32")
    data[0, 0] = -9999  # nodata cells are never sampled
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32",
                       crs=city_crs().to_wkt(), transform=Affine(1.0, 0.0, x0, 0.0, -1.0, y0), nodata=-9999) as dst:
        dst.write(data, 1)
    conn.execute(insert(schema.raster).values(
        name=name, kind=kind, path=path.name, resolution=1.0, srid=909210, width=size, height=size,
        footprint=to_db(box(x0, y0 - size, x0 + size, y0), multi=False),
    ))


def test_report_with_parcel_history_and_printable_page(lic_db, site):
    from licensing import report

    with lic_db.begin() as conn:
        v2 = register.change_attributes(conn, "officer1", site, {"address": "7 Đường số 7"})["created"][0]["id"]
    proposal = check.Proposal(footprint=rect(0, -4, 10, 12), floors=4, height=15.0, floor_elevation=2.2)
    with lic_db.connect() as conn:
        result = check.check_building(conn, v2, proposal, with_history=True)
    history = result["parcel"]["history"]
    assert [v["id"] for v in history["versions"]] == [site, v2]
    assert [(e["parent_id"], e["operation"]) for e in history["ancestry"]] == [(site, "attributes")]
    page = report.render_html(result)
    assert "Parcel history" in page and "<svg" in page and "attributes of version" in page
    assert report.render_pdf(result).startswith(b"%PDF")
