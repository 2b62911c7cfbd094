"""Small geometry builders for the licensing tests (city CRS, around E 600000 N 1190000)."""

from __future__ import annotations

from geoalchemy2.shape import from_shape
from shapely.geometry import LineString, box
from sqlalchemy import insert

from gisserver import schema

E0, N0 = 600000.0, 1190000.0


def rect(x0, y0, x1, y1):
    """A rectangle in metres relative to (E0, N0)."""
    return box(E0 + x0, N0 + y0, E0 + x1, N0 + y1)


def line(*points):
    return LineString([(E0 + x, N0 + y) for x, y in points])


def _multi_line(points):
    from shapely.geometry import MultiLineString

    return from_shape(MultiLineString([[(E0 + x, N0 + y) for x, y in points]]), srid=909210)


def _multi_poly(geom):
    from licensing.geometry import to_db

    return to_db(geom)


def add_power_line(conn, points, kv, conductor="bare", placement="overhead", name=None):
    return conn.execute(insert(schema.power_line).values(
        voltage_kv=kv, conductor=conductor, placement=placement, name=name, geom=_multi_line(points)
    ).returning(schema.power_line.c.id)).scalar_one()


def add_road(conn, points, row_width, name="Đường số 1"):
    return conn.execute(insert(schema.road).values(
        row_width=row_width, name=name, geom=_multi_line(points)
    ).returning(schema.road.c.id)).scalar_one()


def add_red_line(conn, points, road_id=None):
    return conn.execute(insert(schema.red_line).values(
        road_id=road_id, decision="QĐ 1234/2020", geom=_multi_line(points)
    ).returning(schema.red_line.c.id)).scalar_one()


def add_water(conn, geom, kind="canal"):
    return conn.execute(insert(schema.water_body).values(kind=kind, geom=_multi_poly(geom))
                        .returning(schema.water_body.c.id)).scalar_one()


def add_zone(conn, geom, **values):
    values.setdefault("zone_code", "R1")
    return conn.execute(insert(schema.zoning_zone).values(geom=_multi_poly(geom), **values)
                        .returning(schema.zoning_zone.c.id)).scalar_one()
