"""CRS resolution, reprojection, geometry validation policies, attribute checks and the report."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gisserver.errors import InvalidGeometry, InvalidInput, MissingCRS
from layers.ingest import CRSMismatch, load_layer
from tests.layers.conftest import PARCEL_MAP, X0, Y0, parcel_frame

BEN_THANH_LONLAT = (106.6980, 10.7725)
BEN_THANH_EN = (603481.588, 1191454.611)


def _gpkg(tmp_path, frame, name="src.gpkg"):
    path = tmp_path / name
    if frame.crs is None:
        with pytest.warns(UserWarning, match="crs"):
            frame.to_file(path, driver="GPKG")
    else:
        frame.to_file(path, driver="GPKG")
    return path


def _count(engine, sql="SELECT count(*) FROM parcel"):
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def test_ben_thanh_point_lands_on_city_coordinates(catalogue, tmp_path):
    import geopandas as gpd
    from shapely.geometry import Point

    path = tmp_path / "trees.geojson"
    # two trees: catalogue.bump_version cannot store the extent of a single point (see docs/ingest.md)
    gpd.GeoDataFrame({"species": ["Dầu rái", "Sao đen"]},
                     geometry=[Point(*BEN_THANH_LONLAT), Point(106.70, 10.775)], crs="EPSG:4326").to_file(path)
    report = load_layer(catalogue, path, "trees", actor="tester")
    assert report.loaded == 2
    with catalogue.connect() as conn:
        e, n, species, srid = conn.execute(text(
            "SELECT ST_X(geom), ST_Y(geom), species, ST_SRID(geom) FROM tree WHERE species = 'Dầu rái'"
        )).one()
    assert abs(e - BEN_THANH_EN[0]) < 0.01 and abs(n - BEN_THANH_EN[1]) < 0.01
    assert species == "Dầu rái" and srid == 909210


def test_crs_from_file_vn2000_maps_to_city_srid(catalogue, tmp_path):
    report = load_layer(catalogue, _gpkg(tmp_path, parcel_frame()), "parcels", actor="t", mapping=PARCEL_MAP)
    assert report.source["crs"] == "EPSG:9210" and report.source["crs_from"] == "file"
    with catalogue.connect() as conn:
        assert conn.execute(text("SELECT ST_XMin(ST_Extent(geom)) FROM parcel")).scalar() == pytest.approx(X0)


def test_missing_crs_is_refused_then_declared(catalogue, tmp_path):
    path = _gpkg(tmp_path, parcel_frame(crs=None))
    with pytest.raises(MissingCRS):
        load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP)
    report = load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP, crs="EPSG:9210")
    assert report.loaded == 6 and report.source["crs_from"] == "declared"


def test_conflicting_declared_crs_is_refused_unless_forced(catalogue, tmp_path):
    path = _gpkg(tmp_path, parcel_frame(crs="EPSG:4326"))
    with pytest.raises(CRSMismatch) as err:
        load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP, crs="EPSG:3405")
    assert err.value.status == 400 and err.value.code == "crs-mismatch"
    # agreeing declarations are fine
    assert load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP, crs="EPSG:4326").loaded == 6
    # forcing a wrong CRS is the caller's decision: coordinates are taken as declared
    wrong = load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP, crs="EPSG:4326", force_crs=True)
    assert wrong.loaded == 6


def test_unknown_declared_crs(catalogue, tmp_path):
    from gisserver.errors import UnknownCRS

    with pytest.raises(UnknownCRS):
        load_layer(catalogue, _gpkg(tmp_path, parcel_frame()), "parcels", actor="t", crs="EPSG:999999")


def test_invalid_geometry_repaired_and_reported(catalogue, tmp_path):
    path = _gpkg(tmp_path, parcel_frame(bowtie_at=2))
    report = load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP, policy="repair")
    assert (report.loaded, report.repaired, report.rejected) == (6, 1, 0)
    assert report.issues == [{"fid": 3, "action": "repaired", "reason": report.issues[0]["reason"]}]
    assert "Self-intersection" in report.issues[0]["reason"]
    assert _count(catalogue, "SELECT count(*) FROM parcel WHERE NOT ST_IsValid(geom)") == 0
    assert _count(catalogue, "SELECT ST_NumGeometries(geom) FROM parcel WHERE parcel_no = 3") == 2


def test_reject_feature_policy(catalogue, tmp_path):
    path = _gpkg(tmp_path, parcel_frame(bowtie_at=2))
    report = load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP, policy="reject-feature")
    assert (report.read, report.loaded, report.repaired, report.rejected) == (6, 5, 0, 1)
    assert report.issues[0]["fid"] == 3 and report.issues[0]["reason"].startswith("invalid geometry")
    assert _count(catalogue, "SELECT count(*) FROM parcel WHERE parcel_no = 3") == 0


def test_null_empty_and_wrong_type_geometries_rejected_per_feature(catalogue, tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString, Polygon

    frame = parcel_frame(4)
    frame.loc[1, "geometry"] = None
    frame.loc[2, "geometry"] = Polygon()
    frame.loc[3, "geometry"] = LineString([(X0, Y0), (X0 + 5, Y0 + 5)])
    path = tmp_path / "mixed.geojson"
    gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:9210").to_file(path)
    report = load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP, crs="EPSG:9210")
    assert (report.loaded, report.rejected) == (1, 3)
    reasons = [i["reason"] for i in report.issues]
    assert "null geometry" in reasons[0] and "LineString does not fit" in reasons[2]


def test_attribute_values_that_do_not_fit_reject_the_feature(catalogue, tmp_path):
    frame = parcel_frame(3)
    frame["SoTo"] = ["12", "mười hai", "12"]
    frame["LoaiDat"] = ["ODT", "ODT", "X" * 40]
    path = _gpkg(tmp_path, frame)
    report = load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP)
    assert (report.loaded, report.rejected) == (1, 2)
    assert "sheet_no" in report.issues[0]["reason"] and "land_use" in report.issues[1]["reason"]


def test_mapping_errors_are_clear(catalogue, tmp_path):
    path = _gpkg(tmp_path, parcel_frame())
    with pytest.raises(InvalidInput, match="needs values for ward_code"):
        load_layer(catalogue, path, "parcels", actor="t")
    with pytest.raises(InvalidInput, match="does not have"):
        load_layer(catalogue, path, "parcels", actor="t", mapping={**PARCEL_MAP, "Nope": "address"})
    with pytest.raises(InvalidInput, match="cannot take"):
        load_layer(catalogue, path, "parcels", actor="t", mapping={**PARCEL_MAP, "GhiChu": "area"})
    with pytest.raises(InvalidInput, match="canonical layer 'parcels'"):
        load_layer(catalogue, path, "parcel", actor="t")
    with pytest.raises(InvalidInput, match="policy"):
        load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP, policy="ignore")


def test_fail_policy_raises_on_invalid_geometry(catalogue, tmp_path):
    path = _gpkg(tmp_path, parcel_frame(bowtie_at=2))
    with pytest.raises(InvalidGeometry, match="feature 3"):
        load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP, policy="fail")


def test_chunked_load_equals_whole_file_load(catalogue, tmp_path):
    """Odd batch sizes give exactly the rows (and report) of a single-batch load."""
    path = _gpkg(tmp_path, parcel_frame(23, bowtie_at=11))
    results = []
    for batch_size in (100_000, 7, 1):
        report = load_layer(catalogue, path, "parcels", actor="t", mapping=PARCEL_MAP, batch_size=batch_size)
        with catalogue.connect() as conn:
            rows = conn.execute(text(
                "SELECT parcel_no, address, attributes, ST_AsEWKB(geom) FROM parcel ORDER BY parcel_no"
            )).all()
        results.append(([tuple(r) for r in rows], report.loaded, report.repaired, report.issues))
    assert results[0] == results[1] == results[2]


def test_generic_layer_columns_typed_from_source(catalogue, tmp_path):
    import datetime as dt

    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import Point

    frame = gpd.GeoDataFrame(
        {
            "Tên trạm": ["Trạm A", None, "Trạm \\C"],
            "so_may": pd.array([3, None, 5], dtype="Int64"),
            "cong_suat": [1.5, float("nan"), 2.25],
            "hoat_dong": [True, False, True],
            "cap_nhat": pd.to_datetime(["2024-05-01T08:30:00Z", None, "2024-06-01T00:00:00Z"]),
        },
        geometry=[Point(X0, Y0), Point(X0 + 1, Y0), Point(X0 + 2, Y0)],
        crs="EPSG:9210",
    )
    path = tmp_path / "tram.gpkg"
    frame.to_file(path, driver="GPKG")
    report = load_layer(catalogue, path, "tram", actor="t")
    assert report.loaded == 3 and report.rejected == 0
    with catalogue.connect() as conn:
        types = dict(conn.execute(text(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'layerdata' AND table_name = 'tram'"
        )).all())
        rows = conn.execute(text(
            "SELECT ten_tram, so_may, cong_suat, hoat_dong, cap_nhat FROM layerdata.tram ORDER BY id"
        )).all()
    assert types["ten_tram"] == "text" and types["cong_suat"] == "double precision"
    assert types["so_may"] in ("integer", "bigint")
    assert types["cap_nhat"] == "timestamp with time zone" and types["geom"] == "USER-DEFINED"
    assert rows[0][:4] == ("Trạm A", 3, 1.5, 1)
    assert rows[0][4] == dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.UTC)
    assert rows[1] == (None, None, None, 0, None)
    assert rows[2][0] == "Trạm \\C"
