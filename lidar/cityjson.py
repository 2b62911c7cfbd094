"""3D city model: CityJSON 2.0 and binary glTF (GLB) export of buildings, LoD1 and LoD2.

Every building becomes a closed prism from its ground height (p10) to its LoD1 roof height
(p70) over its footprint: bottom face, top face and one wall per edge (holes included), oriented
so that normals point outwards (exterior rings counter-clockwise seen from above). A building
whose roof model (``lidar.roofs``) reached LoD2 also gets an LoD2 Solid with semantic surfaces
(RoofSurface, WallSurface, GroundSurface) next to the LoD1 one, or, when its roof has vertical
steps, one BuildingPart child per part with its LoD2 Solid; the GLB uses LoD2 when present.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from gisserver.crs import srid_to_epsg
from lidar.buildings import Building
from lidar.roof_shell import lod2_surfaces, lod2_triangles
from lidar.roofs import RoofModel

CITYJSON_VERSION = "2.0"


def _rings(poly: Polygon) -> list[np.ndarray]:
    poly = orient(poly, 1.0)  # exterior CCW, holes CW
    return [np.asarray(poly.exterior.coords)[:-1]] + [np.asarray(r.coords)[:-1] for r in poly.interiors]


def prism_surfaces(poly: Polygon, z0: float, z1: float, add_vertex) -> list[list[list[int]]]:
    """Surfaces (lists of rings of vertex indices) of the LoD1 prism; ``add_vertex(x, y, z) -> index``."""
    rings = _rings(poly)
    bottom = [[add_vertex(x, y, z0) for x, y in ring] for ring in rings]
    top = [[add_vertex(x, y, z1) for x, y in ring] for ring in rings]
    surfaces = [[list(reversed(r)) for r in bottom], top]
    for b, t in zip(bottom, top, strict=True):
        n = len(b)
        for i in range(n):
            j = (i + 1) % n
            surfaces.append([[b[i], b[j], t[j], t[i]]])
    return surfaces


def to_cityjson(buildings: list[Building], srid: int, *, id_prefix: str = "lidar-building",
                lidar_date: str | None = None) -> dict:
    """A CityJSON 2.0 document with one LoD1 Solid per building (vertices quantised to 1 mm)."""
    if buildings:
        xy = np.vstack([np.asarray(b.footprint.exterior.coords) for b in buildings])
        translate = [float(np.floor(xy[:, 0].min())), float(np.floor(xy[:, 1].min())),
                     float(np.floor(min(b.ground_p10 for b in buildings)))]
    else:
        translate = [0.0, 0.0, 0.0]
    scale = 0.001
    vertices: list[list[int]] = []
    index: dict[tuple[int, int, int], int] = {}

    def add_vertex(x, y, z):
        key = (int(round((x - translate[0]) / scale)), int(round((y - translate[1]) / scale)),
               int(round((z - translate[2]) / scale)))
        if key not in index:
            index[key] = len(vertices)
            vertices.append(list(key))
        return index[key]

    objects = {}
    for i, b in enumerate(buildings, start=1):
        attributes = {
            "measuredHeight": round(b.height, 3), "storeysAboveGround": b.floors,
            "h_ground_p10": round(b.ground_p10, 3), "h_roof_p50": round(b.roof_p50, 3),
            "h_roof_p70": round(b.roof_p70, 3), "h_roof_p90": round(b.roof_p90, 3),
            "footprint_area": round(b.area, 2), "point_count": b.point_count,
        }
        if lidar_date:
            attributes["lidar_date"] = lidar_date
        geometry = [{"type": "Solid", "lod": "1",
                     "boundaries": [prism_surfaces(b.footprint, b.ground_p10, b.roof_p70, add_vertex)]}]
        oid = f"{id_prefix}-{i}"
        objects[oid] = {"type": "Building", "attributes": attributes, "geometry": geometry}
        if b.roof is None:
            continue
        attributes.update(_roof_attributes(b.roof))
        if b.roof.parts:
            # a roof with vertical steps: one BuildingPart (own LoD2 Solid) per part, as CityGML does
            # for segments of different heights
            objects[oid]["children"] = [f"{oid}-part-{k}" for k in range(1, len(b.roof.parts) + 1)]
            for pid, (poly, part) in zip(objects[oid]["children"], b.roof.parts, strict=True):
                objects[pid] = {"type": "BuildingPart", "parents": [oid],
                                "attributes": {"footprint_area": round(poly.area, 2), **_roof_attributes(part)},
                                "geometry": [_lod2_solid(part, b.ground_p10, add_vertex)]}
        elif b.roof.lod2:
            geometry.append(_lod2_solid(b.roof, b.ground_p10, add_vertex))
    return {
        "type": "CityJSON",
        "version": CITYJSON_VERSION,
        "transform": {"scale": [scale, scale, scale], "translate": translate},
        "metadata": {"referenceSystem": f"https://www.opengis.net/def/crs/EPSG/0/{srid_to_epsg(srid)}"},
        "CityObjects": objects,
        "vertices": vertices,
    }


SEMANTIC_TYPES = ("RoofSurface", "WallSurface", "GroundSurface")


def _roof_attributes(roof: RoofModel) -> dict:
    """How the roof was modelled: ``lod2_status`` is "lod2" or why the building stayed LoD1."""
    out = {"lod2_status": roof.reason, "roof_points": roof.point_count}
    if roof.planes:
        out["roof_explained"] = round(roof.explained, 3)
    if roof.lod2:
        out.update(roof_type=roof.roof_type, roof_planes=len(roof.planes), roof_plane_rmse=round(roof.plane_rmse, 3))
    return out


def _lod2_solid(roof: RoofModel, ground: float, add_vertex) -> dict:
    """The LoD2 Solid of one continuous roof model, with semantic surfaces."""
    shell, values = [], []
    for kind, rings in lod2_surfaces(roof, ground):
        shell.append([[add_vertex(x, y, z) for x, y, z in ring] for ring in rings])
        values.append(SEMANTIC_TYPES.index(kind))
    return {"type": "Solid", "lod": "2.0", "boundaries": [shell],
            "semantics": {"surfaces": [{"type": t} for t in SEMANTIC_TYPES], "values": [values]}}


def write_cityjson(path, buildings: list[Building], srid: int, **kwargs) -> Path:
    path = Path(path)
    path.write_text(json.dumps(to_cityjson(buildings, srid, **kwargs), separators=(",", ":")))
    return path


# --- glTF -----------------------------------------------------------------------------------


def _prism_triangles(poly: Polygon, z0: float, z1: float) -> np.ndarray:
    """(n, 3, 3) triangles of the closed prism, counter-clockwise seen from outside."""
    tris = []
    for t in shapely.get_parts(shapely.constrained_delaunay_triangles(orient(poly, 1.0))):
        xy = np.asarray(orient(t, 1.0).exterior.coords)[:3]
        tris.append(np.column_stack([xy, np.full(3, z1)]))  # roof, CCW from above
        tris.append(np.column_stack([xy[::-1], np.full(3, z0)]))  # floor, facing down
    for ring in _rings(poly):
        nxt = np.roll(ring, -1, axis=0)
        for (x0, y0), (x1, y1) in zip(ring, nxt, strict=True):
            a, b, c, d = (x0, y0, z0), (x1, y1, z0), (x1, y1, z1), (x0, y0, z1)
            tris.append(np.array([a, b, c]))
            tris.append(np.array([a, c, d]))
    return np.asarray(tris)


def mesh_parts(buildings: list[Building]) -> list[Building]:
    """The buildings to triangulate: a stepped LoD2 roof as one building per part (its own roof model).

    Each part's triangles then take their heights from their own roof, as its CityJSON BuildingPart
    does, instead of the whole roof's envelope, which is also ~10x slower (a polygon test per part
    and per roof triangle) and lifts the vertices on a step to the other part's height.
    """
    out = []
    for b in buildings:
        if b.roof is not None and b.roof.lod2 and b.roof.parts:
            out += [Building(poly, b.ground_p10, b.roof_p50, b.roof_p70, b.roof_p90, part.point_count, roof=part)
                    for poly, part in b.roof.parts]
        else:
            out.append(b)
    return out


def to_glb(buildings: list[Building]) -> tuple[bytes, list[float]]:
    """A binary glTF 2.0 (one mesh, flat normals, y-up local metres) and its origin (x, y, z).

    Buildings with an LoD2 roof are exported as LoD2 (a stepped roof part by part: ``mesh_parts``),
    the others as their LoD1 prism.

    glTF is y-up: local (east, height, -north) around the returned origin.
    """
    buildings = mesh_parts(buildings)
    tris = [lod2_triangles(b.roof, b.ground_p10) if b.roof is not None and b.roof.lod2
            else _prism_triangles(b.footprint, b.ground_p10, b.roof_p70) for b in buildings]
    tris = np.concatenate(tris) if tris else np.zeros((0, 3, 3))
    origin = tris.reshape(-1, 3).min(axis=0) if len(tris) else np.zeros(3)
    local = tris - origin
    pos = np.stack([local[..., 0], local[..., 2], -local[..., 1]], axis=-1).astype(np.float32)
    n = np.cross(pos[:, 1] - pos[:, 0], pos[:, 2] - pos[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    normals = np.repeat(n[:, None, :], 3, axis=1).astype(np.float32)
    positions = pos.reshape(-1, 3)
    blob = positions.tobytes() + normals.reshape(-1, 3).tobytes()
    count = len(positions)
    gltf = {
        "asset": {"version": "2.0", "generator": "hcmc-gisserver lidar"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "mode": 4}]}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": count * 12, "target": 34962},
            {"buffer": 0, "byteOffset": count * 12, "byteLength": count * 12, "target": 34962},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": count, "type": "VEC3",
             "min": positions.min(axis=0).tolist() if count else [0, 0, 0],
             "max": positions.max(axis=0).tolist() if count else [0, 0, 0]},
            {"bufferView": 1, "componentType": 5126, "count": count, "type": "VEC3"},
        ],
    }
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    glb = (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(js), b"JSON") + js
           + struct.pack("<I4s", len(blob), b"BIN\0") + blob)
    return glb, [float(v) for v in origin]


def write_glb(path, buildings: list[Building]) -> tuple[Path, list[float]]:
    glb, origin = to_glb(buildings)
    path = Path(path)
    path.write_bytes(glb)
    return path, origin


def _enu_to_ecef(lon_deg: float, lat_deg: float, h: float) -> list[float]:
    """Column-major 4x4 matrix from local east-north-up metres at (lon, lat, h) to ECEF."""
    from pyproj import Transformer

    x, y, z = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon_deg, lat_deg, h)
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    east = [-np.sin(lon), np.cos(lon), 0.0]
    north = [-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)]
    up = [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]
    return [*east, 0.0, *north, 0.0, *up, 0.0, float(x), float(y), float(z), 1.0]


def _top(b: Building) -> float:
    """Highest point of the exported model of a building (ridge of an LoD2 roof, else the LoD1 top)."""
    if b.roof is None or not b.roof.lod2:
        return b.roof_p70
    xy = np.vstack([np.asarray(f.exterior.coords) for f, _ in b.roof.faces])
    return max(b.roof_p70, float(np.max(b.roof.envelope(xy[:, 0], xy[:, 1]))))


def write_3dtiles(folder, buildings: list[Building], srid: int) -> Path:
    """A minimal 3D Tiles 1.1 tileset (one GLB content) that a web viewer (CesiumJS) can load.

    The GLB is in local metres of the projected CRS around its origin; the tile transform places
    that origin on the ellipsoid (east/north of the projection taken as local east/north: the grid
    convergence, under a degree in the city, and the height datum are ignored: a viewer model, not
    a survey product).
    """
    from pyproj import Transformer

    from gisserver.crs import pyproj_crs

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _, origin = write_glb(folder / "buildings.glb", buildings)
    to_lonlat = Transformer.from_crs(pyproj_crs(srid), "EPSG:4326", always_xy=True)
    lon0, lat0 = to_lonlat.transform(origin[0], origin[1])
    xy = np.vstack([np.asarray(b.footprint.exterior.coords) for b in buildings]) if buildings else np.zeros((1, 2))
    lons, lats = to_lonlat.transform(xy[:, 0], xy[:, 1])
    top = max((_top(b) for b in buildings), default=origin[2])
    region = [float(np.radians(np.min(lons))), float(np.radians(np.min(lats))), float(np.radians(np.max(lons))),
              float(np.radians(np.max(lats))), float(origin[2]), float(top)]
    tileset = {
        "asset": {"version": "1.1", "generator": "hcmc-gisserver lidar"},
        "geometricError": 100.0,
        "root": {
            "boundingVolume": {"region": region},
            "geometricError": 0.0,
            "refine": "ADD",
            "transform": _enu_to_ecef(lon0, lat0, origin[2]),
            "content": {"uri": "buildings.glb"},
        },
    }
    path = folder / "tileset.json"
    path.write_text(json.dumps(tileset, indent=1))
    return path
