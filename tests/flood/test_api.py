"""Planners' flood API: start a run, the worker runs it, status, results and affected assets."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon, box
from sqlalchemy import insert

from flood.jobs import work
from gisserver import schema
from gisserver.crs import CITY_SRID, pyproj_crs
from lidar.catalogue import register_raster
from tests.conftest import auth

X0, Y1, CELL, N = 603000.0, 1191200.0, 2.0, 60


@pytest.fixture
def dtm(catalogue, tmp_path):
    """A 120 m square with a 0.8 m deep hollow in the middle, registered as a DTM."""
    yy, xx = np.mgrid[0:N, 0:N]
    r = np.hypot(xx - N / 2, yy - N / 2) * CELL
    z = (1.2 - 0.8 * np.exp(-(r / 25.0) ** 2)).astype("float32")
    path = tmp_path / "dtm.tif"
    with rasterio.open(path, "w", driver="GTiff", width=N, height=N, count=1, dtype="float32",
                       crs=pyproj_crs(CITY_SRID).to_wkt(), transform=Affine(CELL, 0, X0, 0, -CELL, Y1)) as dst:
        dst.write(z, 1)
    cx, cy = X0 + N * CELL / 2, Y1 - N * CELL / 2
    with catalogue.begin() as conn:
        raster_id = register_raster(conn, name="test_dtm", kind="dtm", path=path, srid=CITY_SRID,
                                    vertical_datum="Hon Dau", sources=[])
        hollow = MultiPolygon([box(cx - 6, cy - 6, cx + 6, cy + 6)])
        conn.execute(insert(schema.parcel).values(ward_code="1", sheet_no=1, parcel_no=1, land_use="ODT",
                                                  geom=from_shape(hollow, srid=CITY_SRID)))
    return raster_id


def test_planner_runs_a_scenario_and_sees_affected_assets(client, catalogue, dtm, make_user, tmp_path):
    _, planner = make_user("planner")
    body = {"rain": {"return_period_years": 10}, "tide_level_m": 1.6, "duration_hours": 1, "raster_id": dtm}
    resp = client.post("/api/flood/runs", json=body, headers=auth(planner))
    assert resp.status_code == 202, resp.json
    run = resp.json
    assert run["status"] == "queued" and run["progress"] == 0
    self_url = next(link["href"] for link in run["links"] if link["rel"] == "self")
    assert client.get(self_url + "/affected", headers=auth(planner)).status_code == 409  # not run yet

    assert work(catalogue, tmp_path / "flood", once=True) == 1
    done = client.get(self_url, headers=auth(planner)).json
    assert done["status"] == "succeeded" and done["progress"] == 100
    assert done["result"]["times"] and done["result"]["max_depth_m"] > 0.05
    assert abs(done["result"]["mass_balance"]["relative_error"]) < 1e-3

    affected = client.get(self_url + "/affected", headers=auth(planner)).json["items"]
    assert [a["kind"] for a in affected] == ["parcels"] and affected[0]["max_depth"] > 0.05
    csv = client.get(self_url + "/affected?f=csv", headers=auth(planner))
    assert csv.mimetype == "text/csv" and "parcels" in csv.get_data(as_text=True)


def test_scenarios_are_listed_and_bad_requests_refused(client, catalogue, dtm, make_user):
    _, planner = make_user("planner")
    _, officer = make_user("officer")
    keys = {s["key"] for s in client.get("/api/flood/scenarios", headers=auth(planner)).json["scenarios"]}
    assert {"design-2y", "design-10y", "stress-2018", "tide-alert-3"} <= keys
    assert client.get("/api/flood/scenarios").status_code == 401
    assert client.post("/api/flood/runs", json={"scenario": "design-2y"}, headers=auth(officer)).status_code == 403
    for bad in ({"rain": {"return_period_years": 7}}, {"rain": "lots"}, {"scenario": "nope"},
                {"rain": {"return_period_years": 2}, "tide_level_m": "high"},
                {"rain": {"return_period_years": 2}, "duration_hours": 1e9},
                {"scenario": "design-2y", "raster_id": "x"}, ["design-2y"]):
        resp = client.post("/api/flood/runs", json=bad, headers=auth(planner))
        assert resp.status_code == 400 and resp.content_type == "application/problem+json", bad
    assert client.get("/api/flood/runs/999999", headers=auth(planner)).status_code == 404


def test_raster_list_shows_the_dtm_to_the_web_page(client, dtm):
    rasters = client.get("/api/rasters").json["rasters"]
    item = next(r for r in rasters if r["name"] == "test_dtm")
    assert item["kind"] == "dtm" and item["resolution"] == 2.0
    assert item["tiles"].endswith("/raster/test_dtm/{z}/{x}/{y}.png")
    west, south, east, north = item["bounds"]
    assert 106.6 < west < east < 106.8 and 10.7 < south < north < 10.8
