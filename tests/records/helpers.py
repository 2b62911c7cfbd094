"""Geometry builders of the land-records tests (city CRS, around E 600000 N 1190000)."""

from __future__ import annotations

from geoalchemy2.shape import from_shape
from shapely.geometry import LineString, MultiLineString, box
from sqlalchemy import insert

from gisserver import schema
from licensing.geometry import to_db

E0, N0 = 600000.0, 1190000.0


def rect(x0, y0, x1, y1):
    """A rectangle in metres relative to (E0, N0)."""
    return box(E0 + x0, N0 + y0, E0 + x1, N0 + y1)


def line(*points):
    return LineString([(E0 + x, N0 + y) for x, y in points])


def add_building(conn, x0, y0, x1, y1) -> int:
    return conn.execute(
        insert(schema.building).values(geom=to_db(rect(x0, y0, x1, y1))).returning(schema.building.c.id)
    ).scalar_one()


def add_road(conn, points, name="Đường Phạm Thế Hiển") -> int:
    geom = from_shape(MultiLineString([[(E0 + x, N0 + y) for x, y in points]]), srid=909210)
    return conn.execute(insert(schema.road).values(name=name, row_width=16, geom=geom)
                        .returning(schema.road.c.id)).scalar_one()
