"""Licensing HTTP API: parcel register, rule tables, compliance checks, permit dossiers, public status.

Views parse the request into typed values, call one domain function of ``licensing`` and
serialize its result; errors are the project's (problem+json). Geometries are GeoJSON in the city
CRS (EPSG:9210) unless the body names another ``crs`` (e.g. EPSG:4326, lon/lat).
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, jsonify, request, send_file

from gisserver.api import services
from gisserver.crs import CITY_EPSG, CITY_SRID
from gisserver.errors import InvalidInput, InvalidParameter
from gisserver.openapi import declare, json_response, problem, query
from gisserver.params import parse_bbox, parse_bool, parse_choice, parse_datetime, parse_int
from gisserver.web_auth import principal, require_roles
from licensing import check, corridors, dossiers, register, report, rules
from licensing.dossiers import Actor
from licensing.errors import PreconditionRequired
from licensing.geometry import POLYGONAL, parse_geojson, srid_of

bp = Blueprint("licensing", __name__)
TAGS = {"register": ["Licensing: parcel register"], "rules": ["Licensing: rule tables"],
        "checks": ["Licensing: compliance checks"], "dossiers": ["Licensing: permit dossiers"]}

_GEOJSON = {"type": "object", "description": "GeoJSON geometry in crs (default EPSG:9210)"}
CHECK_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["parcel_id", "footprint", "floors", "height"],
    "properties": {
        "parcel_id": {"type": "integer", "description": "current parcel version"},
        "footprint": _GEOJSON, "crs": {"type": "string", "example": "EPSG:4326"},
        "floors": {"type": "integer", "minimum": 1}, "height": {"type": "number", "description": "metres"},
        "floor_elevation": {"type": "number", "description": "ground floor, metres above Hòn Dấu"},
        "use": {"type": "string", "enum": ["civil", "industrial"]}, "existing_urban": {"type": "boolean"},
        "subdivision_lots": {"type": "array", "items": _GEOJSON},
    }}}}}
IF_MATCH = {"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"},
            "description": "the dossier's ETag"}

STAFF = ("officer", "planner", "admin")
EDITORS = ("officer", "admin")
ANY_USER = ("public", "officer", "planner", "admin")


# --- parsing helpers -----------------------------------------------------------------------------

def _body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object (Content-Type: application/json)")
    return body


def _srid(body: dict) -> int:
    return srid_of(body.get("crs"))


def _date(name: str, value) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidParameter(name, f"{value!r} is not an ISO date (YYYY-MM-DD)") from None


def _int_field(body: dict, key: str, *, required: bool = True) -> int | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{key} must be an integer")
    return value


def _actor() -> Actor:
    p = principal()
    return Actor(p.username, p.role, p.user_id)


def _feature(parcel: dict) -> dict:
    props = register.parcel_dict(parcel)
    geometry = props.pop("geometry")
    return {"type": "Feature", "id": parcel["id"], "geometry": geometry, "properties": props}


def _collection(parcels: list[dict]) -> dict:
    return {"type": "FeatureCollection", "crs_epsg": CITY_EPSG, "features": [_feature(p) for p in parcels],
            "numberReturned": len(parcels)}


# --- parcel register -----------------------------------------------------------------------------

@bp.get("/api/register/parcels")
@require_roles(*STAFF)
def list_parcels():
    """Parcels of the register as of a date (ward, bbox in EPSG:9210, or ward+sheet+no); staff only."""
    at = parse_datetime("at", request.args.get("at"))
    bbox = parse_bbox("bbox", request.args.get("bbox"), srid=CITY_SRID)
    limit = parse_int("limit", request.args.get("limit"), default=100, minimum=1, maximum=10000)
    ward = request.args.get("ward") or None
    with services().engine.connect() as conn:
        if request.args.get("sheet") or request.args.get("no"):
            if not ward:
                raise InvalidParameter("ward", "is required with sheet and no")
            sheet = parse_int("sheet", request.args.get("sheet"), minimum=1)
            number = parse_int("no", request.args.get("no"), minimum=1)
            parcels = [register.find_parcel(conn, ward, sheet, number, at=at)]
        else:
            box = (bbox.minx, bbox.miny, bbox.maxx, bbox.maxy) if bbox else None
            parcels = register.parcels_as_of(conn, at, ward_code=ward, bbox=box, limit=limit)
    return jsonify(_collection(parcels))


@bp.get("/api/register/parcels/<int:parcel_id>")
@require_roles(*STAFF)
def get_parcel(parcel_id: int):
    """One parcel version with its rights, restrictions and responsibilities."""
    with services().engine.connect() as conn:
        feature = _feature(register.get_parcel(conn, parcel_id))
        feature["properties"]["rrr"] = register.list_rrr(conn, parcel_id, include_ended=True)
    return jsonify(feature)


@bp.get("/api/register/parcels/<int:parcel_id>/versions")
@require_roles(*STAFF)
def parcel_versions(parcel_id: int):
    """Every version of the parcel's number (history, never deleted)."""
    with services().engine.connect() as conn:
        p = register.get_parcel(conn, parcel_id)
        versions = register.parcel_versions(conn, p["ward_code"], p["sheet_no"], p["parcel_no"])
    return jsonify(_collection(versions))


@bp.get("/api/register/parcels/<int:parcel_id>/lineage")
@require_roles(*STAFF)
def parcel_lineage(parcel_id: int):
    """Ancestors or descendants of a parcel version (split, merge, adjust, attribute changes)."""
    direction = parse_choice("direction", request.args.get("direction"), ("ancestors", "descendants"),
                             default="ancestors")
    with services().engine.connect() as conn:
        return jsonify(register.lineage(conn, parcel_id, direction=direction))


@bp.get("/api/register/parcels/<int:parcel_id>/history")
@require_roles(*STAFF)
def parcel_history(parcel_id: int):
    """Audit log entries of a parcel, over every version of its number."""
    with services().engine.connect() as conn:
        return jsonify(register.parcel_history(conn, parcel_id))


@bp.post("/api/register/parcels")
@require_roles(*EDITORS)
def create_parcel():
    """Register a new parcel (validated: valid polygon, no overlap with current neighbours)."""
    body = _body()
    geom = parse_geojson(body.get("geometry"), srid=_srid(body), expect=POLYGONAL)
    fields = {k: body.get(k) for k in ("land_use", "legal_area", "address", "owner_name", "attributes")}
    with services().engine.begin() as conn:
        result = register.create_parcel(
            conn, principal().username, ward_code=body.get("ward_code"), sheet_no=body.get("sheet_no"),
            parcel_no=body.get("parcel_no"), geom=geom, source=body.get("source"), note=body.get("note") or "",
            **fields,
        )
    return jsonify(result), 201


@bp.post("/api/register/parcels/<int:parcel_id>/split")
@require_roles(*EDITORS)
def split_parcel(parcel_id: int):
    """Split a parcel along a line into new parcels (lineage kept; 422 with the faulty geometry)."""
    body = _body()
    line = parse_geojson(body.get("line"), srid=_srid(body), expect=("LineString", "MultiLineString"), what="line")
    numbers = body.get("numbers")
    if numbers is not None and (not isinstance(numbers, list) or not all(isinstance(n, int) for n in numbers)):
        raise InvalidInput("numbers must be a list of integers")
    with services().engine.begin() as conn:
        result = register.split_parcel(conn, principal().username, parcel_id, line, numbers=numbers,
                                       source=body.get("source"), note=body.get("note") or "")
    return jsonify(result), 201


@bp.post("/api/register/merge")
@require_roles(*EDITORS)
def merge_parcels():
    """Merge adjacent parcels of one ward and sheet into one."""
    body = _body()
    ids = body.get("parcel_ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InvalidInput("parcel_ids must be a list of parcel version ids")
    with services().engine.begin() as conn:
        result = register.merge_parcels(conn, principal().username, ids,
                                        parcel_no=_int_field(body, "parcel_no", required=False),
                                        land_use=body.get("land_use"), source=body.get("source"),
                                        note=body.get("note") or "")
    return jsonify(result), 201


@bp.post("/api/register/parcels/<int:parcel_id>/adjust")
@require_roles(*EDITORS)
def adjust_boundary(parcel_id: int):
    """Move the boundary between two neighbouring parcels (areas conserved)."""
    body = _body()
    geom = parse_geojson(body.get("geometry"), srid=_srid(body), expect=POLYGONAL)
    with services().engine.begin() as conn:
        result = register.adjust_boundary(conn, principal().username, parcel_id, _int_field(body, "neighbour_id"),
                                          geom, source=body.get("source"), note=body.get("note") or "")
    return jsonify(result), 201


@bp.post("/api/register/parcels/<int:parcel_id>/attributes")
@require_roles(*EDITORS)
def change_attributes(parcel_id: int):
    """New version of a parcel with changed attributes."""
    body = _body()
    with services().engine.begin() as conn:
        result = register.change_attributes(conn, principal().username, parcel_id, body.get("changes"),
                                            source=body.get("source"), note=body.get("note") or "")
    return jsonify(result), 201


@bp.post("/api/register/parcels/<int:parcel_id>/rrr")
@require_roles(*EDITORS)
def add_rrr(parcel_id: int):
    """Attach a right, restriction or responsibility to the current version of a parcel."""
    body = _body()
    share = body.get("share")
    if share is not None and (isinstance(share, bool) or not isinstance(share, int | float)):
        raise InvalidInput("share must be a number")
    with services().engine.begin() as conn:
        rrr_id = register.add_rrr(conn, principal().username, parcel_id, kind=body.get("kind"), type=body.get("type"),
                                  party_id=_int_field(body, "party_id", required=False), share=share,
                                  description=body.get("description") or "", source=body.get("source"))
    return jsonify(id=rrr_id), 201


@bp.post("/api/register/parties")
@require_roles(*EDITORS)
def create_party():
    """Create a party (person, organization, state) of the register."""
    body = _body()
    with services().engine.begin() as conn:
        party_id = register.create_party(conn, principal().username, name=body.get("name"),
                                         kind=body.get("kind") or "person", id_number=body.get("id_number"),
                                         address=body.get("address"))
    return jsonify(id=party_id), 201


# --- rule tables and corridors ------------------------------------------------------------------

@bp.get("/api/rules")
def list_rules():
    """Rule tables in force on a date (default today), with legal basis and verify flags."""
    on = _date("on", request.args.get("on"))
    with services().engine.connect() as conn:
        return jsonify([r.as_dict() for r in rules.list_rule_tables(conn, on)])


@bp.get("/api/rules/<rule_id>")
def rule_versions(rule_id: str):
    """Every version of one rule table."""
    with services().engine.connect() as conn:
        return jsonify([r.as_dict() for r in rules.rule_versions(conn, rule_id)])


@declare("Publish a new version of a rule table", tags=TAGS["rules"],
         request_body={"required": True, "content": {"application/json": {"schema": {
             "type": "object", "required": ["data", "effective_from"],
             "properties": {"data": {"type": "object"}, "effective_from": {"type": "string", "format": "date"},
                            "legal_basis": {"type": "string"}, "verify": {"type": "boolean"},
                            "title": {"type": "string"}, "note": {"type": "string"}}}}}},
         responses={"201": json_response("The new version")})
@bp.post("/api/rules/<rule_id>")
@require_roles("admin")
def publish_rule(rule_id: str):
    """Publish a new version of a rule table (admin; audited; closes the version in force)."""
    body = _body()
    effective_from = _date("effective_from", body.get("effective_from"))
    if effective_from is None:
        raise InvalidParameter("effective_from", "is required")
    verify = body.get("verify")
    if verify is not None and not isinstance(verify, bool):
        raise InvalidInput("verify must be true or false")
    with services().engine.begin() as conn:
        new = rules.publish_rule_version(conn, principal().username, rule_id, data=body.get("data"),
                                         effective_from=effective_from, legal_basis=body.get("legal_basis"),
                                         verify=verify, title=body.get("title"), note=body.get("note") or "")
    return jsonify(new.as_dict()), 201


@bp.post("/api/corridors/generate")
@require_roles("admin")
def generate_corridors():
    """Regenerate protection corridors from power lines, water bodies and roads (admin)."""
    body = request.get_json(silent=True)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object, e.g. {\"kinds\": [\"power_line\"]}")
    kinds = body.get("kinds", list(corridors.KINDS))
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise InvalidInput("kinds must be a list of corridor kinds")
    with services().engine.begin() as conn:
        return jsonify(corridors.generate_corridors(conn, principal().username, kinds=tuple(kinds)))


# --- compliance check ------------------------------------------------------------------------------

@declare("Compliance check of a proposed building on a parcel", tags=TAGS["checks"],
         description="Every rule with pass/fail/not_evaluated, measured value, limit, legal basis and the "
                     "geometry at fault; as JSON, a printable HTML page with a map extract, or PDF.",
         parameters=[query("format", {"type": "string", "enum": ["json", "html", "pdf"], "default": "json"}),
                     query("on", {"type": "string", "format": "date"}, "rules in force on this date"),
                     query("history", {"type": "boolean", "default": False},
                           "add the parcel's versions and ancestry to the report")],
         request_body=CHECK_BODY,
         responses={"200": {"description": "The report", "content": {
             "application/json": {"schema": {"type": "object"}}, "text/html": {"schema": {"type": "string"}},
             "application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
             "404": problem("No such parcel version"), "409": problem("The parcel version is not current")})
@bp.post("/api/checks")
@require_roles(*ANY_USER)
def run_check():
    """Compliance check of a proposed building on a parcel: JSON, printable HTML or PDF report."""
    fmt = parse_choice("format", request.args.get("format"), ("json", "html", "pdf"), default="json")
    on = _date("on", request.args.get("on"))
    with_history = parse_bool("history", request.args.get("history"), default=False)
    parcel_id, proposal = check.proposal_from_json(_body())
    settings = services().settings
    with services().engine.connect() as conn:
        result = check.check_building(conn, parcel_id, proposal, on=on, raster_root=settings.raster_dir,
                                      with_history=with_history)
    if fmt == "html":
        return Response(report.render_html(result), mimetype="text/html")
    if fmt == "pdf":
        resp = Response(report.render_pdf(result), mimetype="application/pdf")
        resp.headers["Content-Disposition"] = f'inline; filename="check-parcel-{parcel_id}.pdf"'
        return resp
    return jsonify(result)


# --- dossiers ----------------------------------------------------------------------------------------

def _with_etag(payload: dict, status: int = 200):
    resp = jsonify(payload)
    resp.status_code = status
    resp.headers["ETag"] = payload["etag"]
    return resp


def _if_match(*, required: bool) -> int | None:
    header = request.headers.get("If-Match")
    if not header:
        if required:
            raise PreconditionRequired("send the dossier's ETag in If-Match to edit it")
        return None
    tag = header.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    if not tag.isdigit():
        raise InvalidParameter("If-Match", "must be the ETag returned for the dossier, e.g. \"3\"")
    return int(tag)


@bp.post("/api/dossiers")
@require_roles(*ANY_USER)
def create_dossier():
    """File a new permit dossier (draft); returns its ETag."""
    body = _body()
    fields = {k: body[k] for k in dossiers.EDITABLE if k in body}
    with services().engine.begin() as conn:
        created = dossiers.create_dossier(conn, _actor(), kind=body.get("kind"), **fields)
    return _with_etag(created, 201)


@bp.get("/api/dossiers")
@require_roles(*ANY_USER)
def list_dossiers():
    """Dossiers (applicants see their own)."""
    state = request.args.get("state") or None
    limit = parse_int("limit", request.args.get("limit"), default=100, minimum=1, maximum=1000)
    with services().engine.connect() as conn:
        return jsonify(dossiers.list_dossiers(conn, _actor(), state=state, limit=limit))


@bp.get("/api/dossiers/overdue")
@require_roles(*STAFF)
def overdue_dossiers():
    """Dossiers past their statutory due date (working days), most overdue first; staff only."""
    today = _date("today", request.args.get("today"))
    with services().engine.connect() as conn:
        return jsonify(dossiers.overdue_report(conn, today=today))


@bp.get("/api/dossiers/<int:dossier_id>")
@require_roles(*ANY_USER)
def get_dossier(dossier_id: int):
    """A dossier with timeline, attachments and the transitions allowed to the caller; ETag header."""
    with services().engine.connect() as conn:
        return _with_etag(dossiers.get_dossier(conn, dossier_id, _actor()))


@declare("Edit a dossier (optimistic locking)", tags=TAGS["dossiers"], parameters=[IF_MATCH],
         request_body={"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
         responses={"200": json_response("The dossier; ETag header"), "412": problem("Stale If-Match"),
                    "428": problem("If-Match missing")})
@bp.patch("/api/dossiers/<int:dossier_id>")
@require_roles(*ANY_USER)
def update_dossier(dossier_id: int):
    """Edit a dossier; needs If-Match with its ETag (428 without, 412 when stale)."""
    version = _if_match(required=True)
    body = _body()
    with services().engine.begin() as conn:
        return _with_etag(dossiers.update_dossier(conn, _actor(), dossier_id, version, body))


@bp.post("/api/dossiers/<int:dossier_id>/transitions")
@require_roles(*ANY_USER)
def transition_dossier(dossier_id: int):
    """Move a dossier to another state if the caller's role may (table in licensing.workflow)."""
    version = _if_match(required=False)
    body = _body()
    to_state = body.get("to")
    if not isinstance(to_state, str):
        raise InvalidInput("to (the new state) is required")
    with services().engine.begin() as conn:
        moved = dossiers.transition(conn, _actor(), dossier_id, to_state, note=body.get("note") or "",
                                    expected_version=version)
    return _with_etag(moved)


@bp.post("/api/dossiers/<int:dossier_id>/check")
@require_roles(*STAFF)
def check_dossier(dossier_id: int):
    """Run the compliance check on the dossier's parcel and keep the report with the dossier (staff)."""
    on = _date("on", request.args.get("on"))
    proposal = check.building_from_json(_body())
    with services().engine.begin() as conn:
        return jsonify(dossiers.check_dossier(conn, _actor(), dossier_id, proposal, on=on,
                                              raster_root=services().settings.raster_dir))


@bp.get("/api/dossiers/<int:dossier_id>/history")
@require_roles(*ANY_USER)
def dossier_history(dossier_id: int):
    """Audit log entries of a dossier."""
    with services().engine.connect() as conn:
        return jsonify(dossiers.dossier_history(conn, dossier_id, _actor()))


@bp.post("/api/dossiers/<int:dossier_id>/attachments")
@require_roles(*ANY_USER)
def add_attachment(dossier_id: int):
    """Attach a file (multipart field 'file'; PDF/JPEG/PNG/TIFF, size limit; sha256 recorded)."""
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput("send the file as multipart/form-data field 'file'")
    mime = (upload.mimetype or "").lower()
    with services().engine.begin() as conn:
        rec = dossiers.add_attachment(conn, _actor(), dossier_id, filename=upload.filename or "", mime_type=mime,
                                      stream=upload.stream, storage_root=services().settings.upload_dir)
    return jsonify(rec), 201


@bp.get("/api/dossiers/<int:dossier_id>/attachments/<int:attachment_id>")
@require_roles(*ANY_USER)
def get_attachment(dossier_id: int, attachment_id: int):
    """Download an attachment."""
    with services().engine.connect() as conn:
        path, mime, name = dossiers.attachment_file(conn, dossier_id, attachment_id, _actor(),
                                                    services().settings.upload_dir)
    return send_file(path, mimetype=mime, download_name=name, as_attachment=True)


@declare("Public status of a dossier by its code", tags=TAGS["dossiers"],
         description="State, dates and the timeline of states; no personal data.",
         responses={"200": json_response("Status"), "404": problem("Unknown code")})
@bp.get("/public/dossiers/<code>")
def public_dossier(code: str):
    """Public status of a dossier by its code: state, dates and timeline, no personal data."""
    with services().engine.connect() as conn:
        return jsonify(dossiers.public_status(conn, code))
