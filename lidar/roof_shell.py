"""The LoD2 shell of a roof model: roof faces, walls and ground surface, and its triangles.

The footprint is cut by the lines where two of the model's planes meet (snapped to the 1 mm grid
of the CityJSON vertices); each cell takes the plane active in it, cells of one plane are merged
and the merged regions noded again: those are the roof faces, lifted onto the model surface.
Walls stand on every boundary edge of that partition (their top edges are the roof edges) and the
ground surface closes the shell. Each (x, y) takes its z from the model, so edges match exactly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

if TYPE_CHECKING:
    from lidar.roofs import RoofModel, RoofPlane

#: snapping grid (m) of the 2D roof partition: the quantum of the CityJSON vertices
GRID = 0.001


def _plane_lines(planes: list[RoofPlane], origin, bounds) -> list:
    """The lines where two planes meet, as segments across the (enlarged) bounds."""
    x0, y0, x1, y1 = bounds
    reach = 2 * math.hypot(x1 - x0, y1 - y0) + 10
    cx, cy = (x0 + x1) / 2 - origin[0], (y0 + y1) / 2 - origin[1]
    lines = []
    for i, pi in enumerate(planes):
        for pj in planes[i + 1:]:
            a, b, c = pi.a - pj.a, pi.b - pj.b, pi.c - pj.c
            norm = math.hypot(a, b)
            if norm < 1e-9:
                continue  # parallel planes never meet
            # the point of the line nearest the centre, and its direction
            t = -(a * cx + b * cy + c) / norm**2
            px, py = cx + a * t + origin[0], cy + b * t + origin[1]
            ux, uy = -b / norm * reach, a / norm * reach
            lines.append(shapely.LineString([(px - ux, py - uy), (px + ux, py + uy)]))
    return lines


def _faces(footprint: Polygon, lines: list) -> list[Polygon]:
    noded = shapely.union_all([footprint.boundary, *[shapely.intersection(ln, footprint) for ln in lines]],
                              grid_size=GRID)
    out = []
    for face in shapely.get_parts(shapely.polygonize(shapely.get_parts(noded))):
        if face.area > 0 and footprint.contains(face.point_on_surface()):
            out.append(orient(face, 1.0))
    return out


def _active_plane(model: RoofModel, faces: list[Polygon]) -> np.ndarray:
    pts = shapely.get_coordinates(shapely.point_on_surface(faces))
    surface = model.envelope(pts[:, 0], pts[:, 1])
    dx, dy = pts[:, 0] - model.origin[0], pts[:, 1] - model.origin[1]
    return np.argmin([np.abs(p.z(dx, dy) - surface) for p in model.planes], axis=0)


def roof_partition(footprint: Polygon, model: RoofModel) -> list[tuple[Polygon, int]]:
    """Roof faces: the footprint's regions where each plane is the active one, noded on the 1 mm grid."""
    fp = shapely.set_precision(footprint, GRID)
    if len(model.planes) == 1:
        return [(orient(fp, 1.0), 0)]
    cells = _faces(fp, _plane_lines(model.planes, model.origin, fp.bounds))
    if not cells:
        return []
    active = _active_plane(model, cells)
    regions = [shapely.union_all([c for c, k in zip(cells, active, strict=True) if k == i], grid_size=GRID)
               for i in np.unique(active)]
    faces = _faces(fp, [r.boundary for r in regions])
    return [(f, int(k)) for f, k in zip(faces, _active_plane(model, faces), strict=True)] if faces else []


def _ring_xy(ring) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in np.asarray(ring.coords)[:-1]]


def _boundary_rings(faces: list[Polygon]) -> list[list[tuple[float, float]]] | None:
    """Rings (interior on the left) of the partition's outer boundary; None if they do not chain."""
    directed = set()
    for f in faces:
        for ring in [f.exterior, *f.interiors]:
            pts = _ring_xy(ring)
            directed.update(zip(pts, pts[1:] + pts[:1], strict=True))
    boundary = [(a, b) for a, b in directed if (b, a) not in directed]
    nxt: dict = {}
    for a, b in boundary:
        if a in nxt:
            return None  # a pinch: two boundary edges leave one vertex
        nxt[a] = b
    rings = []
    while nxt:
        start, _ = next(iter(nxt.items()))
        ring = [start]
        cur = nxt.pop(start)
        while cur != start:
            ring.append(cur)
            if cur not in nxt:
                return None
            cur = nxt.pop(cur)
        rings.append(ring)
    return rings


def _signed_area(ring) -> float:
    xy = np.asarray(ring)
    return 0.5 * float(np.sum(xy[:, 0] * np.roll(xy[:, 1], -1) - np.roll(xy[:, 0], -1) * xy[:, 1]))


def lod2_surfaces(model: RoofModel, ground: float) -> list[tuple[str, list[list[tuple[float, float, float]]]]]:
    """Closed LoD2 shell: (semantic type, rings of (x, y, z)), outward orientation.

    Roof faces counter-clockwise seen from above, walls on every boundary edge of the partition
    (bottom edge, then top edge backwards), the ground surface clockwise seen from above.
    """
    if model.parts:
        raise ValueError("a roof with steps has one shell per part: use lod2_shells")
    faces = [f for f, _ in model.faces]

    def top(ring):
        xy = np.asarray(ring)
        zs = model.envelope(xy[:, 0], xy[:, 1])
        return [(x, y, float(h)) for (x, y), h in zip(ring, zs, strict=True)]

    surfaces = [("RoofSurface", [top(_ring_xy(r)) for r in [f.exterior, *f.interiors]]) for f in faces]
    rings = _boundary_rings(faces)
    if rings is not None and sum(_signed_area(r) > 0 for r in rings) == 1:
        outer = max(rings, key=_signed_area)
        ordered = [outer] + [r for r in rings if r is not outer]
        surfaces.append(("GroundSurface", [[(x, y, ground) for x, y in reversed(r)] for r in ordered]))
        boundary = [(r[i], r[(i + 1) % len(r)]) for r in rings for i in range(len(r))]
    else:
        # a pinched outline (two boundary edges leave one vertex): one ground face per roof face
        face_rings = [[_ring_xy(r) for r in [f.exterior, *f.interiors]] for f in faces]
        for rs in face_rings:
            surfaces.append(("GroundSurface", [[(x, y, ground) for x, y in reversed(r)] for r in rs]))
        boundary = _open_edges([r for rs in face_rings for r in rs])
    ends = list({p for edge in boundary for p in edge})
    tops = dict(zip(ends, (t[2] for t in top(ends)), strict=True)) if ends else {}
    for a, b in boundary:
        surfaces.append(("WallSurface", [[(a[0], a[1], ground), (b[0], b[1], ground),
                                          (b[0], b[1], tops[b]), (a[0], a[1], tops[a])]]))
    return surfaces


def lod2_shells(model: RoofModel, ground: float) -> list[list[tuple[str, list]]]:
    """One closed shell (``lod2_surfaces``) per building part; a single shell without parts."""
    if model.parts:
        return [lod2_surfaces(part, ground) for _, part in model.parts]
    return [lod2_surfaces(model, ground)]


def _open_edges(rings) -> list:
    directed = set()
    for pts in rings:
        directed.update(zip(pts, pts[1:] + pts[:1], strict=True))
    return [(a, b) for a, b in directed if (b, a) not in directed]


def lod2_triangles(model: RoofModel, ground: float) -> np.ndarray:
    """(n, 3, 3) triangles of the LoD2 shells, counter-clockwise seen from outside (for glTF)."""
    tris = []
    for kind, rings in (s for shell in lod2_shells(model, ground) for s in shell):
        if kind == "WallSurface":
            a, b, c, d = rings[0]
            tris += [[a, b, c], [a, c, d]]
            continue
        poly = Polygon([p[:2] for p in rings[0]], [[p[:2] for p in r] for r in rings[1:]])
        for t in shapely.get_parts(shapely.constrained_delaunay_triangles(orient(poly, 1.0))):
            xy = np.asarray(orient(t, 1.0).exterior.coords)[:3]
            if kind == "RoofSurface":
                tris.append(np.column_stack([xy, model.envelope(xy[:, 0], xy[:, 1])]))
            else:
                tris.append(np.column_stack([xy[::-1], np.full(3, ground)]))
    return np.asarray(tris, dtype=np.float64).reshape(-1, 3, 3)
