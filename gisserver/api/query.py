"""Spatial query endpoints: identify, parcel lookup, nearest, within distance, intersects.

Input coordinates come as ``lon``/``lat`` (CRS84) or ``x``/``y`` with ``crs`` (default the city CRS,
EPSG:9210); output geometries are in ``out-crs`` (default CRS84). Distances are metres.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, current_app, request
from sqlalchemy.engine import Engine

from gisserver.api import services
from gisserver.api.features import (
    GEOJSON,
    MAX_OFFSET,
    connection,
    content_crs,
    feature_collection,
    json_response_of,
    page_links,
    parse_crs_param,
    parse_limit,
)
from gisserver.errors import InvalidInput, InvalidParameter
from gisserver.openapi import declare, json_response, ref
from gisserver.openapi import query as qparam
from gisserver.params import parse_choice, parse_float, parse_int
from gisserver.security import Principal
from gisserver.web_auth import principal
from layers import cql
from layers import query as q

bp = Blueprint("query", __name__, url_prefix="/api")

MAX_IDENTIFY_LAYERS = 16
POINT_PARAMETERS = [
    qparam("lon", {"type": "number", "minimum": -180, "maximum": 180}, "Longitude (CRS84); with lat"),
    qparam("lat", {"type": "number", "minimum": -90, "maximum": 90}, "Latitude (CRS84); with lon"),
    qparam("x", {"type": "number"}, "Easting/x in crs; with y"),
    qparam("y", {"type": "number"}, "Northing/y in crs; with x"),
    qparam("crs", {"type": "string"}, "CRS of x/y (default EPSG:9210, the city CRS)"),
]
OUT_CRS = qparam("out-crs", {"type": "string"}, "CRS of returned geometries (default CRS84)")
LAYER_PATH = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "Layer name"}


def parse_point(args: Mapping[str, str] | None = None) -> q.Point:
    args = request.args if args is None else args
    if "lon" in args or "lat" in args:
        lon = parse_float("lon", args.get("lon"), minimum=-180, maximum=180)
        lat = parse_float("lat", args.get("lat"), minimum=-90, maximum=90)
        return q.Point(lon, lat, q.CRS84)
    if "x" in args or "y" in args:
        crs = parse_crs_param("crs", args.get("crs"), default=q.CITY)
        return q.Point(parse_float("x", args.get("x")), parse_float("y", args.get("y")), crs)
    raise InvalidParameter("lon", "give lon and lat (CRS84), or x, y and crs")


def _out_crs(args: Mapping[str, str] | None = None) -> q.CRSRef:
    return parse_crs_param("out-crs", (request.args if args is None else args).get("out-crs"))


def _filter():
    lang = parse_choice("filter-lang", request.args.get("filter-lang"), cql.FILTER_LANGS, default="cql2-text")
    return cql.parse_filter(request.args.get("filter"), lang if "filter-lang" in request.args else None)


@declare("Identify: features at a point", tags=["queries"],
         description="Features containing the point, or within `tolerance` metres of it, nearest first.",
         parameters=[*POINT_PARAMETERS, OUT_CRS,
                     qparam("layers", {"type": "string", "default": "parcels"}, "Comma-separated layer names"),
                     qparam("tolerance", {"type": "number", "minimum": 0, "maximum": 1000, "default": 0},
                            "Search radius in metres"),
                     qparam("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                            "Features per layer")],
         responses={"200": json_response("Features with their layer name", GEOJSON)})
@bp.get("/identify")
def identify():
    """Identify features at a point."""
    body, headers = identify_answer(services().engine, request.args, principal())
    return current_app.response_class(body, headers=headers)


def identify_answer(engine: Engine, args: Mapping[str, str], caller: Principal) -> tuple[bytes, list[tuple[str, str]]]:
    """One identify request, parsed, run and serialised: the body and headers of the 200 answer.

    Shared by the Flask view above and the WSGI fast path (:mod:`gisserver.fastpath`), which
    both answer exactly the same bytes (and the ASGI front, :func:`identify_answer_async`).
    """
    names, point, options = _identify_request(args)
    found = q.identify(engine, names, point, caller, **options)
    return _identify_body(found, options["out"])


async def identify_answer_async(pool, engine: Engine, args: Mapping[str, str],
                                caller: Principal) -> tuple[bytes, list[tuple[str, str]]] | None:
    """:func:`identify_answer` on asyncpg from the ASGI front's event loop (the same bytes), or
    None when only the synchronous path can answer (:mod:`layers.identify_async`)."""
    from layers.identify_async import identify_async

    names, point, options = _identify_request(args)
    found = await identify_async(pool, engine, names, point, caller, **options)
    return None if found is None else _identify_body(found, options["out"])


def _identify_request(args: Mapping[str, str]) -> tuple[list[str], q.Point, dict]:
    point = parse_point(args)
    names = [n.strip() for n in args.get("layers", "parcels").split(",") if n.strip()]
    if not names or len(names) > MAX_IDENTIFY_LAYERS:
        raise InvalidParameter("layers", f"give 1 to {MAX_IDENTIFY_LAYERS} layer names")
    tolerance = parse_float("tolerance", args.get("tolerance"), default=0.0, minimum=0,
                            maximum=q.MAX_IDENTIFY_TOLERANCE)
    limit = parse_int("limit", args.get("limit"), default=10, minimum=1, maximum=100)
    return names, point, {"tolerance": tolerance, "limit": limit, "out": _out_crs(args)}


def _identify_body(found: dict[str, list[str]], out: q.CRSRef) -> tuple[bytes, list[tuple[str, str]]]:
    features = [f for feats in found.values() for f in feats]  # GeoJSON Feature texts
    body = f'{{"type":"FeatureCollection","features":[{",".join(features)}],"numberReturned":{len(features)}}}'
    return body.encode(), [("Content-Type", GEOJSON), *content_crs(out).items()]


def fast_paths(app) -> dict:
    """Handlers of this blueprint that :class:`gisserver.fastpath.FastPath` may answer before Flask."""
    engine = app.extensions["gisserver"].engine

    def fast_identify(args: Mapping[str, str], caller: Principal):
        return identify_answer(engine, args, caller)

    return {"/api/identify": fast_identify}


def async_paths(app) -> dict:
    """Handlers of this blueprint that the ASGI front (:mod:`gisserver.asgi`) answers on its
    event loop: handler(pool, args, principal) -> (body, headers) or None."""
    engine = app.extensions["gisserver"].engine

    async def async_identify(pool, args: Mapping[str, str], caller: Principal):
        return await identify_answer_async(pool, engine, args, caller)

    return {"/api/identify": async_identify}


@declare("Parcel by ward, map sheet and parcel number", tags=["queries"],
         parameters=[qparam("ward", {"type": "string"}, "Ward/commune code", required=True),
                     qparam("sheet", {"type": "integer", "minimum": 0}, "Map sheet number (tờ bản đồ)",
                            required=True),
                     qparam("parcel", {"type": "integer", "minimum": 0}, "Parcel number (số thửa)", required=True),
                     OUT_CRS],
         responses={"200": json_response("The current parcel", GEOJSON),
                    "404": {"$ref": "#/components/responses/Problem"}})
@bp.get("/parcels/lookup")
def parcel_lookup():
    """Find the current parcel by its number."""
    ward = (request.args.get("ward") or "").strip()
    if not ward or len(ward) > 16:
        raise InvalidParameter("ward", "give the ward code (at most 16 characters)")
    sheet = parse_int("sheet", request.args.get("sheet"), minimum=0, maximum=2**31 - 1)
    parcel = parse_int("parcel", request.args.get("parcel"), minimum=0, maximum=2**31 - 1)
    out = _out_crs()
    with connection() as conn:
        feature = q.parcel_lookup(conn, ward, sheet, parcel, principal(), out)
    return json_response_of(feature, GEOJSON, headers=content_crs(out))


@declare("k nearest features of a layer", tags=["queries"],
         parameters=[LAYER_PATH, *POINT_PARAMETERS, OUT_CRS,
                     qparam("k", {"type": "integer", "minimum": 1, "maximum": q.MAX_NEAREST, "default": 5},
                            "How many"),
                     qparam("max-distance", {"type": "number", "minimum": 0}, "Ignore features farther (m)"),
                     ref("filter"), ref("filter-lang")],
         responses={"200": json_response("Nearest features with distance_m", GEOJSON)})
@bp.get("/layers/<name>/nearest")
def nearest(name: str):
    """The k nearest features."""
    point = parse_point()
    k = parse_int("k", request.args.get("k"), default=5, minimum=1, maximum=q.MAX_NEAREST)
    max_distance = request.args.get("max-distance")
    distance = parse_float("max-distance", max_distance, minimum=0, maximum=q.MAX_DISTANCE) \
        if max_distance else None
    out, flt = _out_crs(), _filter()
    with connection() as conn:
        source = q.open_layer(conn, name, principal())
        features = q.nearest(conn, source, point, k, distance, out, flt)
    body = {"type": "FeatureCollection", "features": features, "numberReturned": len(features)}
    return json_response_of(body, GEOJSON, headers=content_crs(out))


@declare("Features within a distance of a point", tags=["queries"],
         parameters=[LAYER_PATH, *POINT_PARAMETERS, OUT_CRS,
                     qparam("distance", {"type": "number", "minimum": 0, "maximum": q.MAX_DISTANCE},
                            "Metres", required=True),
                     ref("limit"), ref("offset"), ref("filter"), ref("filter-lang")],
         responses={"200": json_response("Features, nearest first", GEOJSON)})
@bp.get("/layers/<name>/within")
def within(name: str):
    """Features within a distance."""
    point = parse_point()
    search = q.Search(
        near=point,
        distance=parse_float("distance", request.args.get("distance"), minimum=0, maximum=q.MAX_DISTANCE),
        filter=_filter(), limit=parse_limit(request.args.get("limit")),
        offset=parse_int("offset", request.args.get("offset"), default=0, minimum=0, maximum=MAX_OFFSET),
        out=_out_crs(),
    )
    with connection() as conn:
        source = q.open_layer(conn, name, principal())
        page = q.search_features(conn, source, search)
    body = feature_collection(page, page_links(f"/api/layers/{name}/within", page))
    return json_response_of(body, GEOJSON, headers=content_crs(page.crs))


@declare("Features intersecting a GeoJSON geometry", tags=["queries"],
         parameters=[LAYER_PATH, OUT_CRS, qparam("crs", {"type": "string"}, "CRS of the body (default CRS84)"),
                     ref("limit"), ref("offset"), ref("filter"), ref("filter-lang")],
         request_body={"required": True, "content": {
             "application/geo+json": {"schema": {"type": "object"}},
             "application/json": {"schema": {"type": "object"}}}},
         responses={"200": json_response("Features", GEOJSON)})
@bp.post("/layers/<name>/intersects")
def intersects(name: str):
    """Features intersecting a geometry."""
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a GeoJSON geometry or Feature")
    search = q.Search(
        intersects=body, intersects_crs=parse_crs_param("crs", request.args.get("crs")),
        filter=_filter(), limit=parse_limit(request.args.get("limit")),
        offset=parse_int("offset", request.args.get("offset"), default=0, minimum=0, maximum=MAX_OFFSET),
        out=_out_crs(),
    )
    with connection() as conn:
        source = q.open_layer(conn, name, principal())
        page = q.search_features(conn, source, search)
    result = feature_collection(page, page_links(f"/api/layers/{name}/intersects", page))
    return json_response_of(result, GEOJSON, headers=content_crs(page.crs))
