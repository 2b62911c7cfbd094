"""Reading LAS/LAZ/COPC: chunked == whole file, CRS resolution, validation errors."""

from __future__ import annotations

import laspy
import numpy as np
import pytest
from laspy.vlrs.known import GeoKeyDirectoryVlr, GeoKeyEntryStruct, WktCoordinateSystemVlr
from pyproj import CRS, Transformer

from gisserver.crs import CITY_SRID
from gisserver.errors import InvalidFile, InvalidInput, MissingCRS
from lidar.io import PointChunk, open_cloud, summarize

BEN_THANH_LONLAT = (106.6980, 10.7725)
BEN_THANH_EN = (603481.588, 1191454.611)
FIELDS = ("x", "y", "z", "classification", "return_number", "number_of_returns", "intensity")


def _assert_same_points(a: PointChunk, b: PointChunk):
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize(
    ("name", "crs", "chunk_size"),
    [
        ("lidar/ahn3_delft_urban.laz", "EPSG:28992", 7919),
        ("lidar/lone_star.copc.laz", "EPSG:26912", 100_003),
        ("lidar/vegetation_las13.las", "EPSG:32617", 997),
        ("lidar/crs_epsg2903_crop.las", None, 4099),
    ],
)
def test_chunked_equals_whole_file(shared_data, name, crs, chunk_size):
    cloud = open_cloud(shared_data / name, crs=crs)
    whole = cloud.read_all()
    chunks = list(cloud.chunks(chunk_size))
    assert all(len(c) <= chunk_size for c in chunks) and len(chunks) > 1
    _assert_same_points(PointChunk.concatenate(chunks), whole)
    assert len(whole) == cloud.point_count
    s_small = summarize(shared_data / name, crs=crs, chunk_size=chunk_size)
    s_whole = summarize(shared_data / name, crs=crs, chunk_size=cloud.point_count)
    assert s_small == s_whole


def test_ahn3_summary(shared_data):
    s = summarize(shared_data / "lidar/ahn3_delft_urban.laz", crs="EPSG:28992", vertical_datum="NAP",
                  chunk_size=50_001)
    assert s.point_count == 208_432
    assert s.classes == {1: 86_308, 2: 87_130, 6: 33_312, 9: 568, 26: 1_114}
    assert s.srid == 28992 and s.crs_source == "declared" and s.vertical_datum == "NAP"
    assert s.bounds == pytest.approx((85000.001, 447412.8, 85072.299, 447641.299))
    assert s.z_range == pytest.approx((-0.606, 26.329))
    assert 12 < s.density < 16  # ~14 pts/m2 over occupied 2 m cells
    assert s.version == "1.2" and s.point_format == 1 and s.compressed and not s.copc
    assert s.acquisition_date == "2014-03-04"


def test_missing_crs_is_never_guessed(shared_data):
    with pytest.raises(MissingCRS) as err:
        open_cloud(shared_data / "lidar/ahn3_delft_urban.laz")
    assert err.value.status == 400 and "declare" in err.value.message


def test_geotiff_crs_and_us_feet(shared_data):
    cloud = open_cloud(shared_data / "lidar/crs_epsg2903_crop.las")
    assert cloud.crs.srid == 2903 and cloud.crs.source == "geotiff"
    assert not cloud.horizontal_metric
    ft = 1200 / 3937
    assert cloud.crs.z_to_metre == pytest.approx(ft)
    pts = cloud.read_all()
    # x/y stay in the CRS's unit (US survey feet); heights are converted to metres
    assert pts.x.min() == pytest.approx(1639600.0) and pts.z.min() == pytest.approx(7077.92 * ft)
    utm = cloud.read_all(target_srid=26913)  # NAD83 / UTM 13N, metres
    assert 300_000 < utm.x.min() < 400_000 and np.ptp(utm.x) == pytest.approx(200 * ft, rel=0.03)
    np.testing.assert_allclose(utm.z, pts.z)


def test_geokey_crs_forest(shared_data):
    s = summarize(shared_data / "lidar/forest_megaplot.laz")
    assert s.srid == 26917 and s.crs_source == "geotiff" and s.classes == {1: 74_201, 2: 7_389}


def test_copc_with_wrong_geocentric_wkt(shared_data):
    path = shared_data / "lidar/lone_star.copc.laz"
    with pytest.raises(InvalidFile) as err:
        open_cloud(path)
    assert "geocentric" in err.value.message
    cloud = open_cloud(path, crs="EPSG:26912")  # declared: UTM 12N (Yellowstone)
    assert cloud.is_copc and cloud.header.version.minor == 4 and cloud.crs.source == "declared"
    lon0, lat0, _, _ = cloud.lonlat_bounds()
    assert -111 < lon0 < -110 and 44 < lat0 < 45


def test_reprojection_outside_area_of_use_is_refused(shared_data):
    cloud = open_cloud(shared_data / "lidar/ahn3_delft_urban.laz", crs="EPSG:28992")
    with pytest.raises(InvalidInput, match="area of use"):
        next(cloud.chunks(1000, target_srid=CITY_SRID))


def _write_las(path, x, y, z, *, wkt: str | None = None, epsg_geokey: int | None = None, version="1.4",
               point_format=6):
    header = laspy.LasHeader(point_format=point_format, version=version)
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.array([np.floor(x.min()), np.floor(y.min()), 0.0])
    if wkt is not None:
        header.vlrs.append(WktCoordinateSystemVlr(wkt))
        if point_format >= 6:
            header.global_encoding.wkt = True
    if epsg_geokey is not None:
        geo = GeoKeyDirectoryVlr()
        geo.geo_keys_header.number_of_keys = 1
        geo.geo_keys = [GeoKeyEntryStruct(3072, 0, 1, epsg_geokey)]
        header.vlrs.append(geo)
    las = laspy.LasData(header)
    las.x, las.y, las.z = x, y, z
    las.classification = np.full(len(x), 2, np.uint8)
    las.write(path)
    return path


def test_reprojection_to_city_crs_is_official_to_1cm(tmp_path):
    """A WGS84/UTM 48N file at Ben Thanh market lands on the official VN-2000 coordinates."""
    utm = Transformer.from_crs("EPSG:4326", "EPSG:32648", always_xy=True)
    e, n = utm.transform(*BEN_THANH_LONLAT)
    x = np.array([e, e + 10.0, e - 5.0])
    y = np.array([n, n + 3.0, n - 7.0])
    path = _write_las(tmp_path / "bt.las", x, y, np.array([1.0, 2.0, 3.0]), wkt=CRS.from_epsg(32648).to_wkt())
    cloud = open_cloud(path)
    assert cloud.crs.srid == 32648 and cloud.crs.source == "wkt"
    pts = cloud.read_all(target_srid=CITY_SRID)
    assert abs(pts.x[0] - BEN_THANH_EN[0]) < 0.01 and abs(pts.y[0] - BEN_THANH_EN[1]) < 0.01
    np.testing.assert_allclose(pts.z, [1.0, 2.0, 3.0])
    # a file already in EPSG:9210 maps onto the city SRID and is not transformed
    vn = _write_las(tmp_path / "vn.las", pts.x, pts.y, pts.z, epsg_geokey=9210, version="1.2", point_format=1)
    city = open_cloud(vn)
    assert city.crs.srid == CITY_SRID
    np.testing.assert_allclose(city.read_all(target_srid=CITY_SRID).x, pts.x, atol=1e-3)


def test_wkt_and_geotiff_that_disagree(tmp_path):
    x, y = np.array([500000.0, 500010.0]), np.array([1190000.0, 1190010.0])
    path = _write_las(tmp_path / "both.las", x, y, np.zeros(2), wkt=CRS.from_epsg(32648).to_wkt(),
                      epsg_geokey=3405)
    with pytest.raises(InvalidFile, match="disagree"):
        open_cloud(path)
    # an explicit declaration settles it
    assert open_cloud(path, crs="EPSG:3405").crs.srid == 3405


def test_truncated_las(shared_data, tmp_path):
    src = shared_data / "lidar/vegetation_las13.las"
    data = src.read_bytes()
    cut = tmp_path / "cut.las"
    cut.write_bytes(data[: len(data) - 5000])
    with pytest.raises(InvalidFile, match="truncated"):
        open_cloud(cut, crs="EPSG:32617")


def test_truncated_laz_fails_while_reading(shared_data, tmp_path):
    src = shared_data / "lidar/ahn3_delft_urban.laz"
    cut = tmp_path / "cut.laz"
    cut.write_bytes(src.read_bytes()[:600_000])
    cloud = open_cloud(cut, crs="EPSG:28992")
    with pytest.raises(InvalidFile) as err:
        for _ in cloud.chunks(50_000):
            pass
    assert err.value.details["points_read"] < 208_432


def test_not_a_las_file(tmp_path):
    bad = tmp_path / "bad.las"
    bad.write_bytes(b"this is not a point cloud" * 20)
    with pytest.raises(InvalidFile):
        open_cloud(bad, crs="EPSG:28992")
    with pytest.raises(InvalidFile):
        open_cloud(tmp_path / "absent.laz")



def test_las14_extra_bytes_and_density_in_metres(tmp_path, shared_data):
    header = laspy.LasHeader(point_format=6, version="1.4")
    header.add_extra_dim(laspy.ExtraBytesParams(name="reflectance", type=np.float32))
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array([500000.0, 1190000.0, 0.0])
    header.vlrs.append(WktCoordinateSystemVlr(CRS.from_epsg(3405).to_wkt()))
    header.global_encoding.wkt = True
    las = laspy.LasData(header)
    rng = np.random.default_rng(5)
    las.x = 500000 + rng.uniform(0, 40, 4001)
    las.y = 1190000 + rng.uniform(0, 40, 4001)
    las.z = rng.uniform(0, 3, 4001)
    las.reflectance = rng.uniform(0, 1, 4001).astype(np.float32)
    las.write(tmp_path / "extra.las")
    whole = summarize(tmp_path / "extra.las", chunk_size=4001)
    assert whole.extra_dimensions == ["reflectance"] and whole.version == "1.4" and whole.point_format == 6
    assert whole == summarize(tmp_path / "extra.las", chunk_size=333)
    assert whole.srid == 3405 and whole.crs_source == "wkt"
    # US-feet file: the density is per square metre, not per square foot
    ft = summarize(shared_data / "lidar/crs_epsg2903_crop.las")
    side = 200 * 1200 / 3937  # the crop is 200 x 200 US survey feet
    assert side**2 < ft.occupied_area < (side + 4) ** 2 and 5 < ft.density < 8
