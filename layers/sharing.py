"""Sharing layers between the city's agencies (districts and departments).

Each layer has an owner agency; the owner (or an admin) grants read or edit access on the whole
layer or on an area of it (e.g. a district boundary) to other agencies, and revokes it. Grants
are data in ``layer_grant``; every service reads them through the catalogue (``LayerInfo``), so a
grant or a revocation applies to queries, OGC API, WMS/WMTS, tiles and exports at once. Every
grant and revocation is in the audit log.
"""

from __future__ import annotations

from geoalchemy2.shape import from_shape, to_shape
from shapely.geometry import MultiPolygon, Polygon, shape
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from gisserver import audit, schema
from gisserver.crs import CITY_SRID, transformer
from gisserver.errors import Conflict, Forbidden, InvalidGeometry, InvalidInput, NotFound
from gisserver.security import Principal
from layers.catalogue import LayerInfo, get_layer

PERMISSIONS = ("read", "edit")


def create_agency(conn: Connection, code: str, name: str, kind: str = "department", *, actor: str) -> int:
    if kind not in ("district", "department", "city"):
        raise InvalidInput("agency kind must be district, department or city")
    if conn.execute(select(schema.agency.c.id).where(schema.agency.c.code == code)).first():
        raise Conflict(f"agency {code!r} exists")
    agency_id = conn.execute(
        insert(schema.agency).values(code=code, name=name, kind=kind).returning(schema.agency.c.id)
    ).scalar_one()
    audit.record(conn, actor=actor, action="agency.create", target_type="agency", target_id=agency_id,
                 after={"code": code, "name": name, "kind": kind})
    return agency_id


def agency_id_by_code(conn: Connection, code: str) -> int:
    agency_id = conn.execute(select(schema.agency.c.id).where(schema.agency.c.code == code)).scalar()
    if agency_id is None:
        raise NotFound(f"no agency {code!r}")
    return agency_id


def list_agencies(conn: Connection) -> list[dict]:
    a = schema.agency
    return [dict(r) for r in conn.execute(select(a.c.id, a.c.code, a.c.name, a.c.kind).order_by(a.c.code)).mappings()]


def set_owner(conn: Connection, layer_name: str, agency_id: int | None, *, actor: str) -> None:
    info = get_layer(conn, layer_name)
    conn.execute(update(schema.layer).where(schema.layer.c.id == info.id).values(owner_agency_id=agency_id))
    audit.record(conn, actor=actor, action="layer.owner", target_type="layer", target_id=layer_name,
                 before={"owner_agency_id": info.owner_agency_id}, after={"owner_agency_id": agency_id})


def _check_may_share(info: LayerInfo, principal: Principal) -> None:
    if principal.is_admin:
        return
    if principal.role == "officer" and info.owner_agency_id is not None and principal.agency_id == info.owner_agency_id:
        return
    raise Forbidden("only the owner agency's officers or an admin may share this layer")


def _area_geometry(area_geojson: dict | None, srid: int):
    if area_geojson is None:
        return None
    try:
        geom = shape(area_geojson)
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        raise InvalidGeometry(f"the grant area is not a valid GeoJSON geometry: {exc}") from exc
    if isinstance(geom, Polygon):
        geom = MultiPolygon([geom])
    if not isinstance(geom, MultiPolygon) or geom.is_empty or not geom.is_valid:
        raise InvalidGeometry("the grant area must be a valid (Multi)Polygon")
    if srid != CITY_SRID:
        import numpy as np
        import shapely

        t = transformer(srid, CITY_SRID)
        geom = shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    return from_shape(geom, srid=CITY_SRID)


def grant(conn: Connection, layer_name: str, agency_id: int, permission: str, principal: Principal, *,
          area_geojson: dict | None = None, area_srid: int = 4326) -> dict:
    """Grant ``permission`` on a layer (or an area of it) to an agency; returns the grant."""
    if permission not in PERMISSIONS:
        raise InvalidInput("permission must be 'read' or 'edit'")
    info = get_layer(conn, layer_name, principal)
    _check_may_share(info, principal)
    if agency_id == info.owner_agency_id:
        raise InvalidInput("the owner agency already has full access")
    if conn.execute(select(schema.agency.c.id).where(schema.agency.c.id == agency_id)).first() is None:
        raise NotFound(f"no agency with id {agency_id}")
    g = schema.layer_grant
    active = conn.execute(
        select(g.c.id).where(g.c.layer_id == info.id, g.c.agency_id == agency_id, g.c.permission == permission,
                             g.c.revoked_at.is_(None))
    ).first()
    if active:
        raise Conflict(f"agency {agency_id} already has an active {permission} grant on {layer_name!r}")
    row = conn.execute(
        insert(g)
        .values(layer_id=info.id, agency_id=agency_id, permission=permission,
                area=_area_geometry(area_geojson, area_srid), granted_by=principal.username)
        .returning(g.c.id, g.c.granted_at)
    ).one()
    result = {"id": row.id, "layer": layer_name, "agency_id": agency_id, "permission": permission,
              "area": area_geojson is not None, "granted_at": row.granted_at.isoformat()}
    audit.record(conn, actor=principal.username, action="layer.grant", target_type="layer",
                 target_id=layer_name, after=result)
    return result


def revoke(conn: Connection, layer_name: str, grant_id: int, principal: Principal) -> None:
    info = get_layer(conn, layer_name, principal)
    _check_may_share(info, principal)
    g = schema.layer_grant
    done = conn.execute(
        update(g)
        .where(g.c.id == grant_id, g.c.layer_id == info.id, g.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(g.c.agency_id, g.c.permission)
    ).first()
    if done is None:
        raise NotFound(f"no active grant {grant_id} on {layer_name!r}")
    audit.record(conn, actor=principal.username, action="layer.revoke", target_type="layer", target_id=layer_name,
                 before={"grant_id": grant_id, "agency_id": done.agency_id, "permission": done.permission})


def list_grants(conn: Connection, layer_name: str, principal: Principal, *, include_revoked: bool = False) -> list:
    info = get_layer(conn, layer_name, principal)
    _check_may_share(info, principal)
    g, a = schema.layer_grant, schema.agency
    stmt = (
        select(g.c.id, g.c.agency_id, a.c.code.label("agency_code"), g.c.permission, g.c.area, g.c.granted_by,
               g.c.granted_at, g.c.revoked_at)
        .join(a, a.c.id == g.c.agency_id)
        .where(g.c.layer_id == info.id)
        .order_by(g.c.id)
    )
    if not include_revoked:
        stmt = stmt.where(g.c.revoked_at.is_(None))
    out = []
    for r in conn.execute(stmt).mappings():
        item = dict(r)
        item["area"] = to_shape(r["area"]).__geo_interface__ if r["area"] is not None else None
        for key in ("granted_at", "revoked_at"):
            item[key] = item[key].isoformat() if item[key] else None
        out.append(item)
    return out
