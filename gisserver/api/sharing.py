"""Agencies and layer grants (sharing between the city's districts and departments)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from gisserver.api import services
from gisserver.errors import InvalidInput
from gisserver.params import parse_bool, parse_crs, parse_int
from gisserver.web_auth import principal, require_roles
from layers import sharing

bp = Blueprint("sharing", __name__, url_prefix="/api")


@bp.get("/agencies")
@require_roles("officer", "planner", "admin")
def agencies():
    with services().engine.connect() as conn:
        return jsonify(agencies=sharing.list_agencies(conn))


@bp.get("/layers/<name>/grants")
@require_roles("officer", "admin")
def list_grants(name):
    include_revoked = parse_bool("include_revoked", request.args.get("include_revoked"), default=False)
    with services().engine.connect() as conn:
        return jsonify(grants=sharing.list_grants(conn, name, principal(), include_revoked=include_revoked))


@bp.post("/layers/<name>/grants")
@require_roles("officer", "admin")
def create_grant(name):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object: {agency_id, permission, area?, area_crs?}")
    agency_id = parse_int("agency_id", str(body.get("agency_id", "")), minimum=1)
    permission = body.get("permission", "read")
    area = body.get("area")
    if area is not None and not isinstance(area, dict):
        raise InvalidInput("area must be a GeoJSON geometry object")
    area_srid = parse_crs("area_crs", body.get("area_crs"), default=4326)
    with services().engine.begin() as conn:
        result = sharing.grant(conn, name, agency_id, permission, principal(), area_geojson=area, area_srid=area_srid)
    _access_changed()
    return jsonify(result), 201


@bp.delete("/layers/<name>/grants/<int:grant_id>")
@require_roles("officer", "admin")
def revoke_grant(name, grant_id):
    with services().engine.begin() as conn:
        sharing.revoke(conn, name, grant_id, principal())
    _access_changed()
    return "", 204


def _access_changed() -> None:
    """Map services keep a copy of the catalogue per worker (tiles.snapshot): drop this worker's copy
    now; the other workers see the change within their copy's lifetime (1 s)."""
    from gisserver.api.maps import catalogue_snapshot

    catalogue_snapshot().invalidate()
