"""WMTS 1.0.0: OWSLib and GDAL (through rasterio) read the service; REST and KVP; both tile
matrix sets; cache headers; OWS exception reports."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET

import morecantile
import rasterio
from owslib.wmts import WebMapTileService

from gisserver.crs import CITY_SRID, transformer
from tests.conftest import auth
from tests.tiles.conftest import BEN_THANH, lonlat
from tests.tiles.images import decode_image
from tiles.tms import city_tms

OWS = "{http://www.opengis.net/ows/1.1}"
PARCEL = (BEN_THANH[0] + 20, BEN_THANH[1] + 20)


def google_tile(z=17):
    return morecantile.tms.get("WebMercatorQuad").tile(*lonlat(*PARCEL), z)


def city_tile(z=9):
    return city_tms()._tile(*PARCEL, z)


def ows_code(resp) -> str:
    root = ET.fromstring(resp.data)
    assert root.tag == f"{OWS}ExceptionReport"
    return root.find(f"{OWS}Exception").get("exceptionCode")


def test_owslib_capabilities_and_gettile(live_server, ben_thanh):
    wmts = WebMapTileService(live_server + "/wmts?SERVICE=WMTS&REQUEST=GetCapabilities", timeout=60)
    assert "parcels" in wmts.contents and "telecom" not in wmts.contents
    assert {"GoogleMapsCompatible", "VN2000HCMC"} <= set(wmts.tilematrixsets)
    assert wmts.tilematrixsets["VN2000HCMC"].crs == "urn:ogc:def:crs:EPSG::9210"
    t = google_tile()
    tile = wmts.gettile(layer="parcels", tilematrixset="GoogleMapsCompatible", tilematrix=str(t.z), row=t.y,
                        column=t.x, format="image/png")
    img = decode_image(tile.read())
    assert img.shape == (4, 256, 256) and (img[3] > 0).any()
    c = city_tile()
    tile = wmts.gettile(layer="parcels", tilematrixset="VN2000HCMC", tilematrix=str(c.z), row=c.y, column=c.x,
                        format="image/png")
    assert (decode_image(tile.read())[3] > 0).any()


def test_gdal_wmts_driver_reads_the_service(live_server, ben_thanh):
    url = (f"WMTS:{live_server}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities"
           ",layer=parcels,tilematrixset=GoogleMapsCompatible")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(url) as ds:
            assert ds.crs.to_epsg() == 3857 and ds.count == 4
            x, y = transformer(CITY_SRID, 3857).transform(*PARCEL)
            row, col = ds.index(x, y)
            window = rasterio.windows.Window(col - 8, row - 8, 16, 16)
            data = ds.read(window=window)
    assert (data[3] > 0).any()


def test_gdal_wms_driver_reads_wms(live_server, ben_thanh):
    w, s = lonlat(BEN_THANH[0] - 100, BEN_THANH[1] - 100)
    e, n = lonlat(BEN_THANH[0] + 300, BEN_THANH[1] + 300)
    url = (f"WMS:{live_server}/wms?SERVICE=WMS&VERSION=1.1.1&REQUEST=GetMap&LAYERS=parcels&SRS=EPSG:4326"
           f"&BBOX={w},{s},{e},{n}")
    with rasterio.open(url) as ds:
        assert ds.crs.to_epsg() == 4326
        x, y = lonlat(*PARCEL)
        ov = ds.read(1, out_shape=(256, 256), window=ds.window(w, s, e, n))
        r, c = int((n - y) / (n - s) * 256), int((x - w) / (e - w) * 256)
    assert ov[r, c] < 250  # filled parcel, not the white background


def test_rest_and_kvp_give_the_same_tile_with_cache_headers(client, ben_thanh):
    t = google_tile()
    rest = client.get(f"/wmts/1.0.0/parcels/default/GoogleMapsCompatible/{t.z}/{t.y}/{t.x}.png")
    assert rest.status_code == 200 and rest.mimetype == "image/png" and rest.headers["X-Tile-Cache"] == "miss"
    kvp = client.get("/wmts", query_string={"SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0",
                                            "LAYER": "parcels", "STYLE": "default", "FORMAT": "image/png",
                                            "TILEMATRIXSET": "GoogleMapsCompatible", "TILEMATRIX": t.z,
                                            "TILEROW": t.y, "TILECOL": t.x})
    assert kvp.data == rest.data and kvp.headers["X-Tile-Cache"] == "hit"
    again = client.get(f"/wmts/1.0.0/parcels/default/GoogleMapsCompatible/{t.z}/{t.y}/{t.x}.png",
                       headers={"If-None-Match": rest.headers["ETag"]})
    assert again.status_code == 304
    jpeg = client.get(f"/wmts/1.0.0/parcels/default/GoogleMapsCompatible/{t.z}/{t.y}/{t.x}.jpg")
    assert jpeg.mimetype == "image/jpeg" and jpeg.data[:2] == b"\xff\xd8"
    caps = client.get("/wmts/1.0.0/WMTSCapabilities.xml")
    assert caps.status_code == 200 and b"VN2000HCMC" in caps.data and b"ResourceURL" in caps.data


def test_restricted_layer_needs_rights(client, ben_thanh, make_user):
    t = google_tile()
    url = f"/wmts/1.0.0/telecom/default/GoogleMapsCompatible/{t.z}/{t.y}/{t.x}.png"
    denied = client.get(url)
    assert denied.status_code == 400 and ows_code(denied) == "InvalidParameterValue"
    _, admin = make_user("admin")
    ok = client.get(url, headers=auth(admin))
    assert ok.status_code == 200 and ok.headers["Cache-Control"].startswith("private")
    caps = client.get("/wmts?SERVICE=WMTS&REQUEST=GetCapabilities", headers=auth(admin)).data
    assert b"<ows:Identifier>telecom</ows:Identifier>" in caps


ERROR_CASES = [
    ("/wmts/1.0.0/parcels/default/GoogleMapsCompatible/17/99999999/0.png", "TileOutOfRange"),
    ("/wmts/1.0.0/parcels/default/GoogleMapsCompatible/30/0/0.png", "InvalidParameterValue"),
    ("/wmts/1.0.0/parcels/default/NoSuchSet/1/0/0.png", "InvalidParameterValue"),
    ("/wmts/1.0.0/parcels/nostyle/GoogleMapsCompatible/1/0/0.png", "InvalidParameterValue"),
    ("/wmts/1.0.0/nolayer/default/GoogleMapsCompatible/1/0/0.png", "InvalidParameterValue"),
    ("/wmts/1.0.0/parcels/default/GoogleMapsCompatible/1/0/0.gif", "InvalidParameterValue"),
    ("/wmts/1.0.0/parcels/default/GoogleMapsCompatible/a/0/0.png", "InvalidParameterValue"),
    ("/wmts?SERVICE=WMTS&REQUEST=GetTile&LAYER=parcels&TILEMATRIXSET=GoogleMapsCompatible", "MissingParameterValue"),
    ("/wmts?SERVICE=WMTS&REQUEST=Nope", "OperationNotSupported"),
]


def test_errors_are_ows_exception_reports(client, catalogue):
    for path, code in ERROR_CASES:
        resp = client.get(path)
        assert 400 <= resp.status_code < 502 and resp.mimetype == "application/xml", path
        assert ows_code(resp) == code, path


def test_getfeatureinfo(client, ben_thanh):
    t = google_tile()
    tile_bounds = morecantile.tms.get("WebMercatorQuad").xy_bounds(t)
    x, y = transformer(CITY_SRID, 3857).transform(*PARCEL)
    i = int((x - tile_bounds.left) / (tile_bounds.right - tile_bounds.left) * 256)
    j = int((tile_bounds.top - y) / (tile_bounds.top - tile_bounds.bottom) * 256)
    resp = client.get("/wmts", query_string={"SERVICE": "WMTS", "REQUEST": "GetFeatureInfo", "VERSION": "1.0.0",
                                             "LAYER": "parcels", "STYLE": "default", "FORMAT": "image/png",
                                             "TILEMATRIXSET": "GoogleMapsCompatible", "TILEMATRIX": t.z,
                                             "TILEROW": t.y, "TILECOL": t.x, "I": i, "J": j,
                                             "INFOFORMAT": "application/json"})
    assert resp.status_code == 200
    assert resp.json["features"][0]["properties"]["parcel_no"] == 1
