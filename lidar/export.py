"""Buildings chosen for a 3D export: one by id, or those of an area (capped), as LoD1 and LoD2 models.

The selection reads the canonical ``building`` table through the layer catalogue (the caller's
read rights and area-limited grants apply, as for OGC API - Features) and keeps buildings with
measured heights (ground p10 and roof p70, from LiDAR: detected ones or cadastral footprints
measured by ``lidar.store.update_cadastral_heights``). The writers are those of
:mod:`lidar.cityjson`; here each CityObject is named ``building-<id>`` after the table row, carries
the row's attributes, and a building stored as several polygons becomes one ``MultiSolid``.
A building whose ingest stored an LoD2 roof (``building_roof``, see ``lidar.store.roof_record``)
also gets its LoD2 Solid with semantic surfaces (or one ``BuildingPart`` per part of a stepped
roof), and its LoD2 shell in the GLB and 3D Tiles; the others stay LoD1 (``lod2_status`` says why).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from geoalchemy2.shape import to_shape
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from gisserver.crs import CITY_SRID
from gisserver.errors import Conflict, InvalidGeometry, InvalidInput, NotFound
from gisserver.schema import building
from gisserver.security import Principal
from layers import query as q
from lidar.buildings import Building
from lidar.cityjson import to_cityjson, to_glb, write_3dtiles
from lidar.store import stored_roofs
from lidar.tables import building_roof

CITYJSON_MEDIA_TYPE = "application/city+json"
GLB_MEDIA_TYPE = "model/gltf-binary"
ID_PREFIX = "building"


@dataclass
class Selection:
    """Buildings to export: one :class:`Building` per polygon part, with the row each part belongs to."""

    parts: list[Building] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # building id of every part
    rows: dict[int, dict] = field(default_factory=dict)  # attributes per building id, in order
    without_heights: int = 0  # buildings of the area left out: no LiDAR heights yet

    @property
    def ids(self) -> list[int]:
        return list(self.rows)


_COLUMNS = (building.c.id, building.c.parcel_id, building.c.floors, building.c.height, building.c.ground_z,
            building.c.roof_p50, building.c.roof_p70, building.c.roof_p90, building.c.source,
            building.c.lidar_date, building.c.attributes, building.c.geom,
            building_roof.c.lod2, building_roof.c.status.label("roof_status"), building_roof.c.roof_type,
            building_roof.c.model.label("roof_model"))
_WITH_ROOFS = building.outerjoin(building_roof, building_roof.c.building_id == building.c.id)
_MEASURED = and_(building.c.ground_z.is_not(None), building.c.roof_p70.is_not(None))


def _readable(conn: Connection, principal: Principal | None) -> list:
    """Extra conditions from the caller's rights on the buildings layer (NotFound if unreadable)."""
    source = q.open_layer(conn, "buildings", principal)
    return [] if source.restrict is None else [source.restrict]


def building_by_id(conn: Connection, building_id: int, principal: Principal | None) -> Selection:
    """One building; 404 if there is no such (readable) building, 409 if it has no LiDAR heights yet."""
    where = _readable(conn, principal)
    row = conn.execute(select(*_COLUMNS).select_from(_WITH_ROOFS).where(building.c.id == building_id, *where)).first()
    if row is None:
        raise NotFound(f"no building {building_id}")
    if row.ground_z is None or row.roof_p70 is None:
        raise Conflict(f"building {building_id} has no LiDAR heights yet (ground and roof); ingest a survey of it")
    selection = Selection()
    _add(selection, row)
    return selection


def area_of_bbox(box: q.Box):
    """A bbox (any CRS, axis order of its definition) as an area in the city CRS."""
    return q.box_expr(box, CITY_SRID)


def area_of_geojson(geometry, crs: q.CRSRef):
    """A GeoJSON Polygon/MultiPolygon (or a Feature of one) as an area in the city CRS."""
    if isinstance(geometry, dict) and geometry.get("type") == "Feature":
        geometry = geometry.get("geometry")
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise InvalidGeometry("the area must be a GeoJSON Polygon or MultiPolygon (or a Feature of one)")
    return q.geojson_expr(geometry, crs, CITY_SRID)


def buildings_in_area(conn: Connection, area, principal: Principal | None, *, limit: int) -> Selection:
    """Buildings with heights intersecting ``area`` (an SQL geometry in the city CRS), at most ``limit``.

    More than ``limit`` is a 400 naming the limit (ask for a smaller area), never a silent cut.
    """
    where = [func.ST_Intersects(building.c.geom, area), *_readable(conn, principal)]
    with q.input_errors():
        rows = conn.execute(select(*_COLUMNS).select_from(_WITH_ROOFS).where(*where, _MEASURED)
                            .order_by(building.c.id).limit(limit + 1)).all()
        if len(rows) > limit:
            raise InvalidInput(
                f"the area holds more than {limit} buildings with heights; export a smaller area",
                details={"limit": limit},
            )
        missing = conn.execute(select(func.count()).select_from(building).where(*where, ~_MEASURED)).scalar_one()
    selection = Selection(without_heights=int(missing))
    for row in rows:
        _add(selection, row)
    return selection


def _add(selection: Selection, row) -> None:
    shape = to_shape(row.geom)
    polygons = list(shape.geoms) if hasattr(shape, "geoms") else [shape]
    ground, p70 = float(row.ground_z), float(row.roof_p70)
    p50 = float(row.roof_p50) if row.roof_p50 is not None else p70
    p90 = float(row.roof_p90) if row.roof_p90 is not None else p70
    points = int((row.attributes or {}).get("point_count", 0))
    roofs = stored_roofs(row.roof_model)
    if roofs is not None and (len(roofs) != len(polygons) or not all(map(_roof_fits, polygons, roofs))):
        roofs = None  # the footprint was edited since the survey: its roof no longer fits
    for k, poly in enumerate(polygons):
        selection.parts.append(Building(poly, ground, p50, p70, p90, points, roof=roofs[k] if roofs else None))
        selection.owners.append(int(row.id))
    selection.rows[int(row.id)] = {
        "parcel_id": row.parcel_id, "source": row.source,
        "lidar_date": row.lidar_date.isoformat() if isinstance(row.lidar_date, dt.date) else None,
        "floors": row.floors, "area": float(sum(p.area for p in polygons)),
        "roof": None if roofs is None else {"lod2_status": row.roof_status, "roof_type": row.roof_type},
    }


def _roof_fits(polygon, roof) -> bool:
    """Whether an LoD2 roof's faces still cover the footprint (same bounds and area to 1 cm / 0.1 %)."""
    if not roof.lod2:
        return True
    faces = [f for f, _ in roof.faces]
    bounds = np.array([f.bounds for f in faces])
    box = (*bounds[:, :2].min(axis=0), *bounds[:, 2:].max(axis=0))
    return bool(np.allclose(box, polygon.bounds, rtol=0.0, atol=0.01)
                and abs(sum(f.area for f in faces) - polygon.area) <= 1e-3 * polygon.area)


def cityjson_document(selection: Selection) -> dict:
    """CityJSON 2.0: one Building per row, named ``building-<id>``: an LoD1 Solid (MultiSolid for
    several polygons) and, where an LoD2 roof is stored, an LoD2 Solid (MultiSolid) with semantic
    surfaces, or BuildingPart children ``building-<id>-part-<k>`` for a roof with steps."""
    doc = to_cityjson(selection.parts, CITY_SRID, id_prefix="part")
    made = doc["CityObjects"]
    objects: dict[str, dict] = {}
    pieces: dict[int, list[str]] = {}
    for i, owner in enumerate(selection.owners, start=1):
        pieces.setdefault(owner, []).append(f"part-{i}")
    for owner, oids in pieces.items():
        key, meta = f"{ID_PREFIX}-{owner}", selection.rows[owner]
        attributes = dict(made[oids[0]]["attributes"])
        if len(oids) > 1 and meta["roof"] is not None:
            # one roof per polygon: the building's own status replaces the first polygon's
            for name in ("roof_points", "roof_explained", "roof_type", "roof_planes", "roof_plane_rmse"):
                attributes.pop(name, None)
            attributes["lod2_status"] = meta["roof"]["lod2_status"]
            if meta["roof"]["roof_type"]:
                attributes["roof_type"] = meta["roof"]["roof_type"]
        attributes["footprint_area"] = round(meta["area"], 2)
        attributes["source"] = meta["source"]
        if meta["lidar_date"]:
            attributes["lidar_date"] = meta["lidar_date"]
        if meta["parcel_id"] is not None:
            attributes["parcel_id"] = meta["parcel_id"]
        objects[key] = {"type": "Building", "attributes": attributes,
                        "geometry": _merged_geometry([made[o]["geometry"] for o in oids])}
        children = [c for o in oids for c in made[o].get("children", [])]
        if children:
            objects[key]["children"] = [f"{key}-part-{k}" for k in range(1, len(children) + 1)]
            for child, name in zip(children, objects[key]["children"], strict=True):
                objects[name] = dict(made[child], parents=[key])
    doc["CityObjects"] = objects
    doc["metadata"]["title"] = "LoD1 and LoD2 buildings (HCMC GIS server)"
    return doc


def _merged_geometry(geometries: list[list[dict]]) -> list[dict]:
    """The geometries of a building's polygons as one per LoD: a Solid, or a MultiSolid for several.

    LoD2 is kept when every polygon has an LoD2 Solid (a polygon with a stepped roof has its LoD2
    in BuildingParts instead, and a building partly LoD1 stays LoD1 on the Building)."""
    if len(geometries) == 1:
        return geometries[0]
    lod1 = [g[0] for g in geometries]
    merged = [{"type": "MultiSolid", "lod": "1", "boundaries": [g["boundaries"] for g in lod1]}]
    lod2 = [g[1] for g in geometries if len(g) > 1]
    if len(lod2) == len(geometries):
        merged.append({"type": "MultiSolid", "lod": "2.0", "boundaries": [g["boundaries"] for g in lod2],
                       "semantics": {"surfaces": lod2[0]["semantics"]["surfaces"],
                                     "values": [g["semantics"]["values"] for g in lod2]}})
    return merged


def cityjson_bytes(selection: Selection) -> bytes:
    return json.dumps(cityjson_document(selection), separators=(",", ":"), ensure_ascii=False).encode()


def glb_bytes(selection: Selection) -> tuple[bytes, list[float]]:
    """Binary glTF of the selection and its origin (city CRS x, y and height): see ``lidar.cityjson.to_glb``."""
    return to_glb(selection.parts)


def tileset(selection: Selection, content_uri: str) -> dict:
    """A 3D Tiles 1.1 tileset whose single content is ``content_uri`` (the GLB of the same selection).

    The GLB written alongside by ``write_3dtiles`` is the one ``glb_bytes`` returns for the same
    selection (same triangles, same origin), so the content may be served by the GLB export.
    """
    with tempfile.TemporaryDirectory(prefix="tileset-") as tmp:
        doc = json.loads(write_3dtiles(Path(tmp), selection.parts, CITY_SRID).read_text())
    doc["root"]["content"]["uri"] = content_uri
    doc["asset"]["extras"] = {"buildings": selection.ids}
    return doc
