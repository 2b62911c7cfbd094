"""Map-serving test data: a few real features near Ben Thanh market, inserted into canonical tables."""

from __future__ import annotations

import pytest
from geoalchemy2 import WKTElement
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Point, box

from gisserver import schema
from gisserver.crs import CITY_SRID, transformer
from layers.catalogue import bump_version

BEN_THANH = (603480.0, 1191450.0)


def city_geom(geom):
    return WKTElement(geom.wkt, srid=CITY_SRID)


def lonlat(e: float, n: float) -> tuple[float, float]:
    return transformer(CITY_SRID, 4326).transform(e, n)


def insert_parcels(conn, n: int = 4, origin=BEN_THANH, size: float = 40.0, ward_code: str = "26734"):
    """``n`` x ``n`` square parcels of ``size`` m with 2 m gaps, south-west corner at ``origin``."""
    rows = []
    for i in range(n):
        for j in range(n):
            x0, y0 = origin[0] + i * (size + 2), origin[1] + j * (size + 2)
            rows.append({
                "ward_code": ward_code, "sheet_no": 12, "parcel_no": i * n + j + 1,
                "address": f"{i * n + j + 1} Lê Lợi", "land_use": "ODT" if (i + j) % 2 else "TMD",
                "owner_name": "Nguyễn Văn A",
                "geom": city_geom(MultiPolygon([box(x0, y0, x0 + size, y0 + size)])),
            })
    conn.execute(schema.parcel.insert(), rows)


@pytest.fixture
def ben_thanh(catalogue):
    """Parcels, a road, trees and a restricted telecom line around Ben Thanh; versions bumped."""
    e, n = BEN_THANH
    with catalogue.begin() as conn:
        insert_parcels(conn)
        conn.execute(schema.road.insert(), [{
            "name": "Lê Lợi", "road_class": "primary", "row_width": 30.0,
            "geom": city_geom(MultiLineString([LineString([(e - 100, n - 10), (e + 300, n - 10)])])),
        }])
        conn.execute(schema.tree.insert(), [
            {"species": "Dầu rái", "height": 18.0, "geom": city_geom(Point(e + 20 + 42 * k, n - 20))}
            for k in range(4)
        ])
        conn.execute(schema.telecom.insert(), [{
            "kind": "fibre", "operator": "VNPT",
            "geom": city_geom(MultiLineString([LineString([(e, n + 50), (e + 150, n + 50)])])),
        }])
        for name in ("parcels", "roads", "trees", "telecom"):
            bump_version(conn, name)
    return catalogue


@pytest.fixture(autouse=True)
def empty_tile_cache(app):
    """Each test starts with an empty tile cache (the app, and its cache folder, live per session)."""
    import shutil

    root = app.extensions["gisserver"].settings.var_dir / "tiles"
    shutil.rmtree(root, ignore_errors=True)
    app.extensions.pop("gisserver.tiles_cache", None)
    yield


@pytest.fixture(autouse=True)
def fresh_catalogue_snapshot(app):
    """Tests see catalogue edits at once (ttl 0); tests of the snapshot itself build their own."""
    from tiles.snapshot import CatalogueSnapshot

    app.extensions["gisserver.tiles_catalogue"] = CatalogueSnapshot(app.extensions["gisserver"].engine, ttl=0)
    yield
    app.extensions.pop("gisserver.tiles_catalogue", None)
