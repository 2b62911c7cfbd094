"""CQL2 text and JSON translated to SQL and run on the real parcels table."""

from __future__ import annotations

import json

import pytest

from gisserver.crs import CITY_SRID, transformer
from gisserver.errors import InvalidParameter
from gisserver.security import Principal
from layers import cql
from layers import query as q
from tests.features.conftest import X0, Y0

# an officer: the land user's name is a queryable only for staff
OFFICER = Principal(1, "officer", "officer")


def run(engine, text=None, lang=None, **search):
    with engine.connect() as conn:
        source = q.open_layer(conn, "parcels", OFFICER)
        page = q.search_features(conn, source, q.Search(filter=cql.parse_filter(text, lang), **search))
    return [f["id"] for f in page.features]


@pytest.mark.parametrize("text, expected", [
    ("land_use = 'ODT'", [1, 3]),
    ("land_use <> 'ODT'", [2, 4, 5]),
    ("NOT (land_use = 'ODT')", [2, 4, 5]),
    ("sheet_no = 5 AND parcel_no >= 2", [2, 3]),
    ("sheet_no = 6 OR land_use = 'TMD'", [2, 4, 5]),
    ("parcel_no BETWEEN 2 AND 3", [2, 3, 5]),
    ("parcel_no NOT BETWEEN 2 AND 3", [1, 4]),
    ("land_use IN ('TMD', 'CLN')", [2, 4]),
    ("land_use NOT IN ('TMD', 'CLN', 'DGT')", [1, 3]),
    ("address LIKE 'Số%'", [1, 2, 3]),
    ("address LIKE 'Số _ Lê Lợi%'", [1, 2, 3]),
    ("CASEI(address) LIKE casei('%nguyễn trãi')", [4]),
    ("owner_name IS NULL", [5]),
    ("owner_name IS NOT NULL", [1, 2, 3, 4]),
    ("legal_area < area", [1, 2, 3, 5]),  # property-property
    ("area - legal_area > 0.5", [1, 2, 3, 5]),  # arithmetic
    ("area * 2 = 800", [1, 2, 3, 4, 5]),
    ("begin_lifespan > TIMESTAMP('2025-01-01T00:00:00Z')", [1, 2, 3, 4, 5]),
    ("INCLUDE", [1, 2, 3, 4, 5]),
    ("EXCLUDE", []),
    ("ward_code = '26737'", [5]),
])
def test_cql2_text(sample, text, expected):
    assert run(sample, text) == expected


def _lonlat_ring(*points):
    t = transformer(CITY_SRID, 4326)
    ring = [list(t.transform(x, y)) for x, y in points]
    return ring + ring[:1]


def test_cql2_json_operators(sample):
    assert run(sample, {"op": "=", "args": [{"property": "land_use"}, "ODT"]}) == [1, 3]
    assert run(sample, json.dumps({"op": "and", "args": [
        {"op": ">=", "args": [{"property": "parcel_no"}, 2]},
        {"op": "<", "args": [{"property": "sheet_no"}, 6]}]}), "cql2-json") == [2, 3]
    assert run(sample, {"op": "like", "args": [{"casei": {"property": "address"}}, {"casei": "%hàm nghi"}]}) == [5]
    assert run(sample, {"op": "isNull", "args": [{"property": "owner_name"}]}) == [5]
    after = {"op": "t_after", "args": [{"property": "begin_lifespan"}, {"timestamp": "2025-01-01T00:00:00Z"}]}
    assert run(sample, after) == [1, 2, 3, 4, 5]
    before = {"op": "t_before", "args": [{"property": "begin_lifespan"}, {"timestamp": "2025-01-01T00:00:00Z"}]}
    assert run(sample, before) == []
    during = {"op": "t_during", "args": [{"property": "begin_lifespan"},
                                         {"interval": ["2019-01-01T00:00:00Z", "2021-01-01T00:00:00Z"]}]}
    assert run(sample, during, all_versions=True) == [6]
    ring = _lonlat_ring((X0 + 5, Y0 + 5), (X0 + 45, Y0 + 5), (X0 + 45, Y0 + 8), (X0 + 5, Y0 + 8))
    polygon = {"type": "Polygon", "coordinates": [ring]}
    assert run(sample, {"op": "s_intersects", "args": [{"property": "geometry"}, polygon]}) == [1, 2, 3]
    assert run(sample, {"op": "s_within", "args": [{"property": "geom"}, polygon]}) == []
    lo, hi = transformer(CITY_SRID, 4326).transform(X0 + 1, Y0 + 21), transformer(CITY_SRID, 4326).transform(
        X0 + 2, Y0 + 22)
    assert run(sample, {"op": "s_intersects", "args": [{"property": "geom"}, {"bbox": [*lo, *hi]}]}) == [4]


def test_spatial_predicates_in_text(sample):
    t = transformer(CITY_SRID, 4326)
    ring = ", ".join(f"{x} {y}" for x, y in _lonlat_ring((X0 - 1, Y0 - 1), (X0 + 41, Y0 - 1), (X0 + 41, Y0 + 21),
                                                          (X0 - 1, Y0 + 21)))
    assert run(sample, f"S_WITHIN(geometry, POLYGON(({ring})))") == [1, 2]
    assert run(sample, f"S_CONTAINS(POLYGON(({ring})), geometry)") == [1, 2]
    assert run(sample, f"S_DISJOINT(geometry, POLYGON(({ring})))") == [5]  # 3 and 4 touch the ring
    lon, lat = t.transform(X0 + 20, Y0 + 10)
    assert run(sample, f"S_TOUCHES(geometry, POINT({lon} {lat}))") in ([1, 2], [1], [2], [])
    lo, hi = t.transform(X0 + 1, Y0 + 1), t.transform(X0 + 2, Y0 + 2)
    assert run(sample, f"BBOX(geometry, {lo[0]}, {lo[1]}, {hi[0]}, {hi[1]})") == [1]
    assert run(sample, f"BBOX(geometry, {X0 + 41}, {Y0 + 1}, {X0 + 42}, {Y0 + 2}, 'EPSG:9210')") == [3]
    assert run(sample, f"S_INTERSECTS(geom, POINT({X0 + 210} {Y0 + 210}))",
               filter_crs=q.crs_ref("EPSG:9210")) == [5]


@pytest.mark.parametrize("text", [
    "colour = 'red'",  # unknown property
    "geom = 'x'",  # the geometry is not a scalar
    "area > 'big'",  # wrong type
    "land_use > 5",
    "upper(area) = 'X'",
    "pg_sleep(1) = 1",
    "area LIKE '1%'",
    "S_INTERSECTS(land_use, POINT(1 2))",
    "land_use = 'ODT'; DELETE FROM parcel",
    "",
])
def test_rejected_filters(sample, text):
    if text == "":
        assert cql.parse_filter(text) is None
        return
    with pytest.raises(InvalidParameter) as err:
        run(sample, text)
    assert err.value.parameter == "filter"


def test_filter_size_limits():
    with pytest.raises(InvalidParameter):
        cql.parse_filter("a" * 30_000)
    with pytest.raises(InvalidParameter):
        cql.parse_filter("land_use = 'x'", "sql")
    with pytest.raises(InvalidParameter):
        cql.parse_filter('{"op": "=", "args": [', "cql2-json")
