"""OpenAPI 3.0 document generated from the registered routes and a declaration per view.

A view declares itself with :func:`declare` (summary, parameters, responses); the document walks
``app.url_map`` so every route appears, including routes of other blueprints that have no
declaration (they get their docstring's first line and generic responses). Served as JSON at
``/openapi`` and as a readable page at ``/api``.
"""

from __future__ import annotations

import re

from flask import Blueprint, Flask, current_app, render_template, request

OPENAPI_MEDIA_TYPE = "application/vnd.oai.openapi+json;version=3.0"
PROBLEM_MEDIA_TYPE = "application/problem+json"
_SKIP_METHODS = {"HEAD", "OPTIONS"}
_CONVERTER_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"}, "path": {"type": "string"}}
_RULE_ARG = re.compile(r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>")

bp = Blueprint("openapi", __name__)


def declare(summary: str, *, description: str = "", parameters=(), request_body: dict | None = None,
            responses: dict | None = None, tags=(), operation_id: str | None = None):
    """Attach the OpenAPI description of a view (outermost decorator)."""

    def decorator(view):
        view.__openapi__ = {
            "summary": summary,
            "description": description,
            "parameters": list(parameters),
            "requestBody": request_body,
            "responses": responses,
            "tags": list(tags),
            "operationId": operation_id,
        }
        return view

    return decorator


def query(name: str, schema: dict, description: str = "", *, required: bool = False, style: str | None = None,
          explode: bool | None = None) -> dict:
    param = {"name": name, "in": "query", "required": required, "schema": schema, "description": description}
    if style:
        param["style"] = style
    if explode is not None:
        param["explode"] = explode
    return param


def ref(name: str) -> dict:
    return {"$ref": f"#/components/parameters/{name}"}


def json_response(description: str, media_type: str = "application/json", schema: dict | None = None) -> dict:
    return {"description": description, "content": {media_type: {"schema": schema or {"type": "object"}}}}


def problem(description: str) -> dict:
    return {"$ref": "#/components/responses/Problem", "description": description}


#: parameters shared by several views (OGC API names)
COMMON_PARAMETERS = {
    "f": query("f", {"type": "string", "enum": ["json", "html"]}, "Output format (default: from Accept)"),
    "bbox": query("bbox", {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
                  "minx,miny,maxx,maxy in bbox-crs (default CRS84)", style="form", explode=False),
    "bbox-crs": query("bbox-crs", {"type": "string", "format": "uri"}, "CRS of bbox (default CRS84)"),
    "crs": query("crs", {"type": "string", "format": "uri"}, "Output CRS (default CRS84)"),
    "limit": query("limit", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
                   "Page size (larger values are reduced to the server maximum)"),
    "offset": query("offset", {"type": "integer", "minimum": 0, "default": 0}, "Index of the first feature"),
    "datetime": query("datetime", {"type": "string"},
                      "Instant or interval (a/b, ../b, a/..) for versioned layers such as parcels"),
    "filter": query("filter", {"type": "string"}, "CQL2 filter (text or JSON)"),
    "filter-lang": query("filter-lang", {"type": "string", "enum": ["cql2-text", "cql2-json"],
                                         "default": "cql2-text"}, "Language of filter"),
    "filter-crs": query("filter-crs", {"type": "string", "format": "uri"}, "CRS of geometries in filter"),
    "collectionId": {"name": "collectionId", "in": "path", "required": True, "schema": {"type": "string"},
                     "description": "Collection (layer) name"},
    "featureId": {"name": "featureId", "in": "path", "required": True, "schema": {"type": "string"},
                  "description": "Feature id"},
}

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "code": {"type": "string"}, "instance": {"type": "string"},
    },
}


def _path_and_parameters(rule) -> tuple[str, list[dict]]:
    params = []

    def replace(match):
        name = match.group("name")
        schema = _CONVERTER_TYPES.get(match.group("converter") or "", {"type": "string"})
        params.append({"name": name, "in": "path", "required": True, "schema": dict(schema)})
        return "{" + name + "}"

    path = _RULE_ARG.sub(replace, rule.rule)
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path, params


def _operation(view, endpoint: str, method: str, path_params: list[dict]) -> dict:
    decl = getattr(view, "__openapi__", None) or {}
    doc = (view.__doc__ or "").strip().splitlines()
    summary = decl.get("summary") or (doc[0] if doc else endpoint)
    op = {"summary": summary, "operationId": decl.get("operationId") or f"{endpoint}.{method.lower()}"}
    if decl.get("description"):
        op["description"] = decl["description"]
    tag = decl.get("tags") or [endpoint.split(".")[0]]
    op["tags"] = list(tag)
    declared = {p.get("name") for p in decl.get("parameters", []) if "name" in p}
    params = [p for p in path_params if p["name"] not in declared and not _path_ref_declared(decl, p["name"])]
    params += decl.get("parameters", [])
    if params:
        op["parameters"] = params
    if decl.get("requestBody"):
        op["requestBody"] = decl["requestBody"]
    responses = dict(decl.get("responses") or {"200": {"description": "Success"}})
    responses.setdefault("400", {"$ref": "#/components/responses/Problem"})
    responses.setdefault("default", {"$ref": "#/components/responses/Problem"})
    op["responses"] = responses
    roles = getattr(view, "required_roles", None)
    if roles:
        op["security"] = [{"bearerAuth": []}]
        op.setdefault("description", "")
        op["description"] = (op["description"] + f" Requires one of the roles: {', '.join(roles)}.").strip()
    return op


def _path_ref_declared(decl, name: str) -> bool:
    return any(p.get("$ref", "").endswith("/" + name) for p in decl.get("parameters", []))


def build_document(app: Flask, base_url: str = "") -> dict:
    """The OpenAPI 3.0 document of every route registered on ``app``."""
    paths: dict[str, dict] = {}
    used_ids: set[str] = set()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        path, path_params = _path_and_parameters(rule)
        item = paths.setdefault(path, {})
        for method in sorted((rule.methods or set()) - _SKIP_METHODS):
            if method.lower() in item:
                continue
            op = _operation(view, rule.endpoint, method, path_params)
            base_id, n = op["operationId"], 1
            while op["operationId"] in used_ids:  # one view served under several rules
                n += 1
                op["operationId"] = f"{base_id}.{n}"
            used_ids.add(op["operationId"])
            item[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "HCMC GIS server",
            "version": "0.1.0",
            "description": "Spatial queries, OGC API - Features (Parts 1, 2, 3) and the services of the "
                           "Ho Chi Minh City GIS urban-management server.",
            "license": {"name": "Apache-2.0"},
        },
        "servers": [{"url": base_url or "/"}],
        "paths": paths,
        "components": {
            "parameters": COMMON_PARAMETERS,
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "responses": {
                "Problem": {"description": "Error (RFC 9457 problem details)",
                            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
            },
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def base_url() -> str:
    public = current_app.extensions["gisserver"].settings.public_url
    return (public or request.host_url).rstrip("/")


@declare("OpenAPI 3.0 document of this service", tags=["docs"],
         responses={"200": json_response("The OpenAPI document", OPENAPI_MEDIA_TYPE)})
@bp.get("/openapi")
def openapi_document():
    """The OpenAPI document."""
    doc = build_document(current_app, base_url())
    resp = current_app.response_class(current_app.json.dumps(doc))
    resp.headers["Content-Type"] = OPENAPI_MEDIA_TYPE
    return resp


@declare("API documentation (HTML)", tags=["docs"],
         responses={"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}})
@bp.get("/api")
def api_docs():
    """Readable API documentation."""
    doc = build_document(current_app, base_url())
    return render_template("api.html", doc=doc, base=base_url())
