"""Buildings chosen for a 3D export: one by id, or those of an area (capped), as LoD1 models.

The selection reads the canonical ``building`` table through the layer catalogue (the caller's
read rights and area-limited grants apply, as for OGC API - Features) and keeps buildings with
measured heights (ground p10 and roof p70, from LiDAR: detected ones or cadastral footprints
measured by ``lidar.store.update_cadastral_heights``). The writers are those of
:mod:`lidar.cityjson`; here each CityObject is named ``building-<id>`` after the table row, carries
the row's attributes, and a building stored as several polygons becomes one ``MultiSolid``.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

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
            building.c.lidar_date, building.c.attributes, building.c.geom)
_MEASURED = and_(building.c.ground_z.is_not(None), building.c.roof_p70.is_not(None))


def _readable(conn: Connection, principal: Principal | None) -> list:
    """Extra conditions from the caller's rights on the buildings layer (NotFound if unreadable)."""
    source = q.open_layer(conn, "buildings", principal)
    return [] if source.restrict is None else [source.restrict]


def building_by_id(conn: Connection, building_id: int, principal: Principal | None) -> Selection:
    """One building; 404 if there is no such (readable) building, 409 if it has no LiDAR heights yet."""
    where = _readable(conn, principal)
    row = conn.execute(select(*_COLUMNS).where(building.c.id == building_id, *where)).first()
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
        rows = conn.execute(select(*_COLUMNS).where(*where, _MEASURED).order_by(building.c.id).limit(limit + 1)).all()
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
    for poly in polygons:
        selection.parts.append(Building(poly, ground, p50, p70, p90, points))
        selection.owners.append(int(row.id))
    selection.rows[int(row.id)] = {
        "parcel_id": row.parcel_id, "source": row.source,
        "lidar_date": row.lidar_date.isoformat() if isinstance(row.lidar_date, dt.date) else None,
        "floors": row.floors, "area": float(sum(p.area for p in polygons)),
    }


def cityjson_document(selection: Selection) -> dict:
    """CityJSON 2.0: one Building per row, named ``building-<id>``; LoD1 Solid (MultiSolid for several parts)."""
    doc = to_cityjson(selection.parts, CITY_SRID, id_prefix="part")
    made = list(doc["CityObjects"].values())
    objects: dict[str, dict] = {}
    for part, owner in zip(made, selection.owners, strict=True):
        key = f"{ID_PREFIX}-{owner}"
        solid = part["geometry"][0]
        if key not in objects:
            meta = selection.rows[owner]
            attributes = dict(part["attributes"])
            attributes["footprint_area"] = round(meta["area"], 2)
            attributes["source"] = meta["source"]
            if meta["lidar_date"]:
                attributes["lidar_date"] = meta["lidar_date"]
            if meta["parcel_id"] is not None:
                attributes["parcel_id"] = meta["parcel_id"]
            objects[key] = {"type": "Building", "attributes": attributes, "geometry": [solid]}
            continue
        geom = objects[key]["geometry"][0]
        if geom["type"] == "Solid":
            geom["type"], geom["boundaries"] = "MultiSolid", [geom["boundaries"]]
        geom["boundaries"].append(solid["boundaries"])
    doc["CityObjects"] = objects
    doc["metadata"]["title"] = "LoD1 buildings (HCMC GIS server)"
    return doc


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
