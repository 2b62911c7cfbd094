"""Each supported format loads, with Vietnamese text intact."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from layers.ingest import load_layer
from tests.layers.conftest import ADDRESSES, PARCEL_MAP, X0, Y0, parcel_frame


def _parcels(engine):
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT parcel_no, address, attributes, ST_AsText(geom) AS wkt, ST_GeometryType(geom) AS gtype "
            "FROM parcel ORDER BY parcel_no"
        )).mappings().all()


def test_geopackage_into_parcels(catalogue, parcels_gpkg):
    report = load_layer(catalogue, parcels_gpkg, "parcels", actor="tester", mapping=PARCEL_MAP)
    assert (report.read, report.loaded, report.rejected) == (6, 6, 0)
    rows = _parcels(catalogue)
    assert [r["address"] for r in rows] == ADDRESSES
    assert rows[0]["gtype"] == "ST_MultiPolygon"
    assert rows[0]["attributes"] == {"GhiChu": "ghi chú 0"}


def _zip(path, out):
    import zipfile

    with zipfile.ZipFile(out, "w") as zf:
        for part in sorted(p for p in path.parent.glob(path.stem + ".*") if p.suffix != ".zip"):
            zf.write(part, part.name)
    return out


def _shapefile(tmp_path, encoding, cpg=None):
    import pyogrio

    from tests.layers.conftest import parcel_frame

    shp = tmp_path / "thua_dat.shp"
    pyogrio.write_dataframe(parcel_frame(), shp, encoding=encoding)
    if cpg is not None:
        shp.with_suffix(".cpg").write_text(cpg)
    return _zip(shp, tmp_path / "thua_dat.zip")


def test_zipped_shapefile_honours_cpg(catalogue, tmp_path):
    """Vietnamese text in a UTF-8 or Windows-1258 .dbf comes through intact (last letter too).

    Each variant replaces the previous load, so one clean database serves all four.
    """
    for i, (encoding, cpg) in enumerate([("utf-8", None), ("cp1258", None), ("cp1258", "1258"),
                                         ("cp1258", "ANSI 1258")]):
        folder = tmp_path / str(i)
        folder.mkdir()
        archive = _shapefile(folder, encoding, cpg)
        report = load_layer(catalogue, archive, "parcels", actor="tester", mapping=PARCEL_MAP)
        assert report.loaded == 6 and report.source["driver"] == "ESRI Shapefile"
        assert report.source["encoding"] == ("utf-8" if encoding == "utf-8" else "cp1258"), cpg
        rows = _parcels(catalogue)
        assert [r["address"] for r in rows] == ADDRESSES, (encoding, cpg)
        assert rows[1]["attributes"] == {"GhiChu": "ghi chú 1"}


def test_shapefile_without_cpg_takes_declared_encoding(catalogue, tmp_path):
    archive_dir = tmp_path / "x"
    archive_dir.mkdir()
    import pyogrio

    from tests.layers.conftest import parcel_frame

    shp = archive_dir / "thua.shp"
    pyogrio.write_dataframe(parcel_frame(), shp, encoding="cp1258")
    shp.with_suffix(".cpg").unlink()
    report = load_layer(catalogue, shp, "parcels", actor="tester", mapping=PARCEL_MAP, encoding="cp1258")
    assert report.loaded == 6
    assert [r["address"] for r in _parcels(catalogue)] == ADDRESSES


def test_geojson_in_wgs84(catalogue, tmp_path):
    """Also: decomposed Vietnamese (tone marks as combining characters) is stored as NFC."""
    import unicodedata

    path = tmp_path / "parcels.geojson"
    frame = parcel_frame(crs="EPSG:4326")
    frame.loc[0, "DiaChi"] = unicodedata.normalize("NFD", frame.loc[0, "DiaChi"])
    assert frame.loc[0, "DiaChi"] != ADDRESSES[0]
    frame.to_file(path, driver="GeoJSON")
    report = load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP)
    assert report.loaded == 6 and report.source["crs"] == "EPSG:4326"
    with catalogue.connect() as conn:
        minx, miny = conn.execute(text("SELECT ST_XMin(ST_Extent(geom)), ST_YMin(ST_Extent(geom)) FROM parcel")).one()
    assert abs(minx - X0) < 0.01 and abs(miny - Y0) < 0.01
    assert [r["address"] for r in _parcels(catalogue)] == ADDRESSES


def test_flatgeobuf(catalogue, tmp_path):
    path = tmp_path / "parcels.fgb"
    parcel_frame().to_file(path, driver="FlatGeobuf")
    report = load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP)
    assert report.loaded == 6
    assert [r["address"] for r in _parcels(catalogue)] == ADDRESSES


def test_csv_with_wkt_column(catalogue, tmp_path):
    frame = parcel_frame()
    path = tmp_path / "parcels.csv"
    out = frame.drop(columns="geometry").assign(WKT=frame.geometry.to_wkt())
    out.to_csv(path, index=False)
    report = load_layer(catalogue, path, "parcels", actor="tester", mapping=PARCEL_MAP, crs="EPSG:9210")
    assert report.loaded == 6 and report.source["driver"] == "CSV"
    rows = _parcels(catalogue)
    assert [r["address"] for r in rows] == ADDRESSES
    assert rows[0]["wkt"].startswith("MULTIPOLYGON")


def test_dxf_as_generic_layer(catalogue, tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString

    path = tmp_path / "duong.dxf"
    lines = gpd.GeoDataFrame(
        {"Layer": ["DUONG", "DUONG"]},
        geometry=[LineString([(X0, Y0), (X0 + 50, Y0)]), LineString([(X0, Y0 + 10), (X0 + 50, Y0 + 10)])],
    )
    with pytest.warns(UserWarning, match="crs"):  # DXF has no CRS: the load must declare one
        lines.to_file(path, driver="DXF")
    report = load_layer(catalogue, path, "cad_roads", actor="tester", crs="EPSG:9210")
    assert report.kind == "generic" and report.created and report.loaded == 2
    with catalogue.connect() as conn:
        row = conn.execute(text(
            "SELECT kind, table_schema, table_name, feature_count FROM layer WHERE name = 'cad_roads'"
        )).one()
        assert tuple(row) == ("generic", "layerdata", "cad_roads", 2)
        assert conn.execute(text("SELECT count(*) FROM layerdata.cad_roads WHERE layer = 'DUONG'")).scalar() == 2


def test_dgn_as_generic_layer(catalogue, tmp_path):
    import geopandas as gpd
    from shapely.geometry import LineString

    path = tmp_path / "ranh.dgn"
    with pytest.warns(UserWarning, match="crs"):
        gpd.GeoDataFrame(geometry=[LineString([(X0, Y0), (X0 + 50, Y0 + 5)])]).to_file(path, driver="DGN")
    report = load_layer(catalogue, path, "cad_lines", actor="tester", crs="EPSG:9210")
    assert report.kind == "generic" and report.loaded == 1


def test_lines_into_roads_and_choosing_a_source_layer(catalogue, tmp_path):
    """LineStrings are promoted to the roads' MultiLineString; several layers need source_layer."""
    import geopandas as gpd
    from shapely.geometry import LineString

    from gisserver.errors import InvalidInput

    roads = gpd.GeoDataFrame(
        {"TenDuong": ["Đường Lê Lợi", "Đường Đồng Khởi"], "LoGioi": [30.0, 25.0]},
        geometry=[LineString([(X0, Y0), (X0 + 300, Y0)]), LineString([(X0, Y0), (X0, Y0 + 300)])],
        crs="EPSG:9210",
    )
    path = tmp_path / "giao_thong.gpkg"
    roads.to_file(path, driver="GPKG", layer="duong")
    parcel_frame().to_file(path, driver="GPKG", layer="thua_dat")
    with pytest.raises(InvalidInput, match="several layers"):
        load_layer(catalogue, path, "roads", actor="t", mapping={"TenDuong": "name", "LoGioi": "row_width"})
    report = load_layer(catalogue, path, "roads", actor="t", source_layer="duong",
                        mapping={"TenDuong": "name", "LoGioi": "row_width"})
    assert report.loaded == 2
    with catalogue.connect() as conn:
        rows = conn.execute(text("SELECT name, row_width, GeometryType(geom) FROM road ORDER BY row_width DESC")).all()
    assert [tuple(r) for r in rows] == [("Đường Lê Lợi", 30.0, "MULTILINESTRING"),
                                        ("Đường Đồng Khởi", 25.0, "MULTILINESTRING")]


def test_real_hcmc_districts_file(catalogue, shared_data):
    """The real district boundaries (../shared/data): WGS84 GeoJSON, mixed Polygon/MultiPolygon,
    duplicate feature ids (GDAL renumbers them)."""
    path = shared_data / "vector" / "hcmc_districts_2021.geojson"
    report = load_layer(catalogue, path, "districts", actor="tester", title="Quận huyện 2021")
    assert (report.read, report.loaded, report.rejected) == (24, 24, 0)
    with catalogue.connect() as conn:
        names = conn.execute(text("SELECT localname FROM layerdata.districts ORDER BY id")).scalars().all()
        area_km2 = conn.execute(text("SELECT sum(ST_Area(geom)) / 1e6 FROM layerdata.districts")).scalar()
        ben_thanh_in = conn.execute(text(
            "SELECT localname FROM layerdata.districts "
            "WHERE ST_Contains(geom, ST_SetSRID(ST_MakePoint(:e, :n), 909210))"
        ), {"e": 603481.588, "n": 1191454.611}).scalar()
    assert "Quận 1" in names and "Huyện Cần Giờ" in names and "Tp Thủ Đức" in names
    assert 1900 < area_km2 < 2300  # HCMC is about 2,095 km2
    assert ben_thanh_in == "Quận 1"
