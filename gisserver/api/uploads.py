"""Vector file upload: ``POST /layers/<name>/upload`` (multipart) -> the load report.

The file part is streamed to a temporary file under ``settings.upload_dir`` (never held in
memory); the request is capped at ``max_upload_mb`` (413). Options come as form fields or query
parameters: ``crs``, ``force_crs``, ``mode``, ``policy``, ``mapping`` (JSON object) or repeated
``map=SRC=DST``, ``source_layer``, ``encoding``, ``title``, ``access_level``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from flask import Blueprint, jsonify, request
from werkzeug.datastructures import MultiDict
from werkzeug.formparser import FormDataParser
from werkzeug.utils import secure_filename

from gisserver.api import services
from gisserver.errors import InvalidInput, InvalidParameter, PayloadTooLarge
from gisserver.openapi import declare, json_response, problem
from gisserver.params import parse_bool, parse_choice
from gisserver.schema import ACCESS_LEVELS
from gisserver.web_auth import principal, require_roles
from layers.geometry import POLICIES
from layers.ingest import MODES, load_layer
from layers.readers import SUPPORTED_SUFFIXES

bp = Blueprint("uploads", __name__)

_OPTION_FIELDS = {
    "crs": {"type": "string", "description": "CRS of the file's coordinates (EPSG:4326 ...), if it has none"},
    "force_crs": {"type": "boolean", "description": "use crs even when it contradicts the file's CRS"},
    "mode": {"type": "string", "enum": list(MODES), "default": "replace"},
    "policy": {"type": "string", "enum": list(POLICIES), "default": "repair"},
    "mapping": {"type": "string", "description": "JSON object: source field -> column"},
    "map": {"type": "array", "items": {"type": "string"}, "description": "SRC=DST (repeatable)"},
    "source_layer": {"type": "string"},
    "encoding": {"type": "string", "description": "text encoding when the file does not say (cp1258 ...)"},
    "title": {"type": "string"},
    "access_level": {"type": "string", "enum": list(ACCESS_LEVELS)},
}


@bp.post("/layers/<name>/upload")
@declare(
    "Load a vector file into a layer (all or nothing)",
    description="GeoPackage, zipped Shapefile, GeoJSON, FlatGeobuf, CSV with WKT, DXF, DGN. Officers and admins.",
    request_body={"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}, **_OPTION_FIELDS},
    }}}},
    responses={
        "200": json_response("Load report"),
        "201": json_response("Load report (a new generic layer was created)"),
        "401": problem("Authentication required"),
        "403": problem("Officer or admin role required"),
        "404": problem("No such layer (or not readable by the caller)"),
        "413": problem("Upload larger than GISSERVER_MAX_UPLOAD_MB"),
        "415": problem("Unsupported file format"),
        "422": problem("The load breaks a register rule"),
    },
    tags=["layers"],
)
@require_roles("officer", "admin")
def upload_layer(name: str):
    settings = services().settings
    limit = settings.max_upload_mb * 1024 * 1024
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the upload exceeds the limit of {settings.max_upload_mb} MiB")
    upload_dir = Path(settings.upload_dir)
    upload_dir.mkdir(parents=True, exist_ok=True)
    who = principal()
    with tempfile.TemporaryDirectory(dir=upload_dir, prefix="upload-") as tmp:
        form, path, filename = _receive(Path(tmp))
        values = MultiDict(request.args)
        values.update(form)
        report = load_layer(
            services().engine, path, name, actor=who.username, filename=filename,
            crs=values.get("crs") or None,
            force_crs=parse_bool("force_crs", values.get("force_crs"), default=False),
            mode=parse_choice("mode", values.get("mode"), MODES, default="replace"),
            policy=parse_choice("policy", values.get("policy"), POLICIES, default="repair"),
            mapping=_mapping(values),
            source_layer=values.get("source_layer") or None,
            encoding=values.get("encoding") or None,
            title=values.get("title") or None,
            access_level=parse_choice("access_level", values.get("access_level"), ACCESS_LEVELS, default="")
            or None,
            can_write=lambda info: info.readable_by(who),
        )
    return jsonify(report.to_dict()), 201 if report.created else 200


def _receive(tmp: Path) -> tuple[MultiDict, Path, str]:
    """Stream the multipart body; the ``file`` part goes to a file in ``tmp``."""
    if request.mimetype != "multipart/form-data":
        raise InvalidInput("send the file as multipart/form-data in a field named 'file'")
    created: list[tuple[Path, str]] = []
    opened = []

    def stream_factory(total_content_length, content_type, filename, content_length=None):
        suffix = Path(secure_filename(filename or "")).suffix.lower()
        target = tmp / f"part{len(created)}{suffix if suffix in SUPPORTED_SUFFIXES else '.bin'}"
        created.append((target, filename or target.name))
        opened.append(open(target, "w+b"))  # noqa: SIM115 - closed below, whatever happens
        return opened[-1]

    parser = FormDataParser(stream_factory=stream_factory, max_form_memory_size=1024 * 1024,
                            max_content_length=request.max_content_length)
    try:
        _, form, files = parser.parse(request.stream, request.mimetype, request.content_length,
                                      request.mimetype_params)
    finally:
        for fh in opened:
            fh.close()
    if "file" not in files or not files["file"].filename:
        raise InvalidParameter("file", "is required (a multipart field named 'file' with a file name)")
    if len(created) != 1:
        raise InvalidParameter("file", "send exactly one file per upload")
    path, filename = created[0]
    return form, path, filename


def _mapping(values: MultiDict) -> dict[str, str] | None:
    mapping: dict[str, str] = {}
    raw = values.get("mapping")
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise InvalidParameter("mapping", "must be a JSON object {\"source field\": \"column\"}") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise InvalidParameter("mapping", "must be a JSON object of field names to column names")
        mapping.update(parsed)
    for item in values.getlist("map"):
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise InvalidParameter("map", f"{item!r} is not SRC=DST")
        mapping[src] = dst
    return mapping or None
