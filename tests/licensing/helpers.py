"""Small geometry builders for the licensing tests (city CRS, around E 600000 N 1190000)."""

from __future__ import annotations

from shapely.geometry import LineString, box

E0, N0 = 600000.0, 1190000.0


def rect(x0, y0, x1, y1):
    """A rectangle in metres relative to (E0, N0)."""
    return box(E0 + x0, N0 + y0, E0 + x1, N0 + y1)


def line(*points):
    return LineString([(E0 + x, N0 + y) for x, y in points])
