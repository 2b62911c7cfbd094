"""Land-records HTTP API: house numbering, land allocation and lease, land-use right certificates.

Views parse the request into typed values, call one domain function of ``licensing`` and
serialize its result; errors are the project's (problem+json: 400 bad input, 401/403 roles,
404 unknown ids, 409 conflicts, 422 rule violations). Writes need an officer or an admin and are
audited by the domain functions; reads need a staff role (certificates name people). Geometries are
GeoJSON in the city CRS (EPSG:9210) unless the body names another ``crs``.
"""

from __future__ import annotations

import json
from datetime import date

from flask import Blueprint, Response, jsonify, request
from shapely.geometry import Point

from gisserver import audit
from gisserver.api import services
from gisserver.crs import CITY_EPSG, CITY_SRID, resolve_srid
from gisserver.errors import InvalidInput, InvalidParameter, NotFound, UnknownCRS
from gisserver.params import parse_bool, parse_choice, parse_float, parse_int
from gisserver.web_auth import principal, require_roles
from licensing import allocation, certificates, house_numbers, register
from licensing.allocation import is_id, parse_date
from licensing.dossiers import Actor
from licensing.geometry import POLYGONAL, parse_geojson

bp = Blueprint("records", __name__, url_prefix="/api/records")

#: ids beyond BIGINT are unknown ids (404), never a database overflow
ID = "int(max=9223372036854775807)"
STAFF = ("officer", "planner", "admin")
EDITORS = ("officer", "admin")
LINEAR = ("LineString", "MultiLineString")


# --- parsing helpers -------------------------------------------------------------------------------

def _body(*allowed: str) -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object (Content-Type: application/json)")
    unknown = set(body) - set(allowed)
    if allowed and unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}; allowed: {', '.join(allowed)}")
    return body


def _srid(body: dict) -> int:
    try:
        return resolve_srid(body.get("crs"), default=CITY_SRID)
    except UnknownCRS as exc:
        raise InvalidParameter("crs", exc.message) from None


def _geometry(body: dict, key: str, expect: tuple[str, ...], *, required: bool = True):
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"{key} (GeoJSON {' or '.join(expect)}) is required")
        return None
    return parse_geojson(value, srid=_srid(body), expect=expect, what=key)


def _int(body: dict, key: str, *, required: bool = False) -> int | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"{key} is required")
        return None
    if not is_id(value):
        raise InvalidInput(f"{key} must be a positive integer id")
    return value


def _text(body: dict, key: str, *, required: bool = False, default: str | None = None) -> str | None:
    value = body.get(key, default)
    if value is None:
        if required:
            raise InvalidInput(f"{key} is required")
        return None
    if not isinstance(value, str) or len(value) > 2000:
        raise InvalidInput(f"{key} must be text")
    return value


def _number(body: dict, key: str, default: float) -> float:
    value = body.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidInput(f"{key} must be a number")
    return float(value)


def _who() -> str:
    return principal().username


def _actor() -> Actor:
    p = principal()
    return Actor(p.username, p.role, p.user_id)


def _date_arg(name: str):
    value = request.args.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(name, f"{value!r} is not an ISO date (YYYY-MM-DD)") from None


# --- house numbering -------------------------------------------------------------------------------

@bp.post("/streets")
@require_roles(*EDITORS)
def create_street():
    """Create a street from a centreline digitised from its start point."""
    body = _body("name", "geometry", "crs", "ward_code", "odd_side", "metres_per_number")
    geom = _geometry(body, "geometry", LINEAR)
    with services().engine.begin() as conn:
        street = house_numbers.create_street(
            conn, _who(), name=_text(body, "name", required=True), geom=geom, ward_code=_text(body, "ward_code"),
            odd_side=_text(body, "odd_side", default="left"),
            metres_per_number=_number(body, "metres_per_number", house_numbers.DEFAULT_METRES_PER_NUMBER))
    return jsonify(street), 201


@bp.post("/streets/from-road")
@require_roles(*EDITORS)
def street_from_road():
    """Create a street from a road centreline, oriented from the end nearest 'start'."""
    body = _body("road_id", "start", "crs", "name", "odd_side", "metres_per_number")
    start = _geometry(body, "start", ("Point",), required=False)
    with services().engine.begin() as conn:
        street = house_numbers.street_from_road(
            conn, _who(), _int(body, "road_id", required=True), start=start, name=_text(body, "name"),
            odd_side=_text(body, "odd_side", default="left"),
            metres_per_number=_number(body, "metres_per_number", house_numbers.DEFAULT_METRES_PER_NUMBER))
    return jsonify(street), 201


@bp.post(f"/streets/<{ID}:street_id>/alleys")
@require_roles(*EDITORS)
def create_alley(street_id):
    """Create an alley (hẻm) off a street; its houses are numbered '<n>/<m>'."""
    body = _body("geometry", "crs", "off_label", "name")
    geom = _geometry(body, "geometry", LINEAR)
    with services().engine.begin() as conn:
        alley = house_numbers.create_alley(conn, _who(), street_id, geom, off_label=_text(body, "off_label"),
                                           name=_text(body, "name"))
    return jsonify(alley), 201


@bp.get(f"/streets/<{ID}:street_id>")
@require_roles(*STAFF)
def get_street(street_id):
    """A street with its centreline."""
    with services().engine.connect() as conn:
        return jsonify(house_numbers.get_street(conn, street_id))


@bp.get(f"/streets/<{ID}:street_id>/numbers")
@require_roles(*STAFF)
def list_numbers(street_id):
    """The house numbers of a street (active, or all with include_retired)."""
    include_retired = parse_bool("include_retired", request.args.get("include_retired"), default=False)
    fmt = parse_choice("f", request.args.get("f"), ("json", "geojson"), default="json")
    with services().engine.connect() as conn:
        numbers = house_numbers.list_numbers(conn, street_id, include_retired=include_retired)
    if fmt == "json":
        return jsonify(numbers=numbers)
    # access points as a FeatureCollection in the city CRS, for a map layer of addresses
    features = [{"type": "Feature", "id": n["id"], "geometry": n["access_point"],
                 "properties": {k: v for k, v in n.items() if k != "access_point"}} for n in numbers]
    return Response(json.dumps({"type": "FeatureCollection", "crs_epsg": CITY_EPSG, "features": features},
                               ensure_ascii=False), mimetype="application/geo+json")


@bp.post(f"/streets/<{ID}:street_id>/numbering")
@require_roles(*EDITORS)
def number_street(street_id):
    """Number the street's unnumbered buildings; existing numbers never change."""
    body = _body("max_distance", "building_ids", "dossier_id")
    ids = body.get("building_ids")
    with services().engine.begin() as conn:
        result = house_numbers.number_street(
            conn, _who(), street_id, max_distance=_number(body, "max_distance", house_numbers.DEFAULT_MAX_DISTANCE),
            building_ids=ids, dossier_id=_int(body, "dossier_id"))
    return jsonify(result)


@bp.post(f"/streets/<{ID}:street_id>/numbers")
@require_roles(*EDITORS)
def assign_number(street_id):
    """Number one building (or a given access point) on a street."""
    body = _body("building_id", "access_point", "crs", "dossier_id")
    point = _geometry(body, "access_point", ("Point",), required=False)
    with services().engine.begin() as conn:
        number = house_numbers.assign_number(conn, _who(), street_id, building_id=_int(body, "building_id"),
                                             point=point, dossier_id=_int(body, "dossier_id"))
    return jsonify(number), 201


@bp.get(f"/house-numbers/<{ID}:number_id>")
@require_roles(*STAFF)
def get_number(number_id):
    """A house number with its number certificates."""
    with services().engine.connect() as conn:
        return jsonify(house_numbers.get_number(conn, number_id))


@bp.get(f"/house-numbers/<{ID}:number_id>/history")
@require_roles(*STAFF)
def number_history(number_id):
    """Audit history of a house number."""
    with services().engine.connect() as conn:
        house_numbers.get_number(conn, number_id)
        return jsonify(history=audit.history(conn, "house_number", number_id))


@bp.post(f"/house-numbers/<{ID}:number_id>/renumber")
@require_roles(*EDITORS)
def renumber(number_id):
    """Explicit, audited renumbering: the old number is retired and replaced."""
    body = _body("label", "reason", "dossier_id")
    with services().engine.begin() as conn:
        new = house_numbers.renumber(conn, _who(), number_id, _text(body, "label", required=True),
                                     reason=_text(body, "reason", required=True), dossier_id=_int(body, "dossier_id"))
    return jsonify(new), 201


@bp.post(f"/house-numbers/<{ID}:number_id>/retire")
@require_roles(*EDITORS)
def retire_number(number_id):
    """Retire a house number (never reused)."""
    body = _body("reason")
    with services().engine.begin() as conn:
        return jsonify(house_numbers.retire_number(conn, _who(), number_id, reason=_text(body, "reason",
                                                                                           required=True)))


@bp.post(f"/house-numbers/<{ID}:number_id>/certificates")
@require_roles(*EDITORS)
def number_certificate(number_id):
    """Record a house-number certificate issued on a dossier."""
    body = _body("dossier_id", "issued_on")
    with services().engine.begin() as conn:
        cert = house_numbers.issue_number_certificate(conn, _who(), number_id,
                                                      dossier_id=_int(body, "dossier_id", required=True),
                                                      issued_on=parse_date("issued_on", body.get("issued_on"),
                                                                      required=False))
    return jsonify(cert), 201


@bp.get(f"/number-certificates/<{ID}:certificate_id>")
@require_roles(*STAFF)
def number_certificate_page(certificate_id):
    """Printable house-number certificate (HTML; f=json for the data)."""
    fmt = parse_choice("f", request.args.get("f"), ("html", "json"), default="html")
    with services().engine.connect() as conn:
        cert = house_numbers.number_certificate(conn, certificate_id)
    if fmt == "json":
        return jsonify(cert)
    return Response(house_numbers.render_number_certificate_html(cert), mimetype="text/html")


# --- land allocation and lease ----------------------------------------------------------------------

ALLOCATION_FIELDS = ("decision_no", "decision_date", "kind", "payment", "party_id", "land_use", "purpose",
                     "term_start", "term_end", "parcel_ids", "geometry", "crs", "issuer")


@bp.post("/allocations")
@require_roles(*EDITORS)
def create_allocation():
    """Record a land allocation or lease decision and create its rights."""
    body = _body(*ALLOCATION_FIELDS)
    geom = _geometry(body, "geometry", POLYGONAL, required=False)
    with services().engine.begin() as conn:
        result = allocation.allocate(
            conn, _who(), decision_no=body.get("decision_no"), decision_date=body.get("decision_date"),
            kind=body.get("kind"), payment=body.get("payment"), party_id=body.get("party_id"),
            land_use=body.get("land_use"), purpose=_text(body, "purpose", default=""),
            term_start=body.get("term_start"), term_end=body.get("term_end"), parcel_ids=body.get("parcel_ids"),
            geom=geom, issuer=_text(body, "issuer"))
    return jsonify(result), 201


@bp.get("/allocations")
@require_roles(*STAFF)
def list_allocations():
    """Allocation and lease decisions."""
    kind = request.args.get("kind") or None
    status = request.args.get("status") or None
    party = request.args.get("party_id")
    party_id = parse_int("party_id", party, minimum=1, maximum=2**63 - 1) if party else None
    limit = parse_int("limit", request.args.get("limit"), default=500, minimum=1, maximum=5000)
    with services().engine.connect() as conn:
        return jsonify(allocations=allocation.list_allocations(conn, kind=kind, status=status, party_id=party_id,
                                                               limit=limit))


@bp.get("/allocations/expiring")
@require_roles(*STAFF)
def expiring():
    """Active leases and allocations whose term ends within 'within_days'."""
    within = parse_int("within_days", request.args.get("within_days"), default=90, minimum=0, maximum=36500)
    kind = parse_choice("kind", request.args.get("kind"), ("allocation", "lease", "any"), default="any")
    with services().engine.connect() as conn:
        rows = allocation.expiring(conn, within, today=_date_arg("today"), kind=None if kind == "any" else kind)
    return jsonify(within_days=within, allocations=rows)


@bp.get("/allocations/expired")
@require_roles(*STAFF)
def expired():
    """Active leases and allocations whose term has ended."""
    kind = parse_choice("kind", request.args.get("kind"), ("allocation", "lease", "any"), default="any")
    with services().engine.connect() as conn:
        rows = allocation.expired(conn, today=_date_arg("today"), kind=None if kind == "any" else kind)
    return jsonify(allocations=rows)


@bp.get(f"/allocations/<{ID}:allocation_id>")
@require_roles(*STAFF)
def get_allocation(allocation_id):
    """An allocation or lease decision with its parcels and rights."""
    with services().engine.connect() as conn:
        return jsonify(allocation.get_allocation(conn, allocation_id))


@bp.post(f"/allocations/<{ID}:allocation_id>/revoke")
@require_roles(*EDITORS)
def revoke_allocation(allocation_id):
    """Revoke an allocation or lease; its rights end now."""
    body = _body("reason")
    with services().engine.begin() as conn:
        return jsonify(allocation.revoke(conn, _who(), allocation_id, reason=_text(body, "reason", required=True)))


# --- land-use right certificates -----------------------------------------------------------------------

CERTIFICATE_FIELDS = ("dossier_id", "parcels", "holders", "supersedes_id", "serial", "barcode", "register_entry_no",
                      "issue_date", "issuing_authority", "assets", "notes", "transfer")


@bp.post("/certificate-dossier-kinds")
@require_roles("admin")
def enable_certificate_dossiers():
    """Add the certificate dossier kinds to the dossier deadlines rule table."""
    with services().engine.begin() as conn:
        published = certificates.enable_certificate_dossiers(conn, _who())
    return jsonify(published=published, kinds=sorted(certificates.CERTIFICATE_DOSSIER_KINDS))


@bp.post("/certificates")
@require_roles(*EDITORS)
def issue_certificate():
    """Issue a land-use right certificate on an approved certificate dossier."""
    body = _body(*CERTIFICATE_FIELDS)
    with services().engine.begin() as conn:
        cert = certificates.issue_certificate(
            conn, _actor(), dossier_id=_int(body, "dossier_id", required=True), parcels=body.get("parcels"),
            serial=body.get("serial"), issuing_authority=body.get("issuing_authority"), holders=body.get("holders"),
            supersedes_id=_int(body, "supersedes_id"),
            issue_date=parse_date("issue_date", body.get("issue_date"), required=False), barcode=_text(body, "barcode"),
            register_entry_no=_text(body, "register_entry_no"), assets=body.get("assets"),
            notes=_text(body, "notes", default=""), transfer=body.get("transfer"))
    return jsonify(cert), 201


@bp.get(f"/certificates/<{ID}:certificate_id>")
@require_roles(*STAFF)
def get_certificate(certificate_id):
    """A land-use right certificate: holders, parcels, rights, supersession."""
    with services().engine.connect() as conn:
        return jsonify(certificates.get_certificate(conn, certificate_id))


@bp.get(f"/certificates/<{ID}:certificate_id>/history")
@require_roles(*STAFF)
def certificate_history(certificate_id):
    """The supersession chain and audit history of a certificate."""
    with services().engine.connect() as conn:
        chain = certificates.certificate_history(conn, certificate_id)
        return jsonify(chain=chain, audit=audit.history(conn, "land_certificate", certificate_id))


@bp.post(f"/certificates/<{ID}:certificate_id>/cancel")
@require_roles(*EDITORS)
def cancel_certificate(certificate_id):
    """Cancel a valid certificate without a successor."""
    body = _body("reason")
    with services().engine.begin() as conn:
        return jsonify(certificates.cancel_certificate(conn, _who(), certificate_id,
                                                       reason=_text(body, "reason", required=True)))


@bp.get(f"/certificates/<{ID}:certificate_id>/extract")
@bp.get(f"/certificates/<{ID}:certificate_id>/extract.<fmt>")
@require_roles(*STAFF)
def certificate_extract(certificate_id, fmt=None):
    """Printable certificate extract: HTML page, PDF or JSON (f=html|pdf|json)."""
    fmt = parse_choice("f", fmt or request.args.get("f"), ("html", "pdf", "json"), default="html")
    with services().engine.connect() as conn:
        extract = certificates.certificate_extract(conn, certificate_id)
    if fmt == "json":
        return jsonify(certificates.extract_json(extract))
    if fmt == "pdf":
        name = f"trich-luc-{extract['certificate']['certificate_no']}.pdf"
        return Response(certificates.render_extract_pdf(extract), mimetype="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{name}"'})
    return Response(certificates.render_extract_html(extract), mimetype="text/html")


@bp.get(f"/parcels/<{ID}:parcel_id>/certificates")
@require_roles(*STAFF)
def parcel_certificates(parcel_id):
    """Certificates of a parcel version."""
    include = parse_bool("include_superseded", request.args.get("include_superseded"), default=False)
    with services().engine.connect() as conn:
        register.get_parcel(conn, parcel_id)
        return jsonify(certificates=certificates.certificates_of_parcel(conn, parcel_id, include_superseded=include))


@bp.get("/addresses")
@require_roles(*STAFF)
def address_at():
    """The house number nearest to a point (x, y in the city CRS), within ``within`` metres."""
    x = parse_float("x", request.args.get("x"))
    y = parse_float("y", request.args.get("y"))
    within = parse_float("within", request.args.get("within"), default=50.0, minimum=0.1, maximum=500.0)
    with services().engine.connect() as conn:
        found = house_numbers.number_at(conn, Point(x, y), within=within)
    if found is None:
        raise NotFound(f"no house number within {within:g} m")
    return jsonify(found)
