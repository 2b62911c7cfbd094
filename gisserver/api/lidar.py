"""LiDAR over HTTP: ingest (upload or server-side path) as a job, the file and tile index, and
3D exports of buildings (CityJSON 2.0, GLB, a 3D Tiles tileset) per building and per area.

Ingests are queued here and run by the LiDAR worker (``python -m lidar.worker``); the request
only pre-flights the file (header, CRS, completeness, inside the city) so that a bad file is a
400 at once and nothing is queued for it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from flask import Blueprint, jsonify, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.utils import secure_filename

from gisserver.api import services
from gisserver.api.features import json_response_of, parse_box, parse_crs_param
from gisserver.api.uploads import _receive as receive_multipart
from gisserver.crs import CITY_SRID, crs_uri
from gisserver.errors import Forbidden, InvalidInput, InvalidParameter, PayloadTooLarge, UnsupportedFormat
from gisserver.openapi import declare, json_response, problem, query
from gisserver.params import parse_choice, parse_float, parse_int
from gisserver.schema import ACCESS_LEVELS
from gisserver.web_auth import principal, require_roles
from lidar import export, jobs, store

bp = Blueprint("lidar", __name__, url_prefix="/api/lidar")
STAFF = ("officer", "planner", "admin")
INGEST_ROLES = ("officer", "planner", "admin")
PATH_ROLES = ("planner", "admin")
LIDAR_SUFFIXES = (".las", ".laz")
GLB_HEADERS_DOC = "X-Model-Origin: x,y,z of the model's origin in X-Model-CRS (local metres, y up)"

_INGEST_FIELDS = {
    "crs": {"type": "string", "description": "CRS of the file (EPSG:28992 ...) when it has none: never guessed"},
    "vertical_datum": {"type": "string", "description": "height reference when the file does not say (Hon Dau)"},
    "prefix": {"type": "string", "description": "raster name prefix (default lidar_<job id>)"},
    "resolution": {"type": "number", "default": 1.0, "description": "raster cell size, metres (0.25-10)"},
    "tile_size": {"type": "number", "default": 500.0, "description": "tile side, m (multiple of resolution)"},
    "access_level": {"type": "string", "enum": list(ACCESS_LEVELS), "default": "public"},
}
_JOB_RESPONSES = {
    "202": json_response("The queued job with its links"),
    "401": problem("Authentication required"),
    "403": problem("Role not allowed (or path outside the allowed folders)"),
    "409": problem("File already indexed, or raster prefix taken"),
    "415": problem("Not a .las/.laz file"),
}
_AREA_PARAMETERS = [
    query("bbox", {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
          "minx,miny,maxx,maxy in bbox-crs (GET)", style="form", explode=False),
    query("bbox-crs", {"type": "string"}, "CRS of bbox: CRS84 (default), EPSG:9210 (city), any EPSG code"),
    query("crs", {"type": "string"}, "CRS of a POSTed GeoJSON polygon (default CRS84)"),
]
_AREA_BODY = {"required": False, "content": {"application/geo+json": {"schema": {"type": "object"}},
                                             "application/json": {"schema": {"type": "object"}}}}


# --- ingest ------------------------------------------------------------------------------------------


def _ingest_options(values) -> dict:
    resolution = parse_float("resolution", values.get("resolution"), default=1.0, minimum=0.25, maximum=10.0)
    tile_size = parse_float("tile_size", values.get("tile_size"), default=500.0, minimum=50.0, maximum=2000.0)
    if abs(tile_size / resolution - round(tile_size / resolution)) > 1e-9:
        raise InvalidParameter("tile_size", "must be a multiple of the resolution")
    prefix = values.get("prefix") or None
    if prefix is not None and not (prefix.replace("_", "").isalnum() and prefix.isascii() and len(prefix) <= 48):
        raise InvalidParameter("prefix", "letters, digits and _ only (at most 48)")
    return {"crs": values.get("crs") or None, "vertical_datum": values.get("vertical_datum") or None,
            "prefix": prefix, "resolution": resolution, "tile_size": tile_size,
            "access_level": parse_choice("access_level", values.get("access_level"), ACCESS_LEVELS, default="public")}


def _check_suffix(name: str) -> None:
    if Path(name).suffix.lower() not in LIDAR_SUFFIXES:
        raise UnsupportedFormat(f"{name}: send a LAS or LAZ file (.las, .laz, .copc.laz)")


def _job_response(job_id: int, status: int = 200):
    with services().engine.connect() as conn:
        body = jobs.job_status(conn, job_id)
    body["links"] = [{"rel": "self", "href": url_for("lidar.job", job_id=job_id)},
                     {"rel": "tiles", "href": url_for("lidar.tiles", job=job_id)}]
    if body.get("result") and body["result"].get("file_id"):
        body["links"].append({"rel": "file", "href": url_for("lidar.file", file_id=body["result"]["file_id"])})
    return jsonify(body), status


@bp.post("/files")
@declare(
    "Upload a LAS/LAZ file and process it (job)",
    description="Multipart upload streamed to disk (limit GISSERVER_LIDAR_MAX_UPLOAD_MB). The header, CRS and "
                "completeness are checked at once (400); the job then validates every point, builds DTM, DSM, "
                "nDSM and hillshade, measures buildings and registers everything in one transaction.",
    request_body={"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}, **_INGEST_FIELDS}}}}},
    responses={**_JOB_RESPONSES, "413": problem("Upload larger than GISSERVER_LIDAR_MAX_UPLOAD_MB")},
    tags=["lidar"],
)
@require_roles(*INGEST_ROLES)
def upload():
    settings = services().settings
    limit = settings.lidar_max_upload_mb * 1024 * 1024
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the upload exceeds the limit of {settings.lidar_max_upload_mb} MiB")
    request.max_content_length = limit  # LiDAR files have their own limit (Flask >= 3.1)
    upload_dir = Path(settings.upload_dir)
    upload_dir.mkdir(parents=True, exist_ok=True)
    files_dir = Path(settings.var_dir) / "lidar" / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=upload_dir, prefix="lidar-") as tmp:
        form, path, filename = receive_multipart(Path(tmp))
        values = MultiDict(request.args)
        values.update(form)
        _check_suffix(filename)
        options = _ingest_options(values)
        jobs.preflight(path, crs=options["crs"], vertical_datum=options["vertical_datum"],
                       max_area_km2=services().settings.lidar_max_ingest_km2)
        kept = files_dir / f"{uuid.uuid4().hex[:12]}-{secure_filename(filename) or 'cloud.laz'}"
        shutil.move(path, kept)
    try:
        with services().engine.begin() as conn:
            job_id = jobs.submit_ingest_job(conn, path=kept, name=filename, uploaded=True, owner=principal().username,
                                            **options)
    except BaseException:
        kept.unlink(missing_ok=True)
        raise
    return _job_response(job_id, 202)


@bp.post("/files/from-path")
@declare(
    "Process a LAS/LAZ file already on the server (job)",
    description="JSON body {path, crs?, vertical_datum?, prefix?, resolution?, tile_size?, access_level?}; the "
                "path must lie under a folder of GISSERVER_LIDAR_ALLOWED_DIRS (403 otherwise).",
    request_body={"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["path"], "properties": {"path": {"type": "string"}, **_INGEST_FIELDS}}}}},
    responses=_JOB_RESPONSES,
    tags=["lidar"],
)
@require_roles(*PATH_ROLES)
def register_path():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("path"), str) or not body["path"].strip():
        raise InvalidInput("send a JSON object with the file's server-side 'path'")
    values = {k: (str(v) if v is not None else None) for k, v in body.items()}
    path = _allowed_path(body["path"])
    _check_suffix(path.name)
    options = _ingest_options(values)
    jobs.preflight(path, crs=options["crs"], vertical_datum=options["vertical_datum"],
                   max_area_km2=services().settings.lidar_max_ingest_km2)
    with services().engine.begin() as conn:
        job_id = jobs.submit_ingest_job(conn, path=path, name=path.name, uploaded=False, owner=principal().username,
                                        **options)
    return _job_response(job_id, 202)


def _allowed_path(text: str) -> Path:
    allowed = services().settings.lidar_allowed_dirs or ()
    if not allowed:
        raise Forbidden("registering server-side files is disabled (GISSERVER_LIDAR_ALLOWED_DIRS is not set)")
    if "\0" in text or not os.path.isabs(text):
        raise InvalidParameter("path", "must be an absolute path")
    path = Path(text).resolve()  # symlinks and .. resolved before the check
    if not any(path.is_relative_to(Path(d).resolve()) for d in allowed):
        raise Forbidden("the path is outside the folders allowed for LiDAR files")
    if not path.is_file():
        raise InvalidParameter("path", "no such file")
    return path


@bp.get("/jobs/<int:job_id>")
@declare("A LiDAR job: status, progress (percent), stage, result or error", tags=["lidar"],
         responses={"200": json_response("The job"), "404": problem("No such job")})
@require_roles(*STAFF)
def job(job_id: int):
    return _job_response(job_id)


@bp.post("/jobs/<int:job_id>/cancel")
@declare("Cancel a queued LiDAR ingest (its uploaded file is removed)", tags=["lidar"],
         responses={"200": json_response("The cancelled job"), "404": problem("No such job"),
                    "409": problem("The job is running or finished")})
@require_roles(*INGEST_ROLES)
def cancel(job_id: int):
    with services().engine.begin() as conn:
        jobs.cancel_ingest_job(conn, job_id, actor=principal().username)
    return _job_response(job_id)


# --- file and tile index -------------------------------------------------------------------------


@bp.get("/files")
@declare("Indexed LiDAR files (GeoJSON, footprints in CRS84)", tags=["lidar"],
         parameters=[query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
                     query("offset", {"type": "integer", "minimum": 0, "default": 0})],
         responses={"200": json_response("Features: point count, density, classes, z range, CRS, date",
                                         "application/geo+json")})
@require_roles(*STAFF)
def files():
    limit = parse_int("limit", request.args.get("limit"), default=100, minimum=1, maximum=1000)
    offset = parse_int("offset", request.args.get("offset"), default=0, minimum=0)
    with services().engine.connect() as conn:
        features, total = store.list_files(conn, limit=limit, offset=offset)
    return json_response_of({"type": "FeatureCollection", "features": features, "numberMatched": total,
                             "numberReturned": len(features)}, "application/geo+json")


@bp.get("/files/<int:file_id>")
@declare("One indexed LiDAR file (GeoJSON Feature)", tags=["lidar"],
         responses={"200": json_response("The file", "application/geo+json"), "404": problem("No such file")})
@require_roles(*STAFF)
def file(file_id: int):
    with services().engine.connect() as conn:
        return json_response_of(store.get_file(conn, file_id), "application/geo+json")


@bp.get("/tiles")
@declare("Processed tiles (GeoJSON, CRS84): status, point and ground counts, classes", tags=["lidar"],
         parameters=[query("job", {"type": "integer"}, "only this job's tiles"),
                     query("limit", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}),
                     query("offset", {"type": "integer", "minimum": 0, "default": 0})],
         responses={"200": json_response("Features", "application/geo+json")})
@require_roles(*STAFF)
def tiles():
    job_id = parse_int("job", request.args.get("job"), default=0, minimum=1) if request.args.get("job") else None
    limit = parse_int("limit", request.args.get("limit"), default=1000, minimum=1, maximum=10000)
    offset = parse_int("offset", request.args.get("offset"), default=0, minimum=0)
    with services().engine.connect() as conn:
        features, total = store.list_tiles(conn, job_id=job_id, limit=limit, offset=offset)
    return json_response_of({"type": "FeatureCollection", "features": features, "numberMatched": total,
                             "numberReturned": len(features)}, "application/geo+json")


# --- 3D exports --------------------------------------------------------------------------------------


def _one(building_id: int) -> export.Selection:
    with services().engine.connect() as conn:
        return export.building_by_id(conn, building_id, principal())


def _area_selection() -> export.Selection:
    if request.method == "POST":
        body = request.get_json(silent=True, force=True)
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a GeoJSON Polygon or MultiPolygon (or a Feature of one)")
        crs = parse_crs_param("crs", request.args.get("crs"))
        area = export.area_of_geojson(body, crs)
    else:
        crs = parse_crs_param("bbox-crs", request.args.get("bbox-crs"))
        box = parse_box("bbox", request.args.get("bbox"), crs)
        if box is None:
            raise InvalidParameter("bbox", "is required (or POST a GeoJSON polygon)")
        area = export.area_of_bbox(box)
    limit = services().settings.lidar_export_max_buildings
    with services().engine.connect() as conn:
        return export.buildings_in_area(conn, area, principal(), limit=limit)


def _cityjson(selection: export.Selection, filename: str):
    resp = json_response_of(export.cityjson_document(selection), export.CITYJSON_MEDIA_TYPE)
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    resp.headers["X-Buildings-Without-Heights"] = str(selection.without_heights)
    return resp


def _glb(selection: export.Selection, filename: str):
    from flask import current_app

    data, origin = export.glb_bytes(selection)
    resp = current_app.response_class(data, mimetype=export.GLB_MEDIA_TYPE)
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    resp.headers["X-Model-Origin"] = ",".join(f"{v:.3f}" for v in origin)
    resp.headers["X-Model-CRS"] = crs_uri(CITY_SRID)
    resp.headers["X-Buildings-Without-Heights"] = str(selection.without_heights)
    return resp


@bp.get("/buildings/<int:building_id>/cityjson")
@declare("One building as CityJSON 2.0 (LoD1)", tags=["lidar"],
         responses={"200": json_response("CityJSON", export.CITYJSON_MEDIA_TYPE),
                    "404": problem("No such building"), "409": problem("The building has no LiDAR heights yet")})
def building_cityjson(building_id: int):
    return _cityjson(_one(building_id), f"building-{building_id}.city.json")


@bp.get("/buildings/<int:building_id>/glb")
@declare("One building as binary glTF (LoD1)", description=GLB_HEADERS_DOC, tags=["lidar"],
         responses={"200": {"description": "GLB", "content": {export.GLB_MEDIA_TYPE: {"schema": {
             "type": "string", "format": "binary"}}}},
                    "404": problem("No such building"), "409": problem("The building has no LiDAR heights yet")})
def building_glb(building_id: int):
    return _glb(_one(building_id), f"building-{building_id}.glb")


@bp.route("/export/cityjson", methods=["GET", "POST"])
@declare("Buildings of an area as CityJSON 2.0 (LoD1)",
         description="GET with bbox (and bbox-crs), or POST a GeoJSON Polygon/MultiPolygon (crs). More buildings "
                     "than GISSERVER_LIDAR_EXPORT_MAX_BUILDINGS is a 400.",
         parameters=_AREA_PARAMETERS, request_body=_AREA_BODY, tags=["lidar"],
         responses={"200": json_response("CityJSON", export.CITYJSON_MEDIA_TYPE)})
def area_cityjson():
    return _cityjson(_area_selection(), "buildings.city.json")


@bp.route("/export/glb", methods=["GET", "POST"])
@declare("Buildings of an area as binary glTF (LoD1)", description=GLB_HEADERS_DOC,
         parameters=_AREA_PARAMETERS, request_body=_AREA_BODY, tags=["lidar"],
         responses={"200": {"description": "GLB", "content": {export.GLB_MEDIA_TYPE: {"schema": {
             "type": "string", "format": "binary"}}}}})
def area_glb():
    return _glb(_area_selection(), "buildings.glb")


@bp.get("/3dtiles/tileset.json")
@declare("3D Tiles 1.1 tileset of the buildings of a bbox (for CesiumJS and other viewers)",
         description="Its content is the GLB export of the same bbox.", parameters=_AREA_PARAMETERS[:2],
         tags=["lidar"], responses={"200": json_response("tileset.json")})
def area_tileset():
    selection = _area_selection()
    args = {k: request.args[k] for k in ("bbox", "bbox-crs") if k in request.args}
    return jsonify(export.tileset(selection, url_for("lidar.area_glb", **args)))


@bp.get("/buildings/<int:building_id>/tileset.json")
@declare("3D Tiles 1.1 tileset of one building", tags=["lidar"],
         responses={"200": json_response("tileset.json"), "404": problem("No such building")})
def building_tileset(building_id: int):
    return jsonify(export.tileset(_one(building_id), url_for("lidar.building_glb", building_id=building_id)))
