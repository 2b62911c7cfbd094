"""OGC Web Map Service 1.3.0 and 1.1.1: GetCapabilities, GetMap, GetFeatureInfo, GetLegendGraphic.

Version differences handled here: ``CRS`` vs ``SRS``; in 1.3.0 EPSG:4326 (and every CRS whose
first axis is latitude) takes ``BBOX=minlat,minlon,maxlat,maxlon`` while 1.1.1 and ``CRS:84`` take
lon/lat; ``I/J`` vs ``X/Y``; ``InvalidCRS`` vs ``InvalidSRS``; the exception formats. Every layer
is looked up through the catalogue with the caller's principal: capabilities list only readable
layers and any other layer is ``LayerNotDefined``. Errors become the ServiceExceptionReport of the
requested version, or an image (``EXCEPTIONS=INIMAGE``/``BLANK``) for GetMap.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from pyproj import CRS as ProjCRS
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from gisserver import schema
from gisserver.crs import ADVERTISED_SRIDS, CITY_SRID, resolve_srid, srid_to_epsg
from gisserver.errors import GISError, InvalidParameter, UnknownCRS
from gisserver.params import parse_bbox, parse_bool, parse_datetime, parse_int
from gisserver.security import Principal
from layers.catalogue import (
    LayerInfo,
    access_area_clause,
    get_layer,
    layer_table,
    list_layers,
    property_columns,
)
from tiles import render
from tiles.exceptions import OWSException, from_error, missing, wms_exception_report
from tiles.mvt import PRIVATE_COLUMNS, current_filter
from tiles.snapshot import CatalogueSnapshot
from tiles.styles import layer_style, style_names

log = logging.getLogger(__name__)

VERSIONS = ("1.3.0", "1.1.1")
MAP_FORMATS = ("image/png", "image/jpeg", "image/png; mode=8bit")
INFO_FORMATS = ("text/html", "application/json", "text/xml", "application/geo+json", "text/plain")
#: lon/lat bbox used for layers that have no extent yet (Ho Chi Minh City)
CITY_BBOX = (106.35, 10.37, 107.03, 11.17)
MAX_FEATURE_COUNT = 50


@dataclass
class OWSResponse:
    body: bytes
    content_type: str
    status: int = 200
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TimeDimension:
    """A time-varying layer (e.g. flood depth per model time step): ``column`` holds the time."""

    column: str
    units: str = "ISO8601"
    #: sample dimensions of the layer, (name, integer column), requested as ``DIM_<NAME>``
    #: (e.g. the flood run); without the parameter the latest value is drawn
    extra: tuple[tuple[str, str], ...] = ()


#: layer name -> time dimension; other areas register theirs (e.g. flood runs) at import
TIME_DIMENSIONS: dict[str, TimeDimension] = {}


def register_time_dimension(layer: str, column: str, *, extra: Mapping[str, str] | None = None) -> None:
    TIME_DIMENSIONS[layer] = TimeDimension(column, extra=tuple((extra or {}).items()))


@dataclass(frozen=True)
class MapRequest:
    layers: tuple[str, ...]
    styles: tuple[str, ...]
    srid: int
    crs_code: str
    bbox: tuple[float, float, float, float]  # x/y order of the CRS as Mapnik wants it (lon/lat)
    width: int
    height: int
    image_format: str
    transparent: bool
    bgcolor: str
    time: str | None
    dims: tuple[tuple[str, str], ...] = ()  # DIM_<NAME>=value, name lower-case


def negotiate_version(params: Mapping[str, str]) -> str:
    v = params.get("VERSION") or params.get("WMTVER") or "1.3.0"
    return "1.1.1" if v.startswith("1.1") or v.startswith("1.0") else "1.3.0"


@lru_cache(maxsize=64)
def _lat_first(srid: int) -> bool:
    if srid == CITY_SRID:
        return False
    axes = ProjCRS.from_epsg(srid).axis_info
    return bool(axes) and axes[0].direction.lower() == "north"


def parse_crs(value: str | None, version: str) -> tuple[int, str, bool]:
    """(srid, code as given, swap axes?) for a CRS/SRS parameter."""
    name = "SRS" if version == "1.1.1" else "CRS"
    if not value:
        raise missing(name)
    v = value.strip()
    if v.upper() in ("CRS:84", "CRS84", "OGC:CRS84") or v.upper().endswith("/CRS84"):
        return 4326, v, False
    try:
        srid = resolve_srid(v)
    except UnknownCRS as exc:
        raise OWSException("InvalidSRS" if version == "1.1.1" else "InvalidCRS", exc.message, name) from None
    return srid, v, version == "1.3.0" and _lat_first(srid)


def parse_map_request(p: Mapping[str, str], version: str, *, layers_key: str = "LAYERS") -> MapRequest:
    names = tuple(n.strip() for n in (p.get(layers_key) or "").split(",") if n.strip())
    if not names:
        raise missing(layers_key)
    styles = tuple(s.strip() for s in (p.get("STYLES") or "").split(","))
    if styles == ("",):
        styles = ("",) * len(names)
    if len(styles) != len(names):
        raise OWSException("InvalidParameterValue", "STYLES must name one style per layer (or be empty)", "STYLES")
    srid, code, swap = parse_crs(p.get("CRS") or p.get("SRS"), version)
    if not p.get("BBOX"):
        raise missing("BBOX")
    b = parse_bbox("BBOX", p["BBOX"], srid=0)
    bbox = (b.miny, b.minx, b.maxy, b.maxx) if swap else (b.minx, b.miny, b.maxx, b.maxy)
    if not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
        raise OWSException("InvalidParameterValue", "BBOX must have minx < maxx and miny < maxy", "BBOX")
    fmt = p.get("FORMAT") or "image/png"
    if fmt not in MAP_FORMATS:
        raise OWSException("InvalidFormat", f"unsupported format {fmt!r}; use one of {', '.join(MAP_FORMATS)}",
                           "FORMAT")
    return MapRequest(
        layers=names, styles=styles, srid=srid, crs_code=code, bbox=bbox,
        width=parse_int("WIDTH", p.get("WIDTH"), minimum=1, maximum=render.MAX_SIZE),
        height=parse_int("HEIGHT", p.get("HEIGHT"), minimum=1, maximum=render.MAX_SIZE),
        image_format=fmt, transparent=parse_bool("TRANSPARENT", (p.get("TRANSPARENT") or "").lower(), default=False),
        bgcolor=render.parse_color(p.get("BGCOLOR")), time=p.get("TIME") or None,
        dims=tuple(sorted((k[4:].lower(), v) for k, v in p.items() if k.startswith("DIM_") and v)),
    )


def time_filter(info: LayerInfo, table, time: str | None, dims=()) -> list:
    """Conditions of TIME and the layer's sample dimensions. A missing value takes the default
    advertised in the capabilities: the latest (the subqueries read an alias, so they are not
    correlated with the drawn row)."""
    dim = TIME_DIMENSIONS.get(info.name)
    if dim is None:
        return []
    given, where = dict(dims), []
    for name, column in dim.extra:
        value = given.get(name)
        if value is None:
            latest = table.alias()
            where.append(table.c[column] == select(func.max(latest.c[column])).scalar_subquery())
        else:
            where.append(table.c[column] == parse_int(f"DIM_{name.upper()}", value))
    if time is None or time.lower() == "current":
        latest = table.alias()
        same = [latest.c[column] == table.c[column] for _, column in dim.extra]
        return [*where, table.c[dim.column] == select(func.max(latest.c[dim.column])).where(*same).scalar_subquery()]
    return [*where, table.c[dim.column] == parse_datetime("TIME", time)]


def check_dimension_values(conn: Connection, info: LayerInfo, table, time: str | None, dims=()) -> None:
    """An instant or sample value the layer does not have is ``InvalidDimensionValue`` (WMS Annex C)."""
    if info.name not in TIME_DIMENSIONS or (time is None and not dims):
        return
    where = time_filter(info, table, time, dims)
    if not conn.execute(select(select(table.c.geom).where(*where).exists())).scalar():
        wanted = ", ".join([f"TIME={time}"] * bool(time) + [f"DIM_{n.upper()}={v}" for n, v in dims])
        raise OWSException("InvalidDimensionValue", f"layer {info.name!r} has no data at {wanted}",
                           "TIME" if time else f"DIM_{dims[0][0].upper()}")


def area_filter(info: LayerInfo, principal: Principal | None, table) -> list:
    """For a caller with an area-limited grant only: keep features in the granted area."""
    if principal is None:
        return []
    clause = access_area_clause(info, principal, table.c.geom, info.srid)
    return [] if clause is None else [clause]


def map_layer_for(conn: Connection, info: LayerInfo, style_name: str | None, time: str | None,
                  principal: Principal | None, dims=()) -> render.MapLayer:
    """One readable catalogue layer as a Mapnik layer (style, current/time/area filters)."""
    table = layer_table(conn, info)
    style = layer_style(info.name, info.geometry_type, style_name or None)
    check_dimension_values(conn, info, table, time, dims)
    where = [*current_filter(table), *time_filter(info, table, time, dims), *area_filter(info, principal, table)]
    return render.map_layer(table, info.name, info.geometry_type, style, where)


def resolve_map_layers(conn: Connection, principal: Principal | None, names, styles, time: str | None,
                       dims=()) -> list[render.MapLayer]:
    """Catalogue layers (readable by ``principal``) as Mapnik layers; unknown ones raise NotFound."""
    return [map_layer_for(conn, get_layer(conn, name, principal), style_name, time, principal, dims)
            for name, style_name in zip(names, styles, strict=True)]


_map_layers: OrderedDict = OrderedDict()
_map_layers_lock = threading.Lock()


def cached_map_layers(engine: Engine, snapshot: CatalogueSnapshot, principal: Principal | None, names, styles,
                      time: str | None, dims=()) -> list[render.MapLayer]:
    """Like :func:`resolve_map_layers` from the catalogue snapshot, memoising the compiled
    Mapnik layers per (layer, data version, style, time, area grant): a GetMap of known layers
    then needs no database round trip before rendering."""
    out = []
    for name, style_name in zip(names, styles, strict=True):
        info = snapshot.layer(name, principal)
        area_agency = principal.agency_id if principal is not None and info.area_limited_for(principal) else None
        key = (info.id, info.name, info.data_version, style_name or "", time, dims, area_agency)
        with _map_layers_lock:
            layer = _map_layers.get(key)
        if layer is None:
            with engine.connect() as conn:
                layer = map_layer_for(conn, info, style_name, time, principal, dims)
            with _map_layers_lock:
                _map_layers[key] = layer
                if len(_map_layers) > 512:
                    _map_layers.popitem(last=False)
        out.append(layer)
    return out


class WMSService:
    """One WMS request at a time: ``handle(params)`` -> OWSResponse (never raises)."""

    def __init__(self, engine: Engine, principal: Principal | None, service_url: str,
                 snapshot: CatalogueSnapshot | None = None):
        self.engine = engine
        self.principal = principal
        self.url = service_url
        self.snapshot = snapshot
        self.db = render.DbParams.from_url(engine.url)

    def handle(self, args: Mapping[str, str]) -> OWSResponse:
        p = {k.upper(): v for k, v in args.items()}
        version = negotiate_version(p)
        operation = (p.get("REQUEST") or "").lower()
        handlers: dict[str, Callable] = {
            "getcapabilities": self.get_capabilities, "capabilities": self.get_capabilities,
            "getmap": self.get_map, "map": self.get_map,
            "getfeatureinfo": self.get_feature_info, "feature_info": self.get_feature_info,
            "getlegendgraphic": self.get_legend_graphic,
        }
        try:
            service = (p.get("SERVICE") or "WMS").upper()
            if service != "WMS":
                raise OWSException("InvalidParameterValue", f"SERVICE must be WMS, not {service!r}", "SERVICE")
            if not operation:
                raise missing("REQUEST")
            handler = handlers.get(operation)
            if handler is None:
                raise OWSException("OperationNotSupported", f"unknown request {p.get('REQUEST')!r}", "REQUEST")
            return handler(p, version)
        except Exception as exc:  # every failure becomes a ServiceExceptionReport
            if not isinstance(exc, GISError | OWSException):
                log.exception("WMS %s failed", operation)
            return self.exception(from_error(exc, version), p, version, operation)

    # --- errors ------------------------------------------------------------------------------
    def exception(self, exc: OWSException, p: Mapping[str, str], version: str, operation: str) -> OWSResponse:
        mode = (p.get("EXCEPTIONS") or "").lower()
        if operation in ("getmap", "map") and ("inimage" in mode or "blank" in mode):
            try:
                width = parse_int("WIDTH", p.get("WIDTH"), minimum=1, maximum=render.MAX_SIZE)
                height = parse_int("HEIGHT", p.get("HEIGHT"), minimum=1, maximum=render.MAX_SIZE)
                fmt = p.get("FORMAT") if p.get("FORMAT") in MAP_FORMATS else "image/png"
                transparent = (p.get("TRANSPARENT") or "").lower() == "true"
                bg = render.parse_color(p.get("BGCOLOR"))
            except (GISError, OWSException):
                width = height = 0
            if width and height:
                if "blank" in mode:
                    body = render.blank_image(width, height, fmt, transparent, bg)
                else:
                    body = render.render_message(f"{exc.code}: {exc.message}", width, height, fmt, transparent, bg)
                return OWSResponse(body, fmt.split(";")[0], 200)
        body, ctype = wms_exception_report(exc, version)
        status = 500 if exc.status >= 500 else 400
        return OWSResponse(body, ctype, status)

    # --- GetMap ------------------------------------------------------------------------------
    def get_map(self, p: Mapping[str, str], version: str) -> OWSResponse:
        req = parse_map_request(p, version)
        if self.snapshot is not None:
            layers = cached_map_layers(self.engine, self.snapshot, self.principal, req.layers, req.styles, req.time,
                                       req.dims)
        else:
            with self.engine.connect() as conn:
                layers = resolve_map_layers(conn, self.principal, req.layers, req.styles, req.time, req.dims)
        image = render.render_map(layers, req.bbox, req.srid, req.width, req.height, db=self.db,
                                  image_format=req.image_format, transparent=req.transparent,
                                  bgcolor=req.bgcolor)
        return OWSResponse(image, req.image_format.split(";")[0])

    # --- GetLegendGraphic --------------------------------------------------------------------
    def get_legend_graphic(self, p: Mapping[str, str], version: str) -> OWSResponse:
        name = p.get("LAYER") or p.get("LAYERS")
        if not name:
            raise missing("LAYER")
        fmt = p.get("FORMAT") or "image/png"
        if fmt not in MAP_FORMATS:
            raise OWSException("InvalidFormat", f"unsupported format {fmt!r}", "FORMAT")
        width = parse_int("WIDTH", p.get("WIDTH"), default=20, minimum=4, maximum=512)
        height = parse_int("HEIGHT", p.get("HEIGHT"), default=20, minimum=4, maximum=512)
        with self.engine.connect() as conn:
            image = legend_graphic(conn, self.principal, name, p.get("STYLE") or None, width, height, fmt)
        return OWSResponse(image, fmt.split(";")[0])

    # --- GetFeatureInfo ----------------------------------------------------------------------
    def get_feature_info(self, p: Mapping[str, str], version: str) -> OWSResponse:
        req = parse_map_request({**p, "LAYERS": p.get("LAYERS") or p.get("QUERY_LAYERS", "")}, version)
        query_layers = [n.strip() for n in (p.get("QUERY_LAYERS") or "").split(",") if n.strip()]
        if not query_layers:
            raise missing("QUERY_LAYERS")
        i_key, j_key = ("I", "J") if version == "1.3.0" else ("X", "Y")
        i = _pixel(p, i_key, req.width)
        j = _pixel(p, j_key, req.height)
        fmt = p.get("INFO_FORMAT") or "text/html"
        if fmt not in INFO_FORMATS:
            raise OWSException("InvalidFormat", f"INFO_FORMAT must be one of {', '.join(INFO_FORMATS)}",
                               "INFO_FORMAT")
        count = parse_int("FEATURE_COUNT", p.get("FEATURE_COUNT"), default=1, minimum=1, maximum=MAX_FEATURE_COUNT)
        minx, miny, maxx, maxy = req.bbox
        x = minx + (i + 0.5) / req.width * (maxx - minx)
        y = maxy - (j + 0.5) / req.height * (maxy - miny)
        rx, ry = 3 * (maxx - minx) / req.width, 3 * (maxy - miny) / req.height  # 3-pixel tolerance
        with self.engine.connect() as conn:
            results = [
                (name, query_features(conn, self.principal, name, (x - rx, y - ry, x + rx, y + ry), req.srid,
                                      count, req.time, req.dims))
                for name in query_layers
            ]
        return format_feature_info(results, fmt)

    # --- GetCapabilities ---------------------------------------------------------------------
    def get_capabilities(self, p: Mapping[str, str], version: str) -> OWSResponse:
        with self.engine.connect() as conn:
            layers = list_layers(conn, self.principal)
            extents = layer_extents(conn)
            times = {info.name: time_values(conn, info) for info in layers if info.name in TIME_DIMENSIONS}
            dims = {info.name: dimension_values(conn, info) for info in layers if info.name in TIME_DIMENSIONS}
        doc = capabilities_xml(version, self.url, layers, extents, times, dims)
        ctype = "text/xml" if version == "1.3.0" else "application/vnd.ogc.wms_xml"
        return OWSResponse(doc, ctype, headers={"Cache-Control": "no-cache"})


def legend_graphic(conn: Connection, principal: Principal | None, name: str, style: str | None,
                   width: int = 20, height: int = 20, image_format: str = "image/png") -> bytes:
    """Legend swatch of a readable layer's style."""
    info = get_layer(conn, name, principal)
    return render.render_legend(layer_style(info.name, info.geometry_type, style), info.geometry_type,
                                width, height, image_format)


def _pixel(p: Mapping[str, str], key: str, size: int) -> int:
    if p.get(key) in (None, ""):
        raise missing(key)
    try:
        return parse_int(key, p.get(key), minimum=0, maximum=size - 1)
    except InvalidParameter as exc:
        raise OWSException("InvalidPoint", exc.message, key) from None


def query_features(conn: Connection, principal: Principal | None, name: str, box, srid: int, limit: int,
                   time: str | None, dims=()) -> list[dict]:
    """Features of a readable layer within ``box`` (in ``srid``), nearest first, as GeoJSON dicts."""
    info = get_layer(conn, name, principal)
    table = layer_table(conn, info)
    check_dimension_values(conn, info, table, time, dims)
    search = func.ST_Transform(func.ST_MakeEnvelope(*box, srid), info.srid)
    centre = func.ST_Centroid(search)
    staff = bool(principal and principal.is_staff)
    cols = [c for c in property_columns(table) if staff or c.name not in PRIVATE_COLUMNS]
    stmt = (
        select(*cols, func.ST_AsGeoJSON(func.ST_Transform(table.c.geom, 4326), 7).label("_geojson"))
        .where(table.c.geom.op("&&")(search), func.ST_Intersects(table.c.geom, search),
               *current_filter(table), *time_filter(info, table, time, dims), *area_filter(info, principal, table))
        .order_by(func.ST_Distance(table.c.geom, centre))
        .limit(limit)
    )
    features = []
    for row in conn.execute(stmt).mappings():
        props = {k: _jsonable(v) for k, v in row.items() if k != "_geojson"}
        features.append({"type": "Feature", "id": props.get("id"), "geometry": json.loads(row["_geojson"]),
                         "properties": props})
    return features


def _jsonable(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def format_feature_info(results: list[tuple[str, list[dict]]], fmt: str) -> OWSResponse:
    if fmt in ("application/json", "application/geo+json"):
        features = [{**f, "layer": name} for name, feats in results for f in feats]
        body = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False)
        return OWSResponse(body.encode(), fmt)
    if fmt == "text/xml":
        root = ET.Element("FeatureInfoResponse")
        for name, feats in results:
            layer_el = ET.SubElement(root, "Layer", name=name)
            for f in feats:
                fel = ET.SubElement(layer_el, "Feature", id=str(f["id"]))
                for k, v in f["properties"].items():
                    ET.SubElement(fel, "Attribute", name=k, value="" if v is None else str(v))
        return OWSResponse(b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8"),
                           "text/xml")
    if fmt == "text/plain":
        lines = []
        for name, feats in results:
            lines.append(f"Layer '{name}': {len(feats)} feature(s)")
            for f in feats:
                lines.extend(f"  {k} = {v}" for k, v in f["properties"].items())
        return OWSResponse("\n".join(lines).encode(), "text/plain")
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Feature info</title></head><body>"]
    for name, feats in results:
        parts.append(f"<h3>{html.escape(name)}</h3>")
        for f in feats:
            rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape('' if v is None else str(v))}</td></tr>"
                           for k, v in f["properties"].items())
            parts.append(f"<table class='feature'>{rows}</table>")
        if not feats:
            parts.append("<p>no features</p>")
    parts.append("</body></html>")
    return OWSResponse("".join(parts).encode(), "text/html")


def layer_extents(conn: Connection) -> dict[str, tuple[float, float, float, float]]:
    lyr = schema.layer
    rows = conn.execute(select(lyr.c.name, func.ST_XMin(lyr.c.extent), func.ST_YMin(lyr.c.extent),
                               func.ST_XMax(lyr.c.extent), func.ST_YMax(lyr.c.extent))
                        .where(lyr.c.extent.isnot(None)))
    return {r[0]: (float(r[1]), float(r[2]), float(r[3]), float(r[4])) for r in rows}


def time_values(conn: Connection, info: LayerInfo) -> list[str]:
    dim = TIME_DIMENSIONS[info.name]
    table = layer_table(conn, info)
    col = table.c[dim.column]
    values = conn.execute(select(col).where(col.isnot(None)).distinct().order_by(col)).scalars()
    return [_iso(v) for v in values]


def dimension_values(conn: Connection, info: LayerInfo) -> dict[str, list[str]]:
    """Values of the layer's sample dimensions (ascending), by dimension name."""
    table = layer_table(conn, info)
    out = {}
    for name, column in TIME_DIMENSIONS[info.name].extra:
        col = table.c[column]
        rows = conn.execute(select(col).where(col.isnot(None)).distinct().order_by(col)).scalars()
        out[name] = [str(v) for v in rows]
    return out


def _iso(value) -> str:
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text.replace("+00:00", "Z")


# --- capabilities documents ---------------------------------------------------------------------

def _crs_codes(version: str) -> list[str]:
    codes = [f"EPSG:{srid_to_epsg(s)}" for s in (CITY_SRID, *ADVERTISED_SRIDS) if s != 9210]
    codes = list(dict.fromkeys(codes))
    return [*codes, "CRS:84"] if version == "1.3.0" else codes


def _sub(parent, tag, text=None, **attrs):
    el = ET.SubElement(parent, tag, {k.replace("__", ":"): str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def _online(parent, tag, href):
    el = ET.SubElement(parent, tag)
    el.set("xmlns:xlink", "http://www.w3.org/1999/xlink")
    el.set("xlink:type", "simple")
    el.set("xlink:href", href)
    return el


def _operation(parent, name, formats, url):
    op = _sub(parent, name)
    for fmt in formats:
        _sub(op, "Format", fmt)
    get = _sub(_sub(_sub(op, "DCPType"), "HTTP"), "Get")
    _online(get, "OnlineResource", url + "?")
    return op


def _bbox_elements(layer_el, version: str, bbox):
    w, s, e, n = bbox
    if version == "1.3.0":
        geo = _sub(layer_el, "EX_GeographicBoundingBox")
        _sub(geo, "westBoundLongitude", w)
        _sub(geo, "eastBoundLongitude", e)
        _sub(geo, "southBoundLatitude", s)
        _sub(geo, "northBoundLatitude", n)
        _sub(layer_el, "BoundingBox", CRS="CRS:84", minx=w, miny=s, maxx=e, maxy=n)
        _sub(layer_el, "BoundingBox", CRS="EPSG:4326", minx=s, miny=w, maxx=n, maxy=e)
    else:
        _sub(layer_el, "LatLonBoundingBox", minx=w, miny=s, maxx=e, maxy=n)
        _sub(layer_el, "BoundingBox", SRS="EPSG:4326", minx=w, miny=s, maxx=e, maxy=n)


def _layer_element(parent, version: str, info: LayerInfo, url: str, bbox, times: list[str] | None,
                   dims: dict[str, list[str]] | None = None):
    el = _sub(parent, "Layer", queryable="1", opaque="0")
    _sub(el, "Name", info.name)
    _sub(el, "Title", info.title)
    _sub(el, "Abstract", info.description or (info.title_vi or info.title))
    _bbox_elements(el, version, bbox)
    # time, then the sample dimensions (Annex C, requested as DIM_<NAME>); default: the latest value
    dimensions = ([("time", "ISO8601", times)] if times is not None else []) + [
        (name, "", values) for name, values in (dims or {}).items()]
    for name, units, values in dimensions:
        default = values[-1] if values else ""
        if version == "1.3.0":
            _sub(el, "Dimension", ",".join(values), name=name, units=units, default=default, nearestValue="0")
        else:
            _sub(el, "Dimension", name=name, units=units)
    for name, _units, values in dimensions if version == "1.1.1" else ():  # 1.1.1: every Extent after them
        _sub(el, "Extent", ",".join(values), name=name, default=values[-1] if values else "")
    for style_name in style_names(info.name):
        st = _sub(el, "Style")
        _sub(st, "Name", style_name)
        _sub(st, "Title", layer_style(info.name, info.geometry_type, style_name).title)
        legend = _sub(st, "LegendURL", width=20, height=20)
        _sub(legend, "Format", "image/png")
        _online(legend, "OnlineResource",
                f"{url}?SERVICE=WMS&VERSION={version}&REQUEST=GetLegendGraphic&FORMAT=image/png"
                f"&LAYER={info.name}&STYLE={style_name}")
    return el


def capabilities_xml(version: str, url: str, layers: list[LayerInfo], extents: dict, times: dict,
                     dims: dict | None = None) -> bytes:
    if version == "1.3.0":
        root = ET.Element("WMS_Capabilities", version="1.3.0", xmlns="http://www.opengis.net/wms")
        root.set("xmlns:xlink", "http://www.w3.org/1999/xlink")
        root.set("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance")
        root.set("xsi:schemaLocation",
                 "http://www.opengis.net/wms http://schemas.opengis.net/wms/1.3.0/capabilities_1_3_0.xsd")
        exc_formats = ["XML", "INIMAGE", "BLANK"]
        caps_format = "text/xml"
    else:
        root = ET.Element("WMT_MS_Capabilities", version="1.1.1")
        exc_formats = ["application/vnd.ogc.se_xml", "application/vnd.ogc.se_inimage",
                       "application/vnd.ogc.se_blank"]
        caps_format = "application/vnd.ogc.wms_xml"
    service = _sub(root, "Service")
    _sub(service, "Name", "WMS" if version == "1.3.0" else "OGC:WMS")
    _sub(service, "Title", "Ho Chi Minh City GIS - map service")
    _sub(service, "Abstract", "City layers (cadastre, networks, zoning) rendered from PostGIS.")
    _online(service, "OnlineResource", url)
    _sub(service, "Fees", "none")
    _sub(service, "AccessConstraints", "none")
    if version == "1.3.0":
        _sub(service, "MaxWidth", render.MAX_SIZE)
        _sub(service, "MaxHeight", render.MAX_SIZE)
    cap = _sub(root, "Capability")
    req = _sub(cap, "Request")
    _operation(req, "GetCapabilities", [caps_format], url)
    _operation(req, "GetMap", MAP_FORMATS, url)
    _operation(req, "GetFeatureInfo", INFO_FORMATS, url)
    if version == "1.1.1":
        _operation(req, "GetLegendGraphic", ["image/png", "image/jpeg"], url)
    exc = _sub(cap, "Exception")
    for fmt in exc_formats:
        _sub(exc, "Format", fmt)
    top = _sub(cap, "Layer")
    _sub(top, "Title", "Ho Chi Minh City")
    for code in _crs_codes(version):
        _sub(top, "CRS" if version == "1.3.0" else "SRS", code)
    all_boxes = [extents.get(i.name, CITY_BBOX) for i in layers] or [CITY_BBOX]
    union = (min(b[0] for b in all_boxes), min(b[1] for b in all_boxes),
             max(b[2] for b in all_boxes), max(b[3] for b in all_boxes))
    _bbox_elements(top, version, union)
    for info in layers:
        _layer_element(top, version, info, url, extents.get(info.name, CITY_BBOX), times.get(info.name),
                       (dims or {}).get(info.name))
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    if version == "1.1.1":
        head += ('<!DOCTYPE WMT_MS_Capabilities SYSTEM '
                 '"http://schemas.opengis.net/wms/1.1.1/WMS_MS_Capabilities.dtd">\n')
    return (head + ET.tostring(root, encoding="unicode")).encode()

