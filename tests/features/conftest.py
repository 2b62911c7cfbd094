"""A few parcels and roads with known geometry near Ben Thanh market, in the city CRS."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, text

from gisserver import schema
from gisserver.crs import CITY_SRID

# parcel squares (E min, N min, size) in EPSG:9210; Ben Thanh is at E 603481.588, N 1191454.611
X0, Y0 = 603400.0, 1191400.0


def square(x, y, size=20.0):
    return (f"MULTIPOLYGON((({x} {y}, {x + size} {y}, {x + size} {y + size}, {x} {y + size}, {x} {y})))")


PARCELS = [
    # id, ward, sheet, parcel, land_use, address, owner, (x, y), begin, end
    (1, "26734", 5, 1, "ODT", "Số 1 Lê Lợi, Phường Bến Thành", "Nguyễn Văn An", (X0, Y0), None, None),
    (2, "26734", 5, 2, "TMD", "Số 3 Lê Lợi, Phường Bến Thành", "Trần Thị Bình", (X0 + 20, Y0), None, None),
    (3, "26734", 5, 3, "ODT", "Số 5 Lê Lợi, Phường Bến Thành", "Lê Hoàng Cường", (X0 + 40, Y0), None, None),
    (4, "26734", 6, 1, "CLN", "Hẻm 12 Nguyễn Trãi", "Phạm Dũng", (X0, Y0 + 20), None, None),
    (5, "26737", 6, 2, "DGT", "Đường Hàm Nghi", None, (X0 + 200, Y0 + 200), None, None),
    # a retired version of parcel 5/1 (same number as parcel 1), valid 2020-2024
    (6, "26734", 5, 1, "ONT", "Số 1 Lê Lợi (cũ)", "Chủ cũ", (X0, Y0),
     datetime(2020, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)),
]


@pytest.fixture(scope="module")
def sample(db_engine):
    """Six parcels (one retired), two roads and a power line, loaded once per test module.

    Tests only read this data (a test that adds a row removes it again), so one load per module
    keeps the folder fast; the tables and catalogue rows are reset first, as ``catalogue`` does.
    """
    from layers.catalogue import bump_version, sync_canonical_layers

    with db_engine.begin() as conn:
        conn.execute(text("TRUNCATE parcel, road, power_line, layer RESTART IDENTITY CASCADE"))
        sync_canonical_layers(conn)
        for pid, ward, sheet, number, use, address, owner, (x, y), begin, end in PARCELS:
            values = dict(id=pid, ward_code=ward, sheet_no=sheet, parcel_no=number, land_use=use,
                          address=address, owner_name=owner, legal_area=400.0 if pid == 4 else 399.0,
                          geom=func.ST_GeomFromText(square(x, y), CITY_SRID))
            if begin is not None:
                values.update(begin_lifespan=begin, end_lifespan=end, status="retired")
            conn.execute(insert(schema.parcel).values(**values))
        roads = [
            (1, "Lê Lợi", 30.0, f"MULTILINESTRING(({X0} {Y0 - 10}, {X0 + 100} {Y0 - 10}))"),
            (2, "Hàm Nghi", 25.0, f"MULTILINESTRING(({X0 + 300} {Y0}, {X0 + 300} {Y0 + 300}))"),
        ]
        for rid, name, width, wkt in roads:
            conn.execute(insert(schema.road).values(id=rid, name=name, row_width=width,
                                                    geom=func.ST_GeomFromText(wkt, CITY_SRID)))
        conn.execute(insert(schema.power_line).values(
            id=1, name="Tuyến 22 kV", voltage_kv=22.0,
            geom=func.ST_GeomFromText(f"MULTILINESTRING(({X0} {Y0 + 50}, {X0 + 60} {Y0 + 50}))", CITY_SRID)))
        for layer in ("parcels", "roads", "power_lines"):
            bump_version(conn, layer)
    return db_engine
