"""Fixture files for ingest tests, written by the tests themselves with pyogrio/geopandas."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Polygon, box

from gisserver.crs import CITY_SRID, transformer

# around Ben Thanh market, city CRS metres
X0, Y0 = 603400.0, 1191400.0
PARCEL_MAP = {"MaXa": "ward_code", "SoTo": "sheet_no", "SoThua": "parcel_no", "DiaChi": "address",
              "LoaiDat": "land_use"}
ADDRESSES = ["Phường Bến Thành", "Đất ở tại đô thị", "Chợ Bến Thành, Quận 1", "Hẻm 42/7 Lê Lợi",
             "Tab\there and back\\slash", "Nhà số 5"]


def parcel_frame(n: int = 6, *, crs: str | None = "EPSG:9210", bowtie_at: int | None = None) -> gpd.GeoDataFrame:
    """``n`` 10 m x 20 m parcels with VN cadastral field names (bow-tie polygon at ``bowtie_at``)."""
    geoms = []
    for i in range(n):
        x = X0 + 10 * i
        if i == bowtie_at:
            geoms.append(Polygon([(x, Y0), (x + 10, Y0 + 20), (x + 10, Y0), (x, Y0 + 20), (x, Y0)]))
        else:
            geoms.append(box(x, Y0, x + 10, Y0 + 20))
    frame = gpd.GeoDataFrame(
        {
            "MaXa": ["26734"] * n,
            "SoTo": [12] * n,
            "SoThua": list(range(1, n + 1)),
            "DiaChi": [ADDRESSES[i % len(ADDRESSES)] for i in range(n)],
            "LoaiDat": ["ODT"] * n,
            "GhiChu": [f"ghi chú {i}" for i in range(n)],
        },
        geometry=geoms,
        crs="EPSG:9210",
    )
    if crs is None:
        return frame.set_crs(None, allow_override=True)
    if crs != "EPSG:9210":
        t = transformer(CITY_SRID, int(crs.split(":")[1]))
        frame = frame.set_geometry(
            frame.geometry.transform(lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        ).set_crs(crs, allow_override=True)
    return frame


@pytest.fixture
def parcels_gpkg(tmp_path):
    path = tmp_path / "parcels.gpkg"
    parcel_frame().to_file(path, driver="GPKG", layer="thua_dat")
    return path
