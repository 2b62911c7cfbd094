"""A finished flood run as map layers: the flood_steps layer with its TIME and run dimensions in
WMS 1.3.0 / 1.1.1 (read with OWSLib), GetMap and GetFeatureInfo per time step, and XYZ depth tiles
per saved step, with the access rule of the layer (staff only)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from affine import Affine
from owslib.wms import WebMapService

from flood.jobs import work
from flood.tables import FLOOD_LAYER
from gisserver.crs import CITY_SRID, pyproj_crs, transformer
from lidar.catalogue import register_raster
from tests.conftest import auth
from tests.tiles.images import decode_image

X0, Y1, CELL, N = 603000.0, 1191200.0, 2.0, 60
START = "2026-11-01T00:00:00Z"
CENTRE = (X0 + N * CELL / 2, Y1 - N * CELL / 2)  # the bottom of the hollow


@pytest.fixture(autouse=True)
def fresh_catalogue_snapshot(app):
    """Map services see the new layer and its versions at once (ttl 0)."""
    from tiles.snapshot import CatalogueSnapshot

    app.extensions["gisserver.tiles_catalogue"] = CatalogueSnapshot(app.extensions["gisserver"].engine, ttl=0)
    yield
    app.extensions.pop("gisserver.tiles_catalogue", None)


@pytest.fixture
def finished_run(client, catalogue, make_user, tmp_path):
    """A 1-hour 10-year storm on a 120 m square with a 0.8 m deep hollow, run by a worker;
    returns (run status JSON, planner token)."""
    yy, xx = np.mgrid[0:N, 0:N]
    r = np.hypot(xx - N / 2, yy - N / 2) * CELL
    z = (1.2 - 0.8 * np.exp(-(r / 25.0) ** 2)).astype("float32")
    path = tmp_path / "dtm.tif"
    with rasterio.open(path, "w", driver="GTiff", width=N, height=N, count=1, dtype="float32",
                       crs=pyproj_crs(CITY_SRID).to_wkt(), transform=Affine(CELL, 0, X0, 0, -CELL, Y1)) as dst:
        dst.write(z, 1)
    with catalogue.begin() as conn:
        raster_id = register_raster(conn, name="hollow_dtm", kind="dtm", path=path, srid=CITY_SRID,
                                    vertical_datum="Hon Dau", sources=[])
    _, planner = make_user("planner")
    body = {"rain": {"return_period_years": 10}, "duration_hours": 1, "raster_id": raster_id, "start_time": START}
    run = client.post("/api/flood/runs", json=body, headers=auth(planner)).json
    assert work(catalogue, tmp_path / "flood", once=True) == 1
    done = client.get(f"/api/flood/runs/{run['id']}", headers=auth(planner)).json
    assert done["status"] == "succeeded"
    return done, planner


def _lonlat_box(margin: float = 10.0):
    to_ll = transformer(CITY_SRID, 4326)
    w, s = to_ll.transform(X0 - margin, Y1 - N * CELL - margin)
    e, n = to_ll.transform(X0 + N * CELL + margin, Y1 + margin)
    return w, s, e, n


def _getmap(client, token, version="1.3.0", **extra):
    w, s, e, n = _lonlat_box()
    params = {"SERVICE": "WMS", "VERSION": version, "REQUEST": "GetMap", "LAYERS": FLOOD_LAYER, "STYLES": "",
              "FORMAT": "image/png", "TRANSPARENT": "true", "WIDTH": "128", "HEIGHT": "128",
              "CRS" if version == "1.3.0" else "SRS": "CRS:84" if version == "1.3.0" else "EPSG:4326",
              "BBOX": f"{w},{s},{e},{n}", **extra}
    return client.get("/wms", query_string=params, headers=auth(token) if token else {})


def _exception_code(resp) -> str:
    root = ET.fromstring(resp.data)
    return next(el.get("code") for el in root.iter() if el.tag.endswith("ServiceException"))


def test_run_publishes_time_steps_in_the_layer(finished_run):
    run, _ = finished_run
    result = run["result"]
    assert result["layer"] == FLOOD_LAYER and result["start_time"].startswith("2026-11-01T00:00:00")
    # a 1-hour run saves a depth map every 5 minutes: 12 steps, each an instant of the layer
    assert result["times"] == list(range(300, 3601, 300))
    assert result["valid_times"][0] == "2026-11-01T00:05:00Z" and result["valid_times"][-1] == "2026-11-01T01:00:00Z"
    tiles = next(link for link in run["links"] if link["rel"] == "tiles")["href"]
    assert tiles.endswith(f"/api/flood/runs/{run['id']}/tiles/{{t}}/{{z}}/{{x}}/{{y}}.png")


@pytest.mark.parametrize("version", ["1.3.0", "1.1.1"])
def test_owslib_reads_the_time_and_run_dimensions(live_server, finished_run, version):
    run, planner = finished_run
    wms = WebMapService(live_server + "/wms", version=version, timeout=60, headers=auth(planner))
    layer = wms[FLOOD_LAYER]
    assert layer.timepositions == run["result"]["valid_times"]
    if version == "1.3.0":
        assert layer.defaulttimeposition == run["result"]["valid_times"][-1]
        assert layer.dimensions["run"]["values"] == [str(run["id"])]
        assert layer.dimensions["run"]["default"] == str(run["id"])
    img = wms.getmap(layers=[FLOOD_LAYER], srs="EPSG:4326" if version == "1.1.1" else "CRS:84",
                     bbox=_lonlat_box(), size=(128, 128), format="image/png", transparent=True,
                     time=run["result"]["valid_times"][-1])
    assert decode_image(img.read())[3].max() > 0  # the last step is drawn
    anonymous = WebMapService(live_server + "/wms", version=version, timeout=60)
    assert FLOOD_LAYER not in anonymous.contents  # staff only, like the flood API


@pytest.mark.parametrize("version", ["1.3.0", "1.1.1"])
def test_getmap_follows_time_and_run(client, finished_run, version):
    run, planner = finished_run
    times = run["result"]["valid_times"]
    first = _getmap(client, planner, version, TIME=times[0])
    last = _getmap(client, planner, version, TIME=times[-1], DIM_RUN=str(run["id"]))
    assert first.status_code == last.status_code == 200 and first.mimetype == "image/png"
    early, late = decode_image(first.data)[3], decode_image(last.data)[3]  # alpha bands
    # the hollow fills: more of the map is water at the end than five minutes in
    assert (late > 0).sum() > (early > 0).sum() > 0
    assert _getmap(client, planner, version).data == last.data  # no TIME, no DIM_RUN: the latest
    for bad, code in (({"TIME": "2026-11-01T00:07:00Z"}, "InvalidDimensionValue"),
                      ({"TIME": times[0], "DIM_RUN": "999"}, "InvalidDimensionValue"),
                      ({"DIM_RUN": "first"}, "InvalidParameterValue"),
                      ({"TIME": "soon"}, "InvalidParameterValue")):
        resp = _getmap(client, planner, version, **bad)
        assert resp.status_code == 400 and _exception_code(resp) == code, bad
    assert _exception_code(_getmap(client, None, version, TIME=times[0])) == "LayerNotDefined"


def test_getfeatureinfo_gives_the_band_at_a_time(client, finished_run):
    run, planner = finished_run
    w, s, e, n = _lonlat_box()
    params = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetFeatureInfo", "LAYERS": FLOOD_LAYER,
              "QUERY_LAYERS": FLOOD_LAYER, "STYLES": "", "CRS": "CRS:84", "BBOX": f"{w},{s},{e},{n}",
              "WIDTH": "128", "HEIGHT": "128", "I": "64", "J": "64", "INFO_FORMAT": "application/json",
              "TIME": run["result"]["valid_times"][-1], "DIM_RUN": str(run["id"])}
    features = client.get("/wms", query_string=params, headers=auth(planner)).json["features"]
    assert features and {f["properties"]["run_id"] for f in features} == {run["id"]}
    props = features[0]["properties"]
    assert props["time_s"] == 3600 and props["valid_time"].startswith("2026-11-01T01:00:00")
    assert props["min_depth"] >= 0.1


def _tile_of(e: float, n: float, z: int) -> tuple[int, int]:
    lon, lat = transformer(CITY_SRID, 4326).transform(e, n)
    x = int((lon + 180) / 360 * 2**z)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * 2**z)
    return x, y


def test_xyz_depth_tiles_per_time_step(client, finished_run):
    run, planner = finished_run
    x, y = _tile_of(*CENTRE, 17)
    url = f"/api/flood/runs/{run['id']}/tiles/{{t}}/17/{x}/{y}.png"
    early = client.get(url.format(t=300), headers=auth(planner))
    late = client.get(url.format(t=3600), headers=auth(planner))
    assert early.status_code == late.status_code == 200 and late.mimetype == "image/png"
    assert early.headers["ETag"] != late.headers["ETag"]
    a, b = decode_image(early.data), decode_image(late.data)
    assert (b[3] > 0).sum() > (a[3] > 0).sum() > 0  # more wet pixels an hour in than after 5 minutes
    assert b[3].shape == (256, 256)
    again = client.get(url.format(t=3600), headers={**auth(planner), "If-None-Match": late.headers["ETag"]})
    assert again.status_code == 304

    missing = client.get(url.format(t=301), headers=auth(planner))
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    assert "3600" in missing.json["detail"]
    assert client.get(url.format(t="soon"), headers=auth(planner)).status_code == 400
    assert client.get(f"/api/flood/runs/999/tiles/300/17/{x}/{y}.png", headers=auth(planner)).status_code == 404
    assert client.get(url.format(t=300)).status_code == 404  # anonymous: the layer is internal


def test_officers_read_results_and_the_legend_is_public(client, finished_run, make_user):
    run, _ = finished_run
    _, officer = make_user("officer")
    x, y = _tile_of(*CENTRE, 17)
    tile = client.get(f"/api/flood/runs/{run['id']}/tiles/3600/17/{x}/{y}.png", headers=auth(officer))
    assert tile.status_code == 200
    legend = client.get("/api/flood/legend.json").json
    assert legend["unit"] == "m" and legend["min"] == 0 and legend["max"] == 2 and len(legend["stops"]) == 6
    assert client.get("/api/flood/legend.png").mimetype == "image/png"
