"""WMS 1.3.0 / 1.1.1 checked with OWSLib over real HTTP, plus direct requests for every CRS,
formats, exceptions, legends, feature info, access and the TIME dimension."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from owslib.wms import WebMapService
from sqlalchemy import text

from gisserver.crs import CITY_SRID, transformer
from tests.conftest import auth
from tests.tiles.conftest import BEN_THANH, lonlat
from tests.tiles.images import decode_image

E0, N0 = BEN_THANH
# a 320 m square: parcels occupy its lower middle, its upper-left corner is empty
CITY_BOX = (E0 - 80, N0 - 80, E0 + 240, N0 + 240)
PARCEL = (E0 + 20, N0 + 20)           # inside the first parcel
EMPTY = (E0 - 70, N0 + 230)           # nothing here
OGC = "{http://www.opengis.net/ogc}"


def lonlat_box():
    w, s = lonlat(CITY_BOX[0], CITY_BOX[1])
    e, n = lonlat(CITY_BOX[2], CITY_BOX[3])
    return (w, s, e, n)


def box_in(srid: int):
    t = transformer(CITY_SRID, srid)
    x0, y0 = t.transform(CITY_BOX[0], CITY_BOX[1])
    x1, y1 = t.transform(CITY_BOX[2], CITY_BOX[3])
    return (x0, y0, x1, y1)


def pixel(point, srid: int, size: int = 256):
    x, y = transformer(CITY_SRID, srid).transform(*point)
    b = box_in(srid)
    return int((x - b[0]) / (b[2] - b[0]) * size), int((b[3] - y) / (b[3] - b[1]) * size)


def is_painted(img: np.ndarray, px, py) -> bool:
    """Anything but white / fully transparent around (px, py)."""
    patch = img[:, max(py - 1, 0):py + 2, max(px - 1, 0):px + 2]
    if img.shape[0] == 4 and patch[3].max() == 0:
        return False
    return bool((patch[:3] < 245).any())


def getmap(client, version="1.3.0", crs="EPSG:3857", bbox=None, layers="parcels,roads", **extra):
    params = {"SERVICE": "WMS", "VERSION": version, "REQUEST": "GetMap", "LAYERS": layers, "STYLES": "",
              ("CRS" if version == "1.3.0" else "SRS"): crs, "BBOX": ",".join(map(repr, bbox)),
              "WIDTH": "256", "HEIGHT": "256", "FORMAT": "image/png", **extra}
    return client.get("/wms", query_string=params)


def exception_code(resp, version="1.3.0") -> str:
    root = ET.fromstring(resp.data)
    assert root.tag.endswith("ServiceExceptionReport") and root.get("version") == version
    return root.find(f"{OGC}ServiceException" if version == "1.3.0" else "ServiceException").get("code")


@pytest.mark.parametrize("version", ["1.3.0", "1.1.1"])
def test_owslib_capabilities_getmap_featureinfo(live_server, ben_thanh, version):
    wms = WebMapService(live_server + "/wms", version=version, timeout=60)
    assert {"parcels", "roads", "trees"} <= set(wms.contents)
    assert "telecom" not in wms.contents and "underground_works" not in wms.contents
    crs = set(wms.contents["parcels"].crsOptions)
    assert {"EPSG:9210", "EPSG:4326", "EPSG:3857"} <= crs
    if version == "1.3.0":
        assert "CRS:84" in crs
    assert "default" in wms.contents["parcels"].styles
    bbox = lonlat_box()
    img = wms.getmap(layers=["parcels", "roads"], styles=["", ""], srs="EPSG:4326", bbox=bbox,
                     size=(256, 256), format="image/png", transparent=True)
    data = img.read()
    pixels = decode_image(data)
    assert pixels.shape == (4, 256, 256)
    assert is_painted(pixels, *pixel(PARCEL, 4326)) and not is_painted(pixels, *pixel(EMPTY, 4326))
    info = wms.getfeatureinfo(layers=["parcels"], srs="EPSG:4326", bbox=bbox, size=(256, 256),
                              format="image/png", query_layers=["parcels"], info_format="application/json",
                              xy=pixel(PARCEL, 4326), feature_count=5)
    import json

    features = json.loads(info.read())["features"]
    assert len(features) == 1 and features[0]["properties"]["parcel_no"] == 1
    assert "owner_name" not in features[0]["properties"]


def test_getmap_in_each_crs_draws_features_in_place(client, ben_thanh):
    for crs, srid in (("EPSG:3857", 3857), ("EPSG:9210", CITY_SRID), ("CRS:84", 4326)):
        resp = getmap(client, crs=crs, bbox=box_in(srid))
        assert resp.status_code == 200 and resp.mimetype == "image/png", crs
        img = decode_image(resp.data)
        assert is_painted(img, *pixel(PARCEL, srid)) and not is_painted(img, *pixel(EMPTY, srid)), crs


def test_epsg4326_axis_order_130_latlon_vs_111_lonlat(client, ben_thanh):
    w, s, e, n = lonlat_box()
    new = decode_image(getmap(client, "1.3.0", "EPSG:4326", (s, w, n, e)).data)
    old = decode_image(getmap(client, "1.1.1", "EPSG:4326", (w, s, e, n)).data)
    assert is_painted(new, *pixel(PARCEL, 4326)) and is_painted(old, *pixel(PARCEL, 4326))
    assert np.abs(new.astype(int) - old.astype(int)).mean() < 1.0
    # lon/lat order in 1.3.0 is a different (empty) place: rejected or blank, never the same map
    wrong = getmap(client, "1.3.0", "EPSG:4326", (w, s, e, n))
    assert wrong.status_code in (200, 400)
    if wrong.status_code == 200:
        assert not is_painted(decode_image(wrong.data), *pixel(PARCEL, 4326))


def test_transparent_bgcolor_jpeg_and_styles(client, ben_thanh):
    b = box_in(3857)
    transparent = decode_image(getmap(client, bbox=b, TRANSPARENT="TRUE").data)
    ex, ey = pixel(EMPTY, 3857)
    assert transparent.shape[0] == 4 and transparent[3, ey, ex] == 0
    red = decode_image(getmap(client, bbox=b, BGCOLOR="0xFF0000").data)
    assert tuple(red[:3, ey, ex]) == (255, 0, 0)
    jpeg = getmap(client, bbox=b, FORMAT="image/jpeg")
    assert jpeg.mimetype == "image/jpeg" and jpeg.data[:2] == b"\xff\xd8"
    assert decode_image(jpeg.data).shape == (3, 256, 256)
    default = getmap(client, bbox=b, layers="parcels", STYLES="default")
    land_use = getmap(client, bbox=b, layers="parcels", STYLES="land_use")
    assert default.status_code == land_use.status_code == 200 and default.data != land_use.data
    wrong = getmap(client, bbox=b, layers="parcels", STYLES="nope")
    assert wrong.status_code == 400 and exception_code(wrong) == "StyleNotDefined"


@pytest.mark.parametrize("version", ["1.3.0", "1.1.1"])
def test_exceptions_are_version_correct_xml(client, ben_thanh, version):
    b = box_in(3857)
    crs_code = "InvalidCRS" if version == "1.3.0" else "InvalidSRS"
    cases = [
        (dict(bbox=b, layers="nope"), "LayerNotDefined"),
        (dict(bbox=b, layers="telecom"), "LayerNotDefined"),
        (dict(bbox=b, crs="EPSG:999999"), crs_code),
        (dict(bbox=(b[2], b[1], b[0], b[3])), "InvalidParameterValue"),
        (dict(bbox=b, FORMAT="image/tiff"), "InvalidFormat"),
        (dict(bbox=b, WIDTH="0"), "InvalidParameterValue"),
        (dict(bbox=b, WIDTH="abc"), "InvalidParameterValue"),
        (dict(bbox=b, LAYERS=""), "MissingParameterValue"),
    ]
    for kwargs, code in cases:
        extra = {k: v for k, v in kwargs.items() if k.isupper()}
        resp = getmap(client, version, kwargs.get("crs", "EPSG:3857"), kwargs["bbox"],
                      kwargs.get("layers", "parcels"), **extra)
        assert resp.status_code == 400, (kwargs, resp.data)
        expected_type = "text/xml" if version == "1.3.0" else "application/vnd.ogc.se_xml"
        assert resp.mimetype == expected_type
        assert exception_code(resp, version) == code, (kwargs, resp.data)
    bad_bbox = client.get("/wms", query_string={"SERVICE": "WMS", "VERSION": version, "REQUEST": "GetMap",
                                                "LAYERS": "parcels", "BBOX": "1,2,3", "WIDTH": 10, "HEIGHT": 10,
                                                "CRS": "EPSG:3857", "SRS": "EPSG:3857"})
    assert bad_bbox.status_code == 400 and exception_code(bad_bbox, version) == "InvalidParameterValue"
    unknown = client.get("/wms", query_string={"SERVICE": "WMS", "VERSION": version, "REQUEST": "DoMagic"})
    assert exception_code(unknown, version) == "OperationNotSupported"


def test_inimage_and_blank_exceptions(client, ben_thanh):
    b = box_in(3857)
    for mode in ("INIMAGE", "application/vnd.ogc.se_inimage"):
        resp = getmap(client, bbox=b, layers="nope", EXCEPTIONS=mode)
        assert resp.status_code == 200 and resp.mimetype == "image/png"
        img = decode_image(resp.data)
        assert img.shape == (4, 256, 256) and (img[3] > 0).any()  # the message is drawn
    blank = getmap(client, bbox=b, layers="nope", EXCEPTIONS="BLANK", TRANSPARENT="TRUE")
    img = decode_image(blank.data)
    assert blank.status_code == 200 and img.shape == (4, 256, 256) and (img[3] == 0).all()


def test_getfeatureinfo_formats(client, ben_thanh):
    b = box_in(3857)
    i, j = pixel(PARCEL, 3857)
    for fmt, marker in (("text/html", b"<table"), ("text/xml", b"<FeatureInfoResponse"),
                        ("application/json", b'"FeatureCollection"')):
        params = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetFeatureInfo", "LAYERS": "parcels",
                  "QUERY_LAYERS": "parcels", "STYLES": "", "CRS": "EPSG:3857", "BBOX": ",".join(map(str, b)),
                  "WIDTH": 256, "HEIGHT": 256, "I": i, "J": j, "INFO_FORMAT": fmt}
        resp = client.get("/wms", query_string=params)
        assert resp.status_code == 200 and resp.mimetype == fmt and marker in resp.data
        assert b"26734" in resp.data and "Nguyễn".encode() not in resp.data
        empty_i, empty_j = pixel(EMPTY, 3857)
        none = client.get("/wms", query_string={**params, "I": empty_i, "J": empty_j})
        assert b"26734" not in none.data
    bad = client.get("/wms", query_string={**params, "I": 999})
    assert bad.status_code == 400 and exception_code(bad) == "InvalidPoint"


def test_legend_graphic(client, ben_thanh):
    for layer in ("parcels", "roads", "trees"):
        resp = client.get("/wms", query_string={"SERVICE": "WMS", "REQUEST": "GetLegendGraphic", "VERSION": "1.3.0",
                                                "LAYER": layer, "FORMAT": "image/png"})
        assert resp.status_code == 200 and resp.mimetype == "image/png"
        img = decode_image(resp.data)
        assert img.shape == (4, 20, 20) and (img[3] > 0).any()
    assert client.get("/wms?SERVICE=WMS&REQUEST=GetLegendGraphic&LAYER=telecom").status_code == 400


def test_capabilities_follow_access(client, ben_thanh, make_user):
    _, admin = make_user("admin")
    anon = client.get("/wms?SERVICE=WMS&REQUEST=GetCapabilities").data
    full = client.get("/wms?SERVICE=WMS&REQUEST=GetCapabilities", headers=auth(admin)).data
    assert b"<Name>telecom</Name>" not in anon and b"<Name>telecom</Name>" in full
    _, officer = make_user("officer")
    staff = client.get("/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.1.1", headers=auth(officer)).data
    assert b"<Name>drainage</Name>" in staff and b"<Name>telecom</Name>" not in staff
    assert b"WMT_MS_Capabilities" in staff and b"<SRS>EPSG:9210</SRS>" in staff


def test_mapnik_does_not_break_pyproj_or_rasterio(client, ben_thanh):
    assert getmap(client, bbox=box_in(3857)).status_code == 200
    from rasterio.crs import CRS

    assert CRS.from_epsg(3857).to_epsg() == 3857
    assert "mapnik" not in (os.environ.get("PROJ_LIB", "") + os.environ.get("GDAL_DATA", ""))
    from pyproj import CRS as ProjCRS

    assert ProjCRS.from_epsg(9210).name.startswith("VN-2000")


@pytest.fixture
def flood_layer(ben_thanh):
    """A generic, time-varying layer (flood extents per model time step) with a TIME dimension."""
    from tiles.wms import TIME_DIMENSIONS, register_time_dimension

    with ben_thanh.begin() as conn:
        conn.execute(text(
            "CREATE TABLE layerdata.flood_extent (id bigserial PRIMARY KEY, valid_time timestamptz NOT NULL, "
            "depth float, geom geometry(MultiPolygon, 909210) NOT NULL, "
            "geom_3857 geometry(MultiPolygon, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED)"))
        conn.execute(text(
            "INSERT INTO layerdata.flood_extent (valid_time, depth, geom) VALUES "
            "('2026-11-01T00:00:00Z', 0.3, ST_Multi(ST_MakeEnvelope(:e, :n, :e + 40, :n + 40, 909210))), "
            "('2026-11-01T03:00:00Z', 0.6, ST_Multi(ST_MakeEnvelope(:e - 70, :n + 200, :e - 30, :n + 238, 909210)))"),
            {"e": PARCEL[0], "n": PARCEL[1]})
        conn.execute(text(
            "INSERT INTO layer (name, title, kind, table_schema, table_name, geometry_type, srid, access_level) "
            "VALUES ('flood_extent', 'Flood extent', 'generic', 'layerdata', 'flood_extent', 'MultiPolygon', "
            "909210, 'public')"))
    register_time_dimension("flood_extent", "valid_time")
    yield
    TIME_DIMENSIONS.pop("flood_extent", None)


def test_time_dimension(client, flood_layer):
    caps = client.get("/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0").data.decode()
    assert 'name="time"' in caps and "2026-11-01T00:00:00Z,2026-11-01T03:00:00Z" in caps
    b = box_in(3857)
    first = decode_image(getmap(client, bbox=b, layers="flood_extent", TIME="2026-11-01T00:00:00Z").data)
    later = decode_image(getmap(client, bbox=b, layers="flood_extent", TIME="2026-11-01T03:00:00Z").data)
    assert is_painted(first, *pixel(PARCEL, 3857)) and not is_painted(first, *pixel(EMPTY, 3857))
    assert not is_painted(later, *pixel(PARCEL, 3857))
    assert is_painted(later, *pixel((PARCEL[0] - 50, PARCEL[1] + 215), 3857))
    bad = getmap(client, bbox=b, layers="flood_extent", TIME="yesterday")
    assert bad.status_code == 400 and exception_code(bad) == "InvalidParameterValue"
