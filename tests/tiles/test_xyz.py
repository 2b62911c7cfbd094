"""XYZ raster tiles from a COG made in the test (rio-tiler): colour ramps, hillshade, formats,
legends, access and errors."""

from __future__ import annotations

import morecantile
import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from geoalchemy2 import WKTElement
from rasterio.io import MemoryFile
from shapely.geometry import box
from sqlalchemy import insert

from gisserver import schema
from gisserver.crs import CITY_SRID, city_crs
from tests.tiles.conftest import BEN_THANH, lonlat
from tests.tiles.images import decode_image, image_driver
from tiles.xyz import hillshade

SIZE = 400  # 1 m cells, 400 m square with Ben Thanh inside
X0, Y0 = BEN_THANH[0] - 200, BEN_THANH[1] + 200


def write_cog(path, data: np.ndarray, nodata: float = -9999.0) -> None:
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="float32", crs=city_crs().to_wkt(),
                   transform=Affine(1.0, 0.0, X0, 0.0, -1.0, Y0), nodata=nodata, tiled=True,
                   blockxsize=256, blockysize=256)
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data.astype("float32"), 1)
        with mem.open() as src:
            rasterio.shutil.copy(src, path, driver="COG")


@pytest.fixture
def rasters(app, catalogue):
    folder = app.extensions["gisserver"].settings.raster_dir
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    dtm = 1.0 + 0.01 * xx + 2.0 * np.exp(-((xx - 200) ** 2 + (yy - 200) ** 2) / 2000.0)  # a hill on a slope
    depth = np.where(xx < 200, 0.0, 0.8)  # dry west half, wet east half
    write_cog(folder / "dtm_test.tif", dtm)
    write_cog(folder / "flood_test.tif", depth)
    footprint = WKTElement(box(X0, Y0 - SIZE, X0 + SIZE, Y0).wkt, srid=CITY_SRID)
    with catalogue.begin() as conn:
        for name, kind, path, access in (("dtm_test", "dtm", "dtm_test.tif", "public"),
                                         ("flood_test", "flood_depth", "flood_test.tif", "public"),
                                         ("secret_dtm", "dtm", "dtm_test.tif", "restricted")):
            conn.execute(insert(schema.raster).values(
                name=name, kind=kind, path=path, resolution=1.0, srid=CITY_SRID, width=SIZE, height=SIZE,
                nodata=-9999.0, access_level=access, footprint=footprint))
    return folder


def centre_tile(z: int = 16):
    return morecantile.tms.get("WebMercatorQuad").tile(*lonlat(X0 + SIZE / 2, Y0 - SIZE / 2), z)


def test_dtm_tile_is_coloured_inside_and_transparent_outside(client, rasters):
    t = centre_tile(16)
    resp = client.get(f"/raster/dtm_test/{t.z}/{t.x}/{t.y}.png")
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    img = decode_image(resp.data)
    assert img.shape == (4, 256, 256)
    assert img[3].any() and not img[3].all()  # the 400 m raster covers part of a ~600 m tile
    painted = img[:3][:, img[3] > 0]
    assert (painted.std(axis=1) > 1).any()  # a ramp, not one colour
    far = client.get("/raster/dtm_test/16/0/0.png")
    assert far.status_code == 200 and not decode_image(far.data)[3].any()


@pytest.mark.parametrize("ext, driver, bands", [("webp", "WEBP", 4), ("jpg", "JPEG", 3)])
def test_formats(client, rasters, ext, driver, bands):
    t = centre_tile(16)
    resp = client.get(f"/raster/dtm_test/{t.z}/{t.x}/{t.y}.{ext}")
    assert resp.status_code == 200 and image_driver(resp.data) == driver
    assert decode_image(resp.data).shape == (bands, 256, 256)


def test_hillshade_is_grey(client, rasters):
    t = centre_tile(17)
    img = decode_image(client.get(f"/raster/dtm_test/{t.z}/{t.x}/{t.y}.png?style=hillshade").data)
    visible = img[3] > 0
    assert visible.any()
    assert (img[0][visible] == img[1][visible]).all() and (img[1][visible] == img[2][visible]).all()
    assert img[0][visible].std() > 1  # the hill is shaded
    assert client.get(f"/raster/flood_test/{t.z}/{t.x}/{t.y}.png?style=hillshade").status_code == 400


def test_flood_depth_dry_cells_are_transparent(client, rasters):
    t = centre_tile(18)
    img = decode_image(client.get(f"/raster/flood_test/{t.z}/{t.x}/{t.y}.png").data)
    assert img[3].any() and not img[3].all()
    cols = np.where(img[3].any(axis=0))[0]
    assert cols.min() > 0  # the wet (drawn) part is the east side of the centre tile


def test_hillshade_function():
    flat = hillshade(np.zeros((5, 5)), 1.0)
    assert (flat == flat[0, 0]).all() and abs(int(flat[0, 0]) - 255 * np.sin(np.radians(45))) <= 1
    east_facing = hillshade(np.tile(-np.arange(5.0), (5, 1)), 1.0)  # lower to the east: faces away from NW light
    assert east_facing.mean() < flat.mean()


def test_legends(client, rasters):
    js = client.get("/legend/raster/flood_test.json").json
    assert js["unit"] == "m" and js["min"] == 0.0 and js["max"] == 2.0 and len(js["stops"]) == 6
    assert js["transparent_below"] == 0.01
    png = client.get("/legend/raster/dtm_test.png")
    assert png.status_code == 200 and decode_image(png.data).shape == (4, 16, 256)
    assert client.get("/legend/raster/secret_dtm.json").status_code == 404
    vec = client.get("/legend/parcels.png")
    assert vec.status_code == 200 and decode_image(vec.data).shape == (4, 20, 20)


def test_access_cache_and_errors(client, rasters, make_user):
    from tests.conftest import auth

    t = centre_tile(16)
    hidden = client.get(f"/raster/secret_dtm/{t.z}/{t.x}/{t.y}.png")
    assert hidden.status_code == 404 and hidden.content_type == "application/problem+json"
    _, admin = make_user("admin")
    ok = client.get(f"/raster/secret_dtm/{t.z}/{t.x}/{t.y}.png", headers=auth(admin))
    assert ok.status_code == 200 and ok.headers["Cache-Control"].startswith("private")
    first = client.get(f"/raster/dtm_test/{t.z}/{t.x}/{t.y}.png")
    again = client.get(f"/raster/dtm_test/{t.z}/{t.x}/{t.y}.png", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.headers["X-Tile-Cache"] == "hit"
    for path, status in ((f"/raster/dtm_test/{t.z}/{t.x}/{t.y}.gif", 400), ("/raster/dtm_test/30/0/0.png", 400),
                         ("/raster/dtm_test/1/5/0.png", 400), ("/raster/nope/1/0/0.png", 404),
                         (f"/raster/dtm_test/{t.z}/{t.x}/{t.y}.png?style=fancy", 400)):
        resp = client.get(path)
        assert resp.status_code == status and resp.content_type == "application/problem+json", path
