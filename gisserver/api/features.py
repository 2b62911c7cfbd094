"""OGC API - Features: Part 1 (core, GeoJSON, HTML), Part 2 (CRS), Part 3 (filtering, queryables).

Views parse the request into typed values, call one function of ``layers.query`` and serialize.
Collections are catalogue layers; a layer the caller may not read does not exist for them (404).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from flask import Blueprint, current_app, render_template, request

from gisserver.api import services
from gisserver.crs import ADVERTISED_SRIDS
from gisserver.errors import InvalidParameter, UnknownCRS
from gisserver.openapi import declare, json_response, ref
from gisserver.params import parse_choice, parse_datetime, parse_float, parse_int
from gisserver.web_auth import principal
from layers import cql
from layers import query as q

bp = Blueprint("features", __name__, url_prefix="/ogc")

GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
SCHEMA_JSON = "application/schema+json"
REL_CONFORMANCE = "http://www.opengis.net/def/rel/ogc/1.0/conformance"
REL_DATA = "http://www.opengis.net/def/rel/ogc/1.0/data"
REL_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/property-property",
    "http://www.opengis.net/spec/cql2/1.0/conf/arithmetic",
]

#: CRSs every collection offers (Part 2): CRS84 first (the default), then the advertised EPSG codes
SUPPORTED_CRS = [q.CRS84_URI] + [f"http://www.opengis.net/def/crs/EPSG/0/{code}" for code in ADVERTISED_SRIDS]
MAX_OFFSET = 2**62
ITEMS_PARAMETERS = {"f", "bbox", "bbox-crs", "crs", "limit", "offset", "datetime", "filter", "filter-lang",
                    "filter-crs"}


# --- request helpers (shared with gisserver.api.query) -------------------------------------------

def base_url() -> str:
    public = services().settings.public_url
    return (public or request.host_url).rstrip("/")


def wants_html() -> bool:
    f = parse_choice("f", request.args.get("f"), ("json", "geojson", "html", "jsonfg"), default="")
    if f:
        return f == "html"
    best = request.accept_mimetypes.best_match([JSON, GEOJSON, HTML], default=JSON)
    return best == HTML and request.accept_mimetypes[HTML] > request.accept_mimetypes[JSON]


def parse_crs_param(name: str, value: str | None, *, default: q.CRSRef = q.CRS84,
                    supported_only: bool = False) -> q.CRSRef:
    try:
        crs = q.crs_ref(value, default)
    except UnknownCRS as exc:
        raise InvalidParameter(name, exc.message) from None
    if supported_only and value and crs.uri not in SUPPORTED_CRS:
        raise InvalidParameter(name, f"not offered; one of {', '.join(SUPPORTED_CRS)}")
    return crs


def parse_box(name: str, value: str | None, crs: q.CRSRef) -> q.Box | None:
    if value is None or value == "":
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise InvalidParameter(name, "must have 4 (or 6) comma-separated numbers")
    numbers = [parse_float(name, p.strip()) for p in parts]
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    box = q.Box(*numbers, crs=crs)
    minx, miny, maxx, maxy = box.xy()
    if miny > maxy or (minx > maxx and crs.srid != 4326):
        raise InvalidParameter(name, "the lower corner must be below and left of the upper corner")
    if crs.geographic and not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InvalidParameter(name, "longitude/latitude out of range")
    return box


def parse_datetime_param(value: str | None):
    """An instant, or an interval as (start, end) with None for an open end."""
    if value is None or value == "":
        return None
    if "/" in value:
        start_text, _, end_text = value.partition("/")
        start = None if start_text in ("", "..") else _aware(parse_datetime("datetime", start_text))
        end = None if end_text in ("", "..") else _aware(parse_datetime("datetime", end_text))
        if start and end and start > end:
            raise InvalidParameter("datetime", "the interval ends before it starts")
        return (start, end)
    return _aware(parse_datetime("datetime", value))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_limit(value: str | None) -> int:
    settings = services().settings
    limit = parse_int("limit", value, default=settings.default_page_limit, minimum=1)
    return min(limit, settings.max_page_limit)


def json_response_of(body, media_type: str = JSON, status: int = 200, headers: dict | None = None):
    resp = current_app.response_class(current_app.json.dumps(body), status=status, mimetype=media_type)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def html_response(template: str, **context):
    resp = current_app.response_class(render_template(template, **context), mimetype=HTML)
    resp.headers["Content-Type"] = "text/html; charset=utf-8"
    return resp


def link(href: str, rel: str, media_type: str, title: str = "") -> dict:
    item = {"href": href, "rel": rel, "type": media_type}
    if title:
        item["title"] = title
    return item


def url_with(path: str, **params) -> str:
    args = {k: v for k, v in request.args.items(multi=False) if k not in params}
    args.update({k: v for k, v in params.items() if v is not None})
    query = urlencode(args)
    return f"{base_url()}{path}" + (f"?{query}" if query else "")


def connection():
    return services().engine.connect()


# --- landing, conformance ------------------------------------------------------------------------

@declare("Landing page", tags=["OGC API - Features"], parameters=[ref("f")],
         responses={"200": json_response("Landing page")})
@bp.get("/", strict_slashes=False)
def landing():
    """Landing page of the OGC API."""
    base = base_url()
    links = [
        link(f"{base}/ogc?f=json", "self", JSON, "This document"),
        link(f"{base}/ogc?f=html", "alternate", HTML, "This document as HTML"),
        link(f"{base}/openapi", "service-desc", "application/vnd.oai.openapi+json;version=3.0",
             "The API definition"),
        link(f"{base}/api", "service-doc", HTML, "The API documentation"),
        link(f"{base}/ogc/conformance", "conformance", JSON, "Conformance classes"),
        link(f"{base}/ogc/conformance", REL_CONFORMANCE, JSON, "Conformance classes"),
        link(f"{base}/ogc/collections", "data", JSON, "Collections"),
        link(f"{base}/ogc/collections", REL_DATA, JSON, "Collections"),
    ]
    body = {
        "title": "HCMC GIS server - OGC API Features",
        "description": "Dữ liệu không gian Thành phố Hồ Chí Minh (cadastre, networks, zoning) in the city "
                       "CRS VN-2000 / TM-3 105°45' and in CRS84.",
        "links": links,
    }
    if wants_html():
        return html_response("ogc/landing.html", page=body)
    return json_response_of(body)


@declare("Conformance classes", tags=["OGC API - Features"], parameters=[ref("f")],
         responses={"200": json_response("Conformance declaration")})
@bp.get("/conformance")
def conformance():
    """The conformance classes this server implements."""
    body = {"conformsTo": CONFORMANCE}
    if wants_html():
        return html_response("ogc/conformance.html", page=body)
    return json_response_of(body)


# --- collections ---------------------------------------------------------------------------------

def _collection_doc(info, extent) -> dict:
    base = f"{base_url()}/ogc/collections/{info.name}"
    doc = {
        "id": info.name,
        "title": info.title,
        "description": info.description or (info.title_vi or info.title),
        "itemType": "feature",
        "crs": SUPPORTED_CRS,
        "storageCrs": q.CRSRef(info.srid).uri,
        "links": [
            link(base, "self", JSON, info.title),
            link(f"{base}?f=html", "alternate", HTML, info.title),
            link(f"{base}/items", "items", GEOJSON, "Features as GeoJSON"),
            link(f"{base}/items?f=html", "items", HTML, "Features as HTML"),
            link(f"{base}/queryables", REL_QUERYABLES, SCHEMA_JSON, "Queryables"),
        ],
    }
    if info.title_vi:
        doc["title_vi"] = info.title_vi
    if extent:
        doc["extent"] = {"spatial": {"bbox": [list(extent)], "crs": q.CRS84_URI}}
    return doc


@declare("Collections (layers readable by the caller)", tags=["OGC API - Features"], parameters=[ref("f")],
         responses={"200": json_response("Collections")})
@bp.get("/collections")
def collections():
    """The collections."""
    with connection() as conn:
        layers = q.readable_layers(conn, principal())
    base = base_url()
    body = {
        "links": [
            link(f"{base}/ogc/collections", "self", JSON, "Collections"),
            link(f"{base}/ogc/collections?f=html", "alternate", HTML, "Collections as HTML"),
        ],
        "collections": [_collection_doc(info, extent) for info, extent in layers],
        "crs": SUPPORTED_CRS,
    }
    if wants_html():
        return html_response("ogc/collections.html", page=body)
    return json_response_of(body)


@declare("One collection", tags=["OGC API - Features"], parameters=[ref("collectionId"), ref("f")],
         responses={"200": json_response("Collection"), "404": {"$ref": "#/components/responses/Problem"}})
@bp.get("/collections/<collectionId>")
def collection(collectionId: str):
    """One collection."""
    with connection() as conn:
        info, extent = q.readable_layer(conn, collectionId, principal())
    body = _collection_doc(info, extent)
    if wants_html():
        return html_response("ogc/collection.html", page=body)
    return json_response_of(body)


@declare("Queryables of a collection (JSON Schema)", tags=["OGC API - Features"],
         parameters=[ref("collectionId"), ref("f")],
         responses={"200": json_response("Queryables", SCHEMA_JSON)})
@bp.get("/collections/<collectionId>/queryables")
def collection_queryables(collectionId: str):
    """Properties usable in filters."""
    with connection() as conn:
        source = q.open_layer(conn, collectionId, principal())
    body = q.queryables(source)
    body["$id"] = f"{base_url()}/ogc/collections/{collectionId}/queryables"
    if wants_html():
        return html_response("ogc/queryables.html", page=body, collection_id=collectionId)
    return json_response_of(body, SCHEMA_JSON)


# --- items ---------------------------------------------------------------------------------------

def _items_search(source) -> q.Search:
    args = request.args
    out = parse_crs_param("crs", args.get("crs"), supported_only=True)
    bbox_crs = parse_crs_param("bbox-crs", args.get("bbox-crs"), supported_only=True)
    filter_crs = parse_crs_param("filter-crs", args.get("filter-crs"), supported_only=True)
    lang = parse_choice("filter-lang", args.get("filter-lang"), cql.FILTER_LANGS, default="cql2-text")
    props = []
    for name in args:
        if name in ITEMS_PARAMETERS:
            continue
        if name not in source.columns:
            raise InvalidParameter(name, "unknown parameter (not a queryable of this collection)")
        props.append((name, args.get(name)))
    return q.Search(
        bbox=parse_box("bbox", args.get("bbox"), bbox_crs),
        filter=cql.parse_filter(args.get("filter"), lang if "filter-lang" in args else None),
        filter_crs=filter_crs,
        properties=tuple(props),
        at=parse_datetime_param(args.get("datetime")),
        limit=parse_limit(args.get("limit")),
        offset=parse_int("offset", args.get("offset"), default=0, minimum=0, maximum=MAX_OFFSET),
        out=out,
    )


def page_links(path: str, page: q.FeaturePage, media_type: str = GEOJSON) -> list[dict]:
    links = [
        link(url_with(path), "self", media_type, "This page"),
        link(url_with(path, f="html"), "alternate", HTML, "This page as HTML"),
    ]
    if page.has_next:
        links.append(link(url_with(path, offset=str(page.offset + page.limit), limit=str(page.limit)),
                          "next", media_type, "Next page"))
    if page.has_prev:
        links.append(link(url_with(path, offset=str(max(0, page.offset - page.limit)), limit=str(page.limit)),
                          "prev", media_type, "Previous page"))
    return links


def feature_collection(page: q.FeaturePage, links: list[dict]) -> dict:
    return {
        "type": "FeatureCollection",
        "features": page.features,
        "numberMatched": page.number_matched,
        "numberReturned": page.number_returned,
        "timeStamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "links": links,
    }


def content_crs(crs: q.CRSRef) -> dict:
    return {"Content-Crs": f"<{crs.uri}>"}


@declare("Features of a collection", tags=["OGC API - Features"],
         parameters=[ref("collectionId"), ref("f"), ref("bbox"), ref("bbox-crs"), ref("crs"), ref("limit"),
                     ref("offset"), ref("datetime"), ref("filter"), ref("filter-lang"), ref("filter-crs")],
         description="Other query parameters named after a queryable filter by equality (Part 3).",
         responses={"200": json_response("Features", GEOJSON)})
@bp.get("/collections/<collectionId>/items")
def items(collectionId: str):
    """Features, one page at a time."""
    with connection() as conn:
        source = q.open_layer(conn, collectionId, principal())
        search = _items_search(source)
        page = q.search_features(conn, source, search)
    path = f"/ogc/collections/{collectionId}/items"
    links = page_links(path, page) + [
        link(f"{base_url()}/ogc/collections/{collectionId}", "collection", JSON, source.info.title)
    ]
    body = feature_collection(page, links)
    if wants_html():
        return html_response("ogc/items.html", page=body, layer=source.info, crs=page.crs)
    return json_response_of(body, GEOJSON, headers=content_crs(page.crs))


@declare("One feature", tags=["OGC API - Features"],
         parameters=[ref("collectionId"), ref("featureId"), ref("f"), ref("crs")],
         responses={"200": json_response("Feature", GEOJSON), "404": {"$ref": "#/components/responses/Problem"}})
@bp.get("/collections/<collectionId>/items/<featureId>")
def item(collectionId: str, featureId: str):
    """One feature by id."""
    out = parse_crs_param("crs", request.args.get("crs"), supported_only=True)
    with connection() as conn:
        source = q.open_layer(conn, collectionId, principal())
        feature = q.get_feature(conn, source, featureId, out)
    base = f"{base_url()}/ogc/collections/{collectionId}"
    feature["links"] = [
        link(url_with(f"/ogc/collections/{collectionId}/items/{featureId}"), "self", GEOJSON, "This feature"),
        link(f"{base}/items/{featureId}?f=html", "alternate", HTML, "This feature as HTML"),
        link(base, "collection", JSON, source.info.title),
    ]
    if wants_html():
        return html_response("ogc/item.html", feature=feature, layer=source.info, crs=out)
    return json_response_of(feature, GEOJSON, headers=content_crs(out))

