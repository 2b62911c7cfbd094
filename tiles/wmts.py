"""OGC Web Map Tile Service 1.0.0, KVP and REST, with GoogleMapsCompatible and a VN-2000 set.

Tiles are Mapnik renderings (see ``tiles.render``) of one catalogue layer and style, cut on the
tile matrix set's grid, and kept in the tile cache keyed by the layer's data version. Errors are
OWS 1.1 ExceptionReports with the WMTS codes (MissingParameterValue, InvalidParameterValue,
TileOutOfRange, OperationNotSupported).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from gisserver.crs import CITY_SRID, transformer
from gisserver.errors import GISError, InvalidParameter
from gisserver.params import parse_int
from gisserver.security import Principal
from layers.catalogue import LayerInfo, get_layer, list_layers
from tiles import render, tms
from tiles.cache import CachedTile, TileCache
from tiles.exceptions import OWSException, from_error, missing, ows_exception_report
from tiles.mvt import cache_namespace, change_key
from tiles.snapshot import CatalogueSnapshot
from tiles.styles import layer_style, style_names
from tiles.wms import (
    CITY_BBOX,
    INFO_FORMATS,
    OWSResponse,
    cached_map_layers,
    format_feature_info,
    layer_extents,
    query_features,
)

log = logging.getLogger(__name__)

WMTS_NS = "http://www.opengis.net/wmts/1.0"
OWS_NS = "http://www.opengis.net/ows/1.1"
XLINK_NS = "http://www.w3.org/1999/xlink"
FORMATS = {"image/png": "png", "image/jpeg": "jpg"}
EXTENSIONS = {v: k for k, v in FORMATS.items()} | {"jpeg": "image/jpeg"}
TILE_MATRIX_SETS = (tms.GOOGLE_ID, tms.CITY_TMS_ID)
GOOGLE_MAXZOOM = 20
#: rendering margin (pixels) so labels and wide lines continue across tile edges
TILE_BUFFER = 64


@dataclass
class TileResult(OWSResponse):
    tile: CachedTile | None = None
    public: bool = True


def _srid(tms_id: str) -> int:
    return CITY_SRID if tms_id == tms.CITY_TMS_ID else 3857


def _maxzoom(tms_id: str) -> int:
    return tms.CITY_MAXZOOM if tms_id == tms.CITY_TMS_ID else GOOGLE_MAXZOOM


def _tms_id(value: str | None) -> str:
    if not value:
        raise missing("TileMatrixSet")
    if value in (tms.GOOGLE_ID, tms.WEB_MERCATOR_ID, "EPSG:3857"):
        return tms.GOOGLE_ID
    if value in (tms.CITY_TMS_ID, "EPSG:9210"):
        return tms.CITY_TMS_ID
    raise OWSException("InvalidParameterValue", f"unknown TileMatrixSet {value!r}", "TileMatrixSet")


def _matrix(tms_id: str):
    return tms.city_tms() if tms_id == tms.CITY_TMS_ID else tms.web_mercator()


def lonlat_bounds(tms_id: str, z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """Geographic bounds of a tile (city tiles through the official VN-2000 transformation)."""
    left, bottom, right, top = tms.tms_tile_bounds(_matrix(tms_id), z, x, y)
    t = transformer(_srid(tms_id), 4326)
    xs, ys = t.transform([left, right, left, right], [bottom, bottom, top, top])
    return (min(xs), min(ys), max(xs), max(ys))


def _tile_address(p: Mapping[str, str], tms_id: str) -> tuple[int, int, int]:
    for key in ("TILEMATRIX", "TILEROW", "TILECOL"):
        if p.get(key) in (None, ""):
            raise missing(key.title().replace("matrix", "Matrix"))
    z = parse_int("TileMatrix", p["TILEMATRIX"].rsplit(":", 1)[-1], minimum=0)
    if z > _maxzoom(tms_id):
        raise OWSException("InvalidParameterValue", f"TileMatrix {z} does not exist in {tms_id}", "TileMatrix")
    row = parse_int("TileRow", p["TILEROW"])
    col = parse_int("TileCol", p["TILECOL"])
    width, height = tms.matrix_size(_matrix(tms_id), z)
    if not 0 <= row < height:
        raise OWSException("TileOutOfRange", f"TileRow must be between 0 and {height - 1}", "TileRow")
    if not 0 <= col < width:
        raise OWSException("TileOutOfRange", f"TileCol must be between 0 and {width - 1}", "TileCol")
    return z, col, row


class WMTSService:
    def __init__(self, engine: Engine, principal: Principal | None, service_url: str, cache: TileCache | None,
                 snapshot: CatalogueSnapshot | None = None):
        self.snapshot = snapshot
        self.engine = engine
        self.principal = principal
        self.url = service_url
        self.cache = cache
        self.db = render.DbParams.from_url(engine.url)

    def handle(self, args: Mapping[str, str]) -> OWSResponse:
        p = {k.upper(): v for k, v in args.items()}
        operation = (p.get("REQUEST") or "").lower()
        try:
            if (p.get("SERVICE") or "WMTS").upper() != "WMTS":
                raise OWSException("InvalidParameterValue", "SERVICE must be WMTS", "SERVICE")
            if p.get("VERSION") and p["VERSION"] != "1.0.0" and operation != "getcapabilities":
                raise OWSException("VersionNegotiationFailed", "only WMTS 1.0.0 is served", "VERSION")
            if operation == "getcapabilities":
                return self.get_capabilities()
            if operation == "gettile":
                return self.get_tile(p)
            if operation == "getfeatureinfo":
                return self.get_feature_info(p)
            if not operation:
                raise missing("REQUEST")
            raise OWSException("OperationNotSupported", f"unknown request {p.get('REQUEST')!r}", "REQUEST", 501)
        except Exception as exc:
            if not isinstance(exc, GISError | OWSException):
                log.exception("WMTS %s failed", operation)
            err = from_error(exc)
            if err.code == "LayerNotDefined":  # WMTS has no such code
                err = OWSException("InvalidParameterValue", err.message, "Layer", 400)
            body, ctype = ows_exception_report(err)
            return OWSResponse(body, ctype, err.status)

    def _layer(self, conn, p) -> tuple[LayerInfo, str]:
        name = p.get("LAYER")
        if not name:
            raise missing("Layer")
        info = self.snapshot.layer(name, self.principal) if conn is None else get_layer(conn, name, self.principal)
        style = p.get("STYLE") or "default"
        if style not in style_names(info.name):
            raise OWSException("InvalidParameterValue", f"layer {name!r} has no style {style!r}", "Style")
        return info, style

    def get_tile(self, p: Mapping[str, str]) -> TileResult:
        fmt = p.get("FORMAT") or "image/png"
        if fmt not in FORMATS:
            raise OWSException("InvalidParameterValue", f"Format must be one of {', '.join(FORMATS)}", "Format")
        tms_id = _tms_id(p.get("TILEMATRIXSET"))
        z, x, y = _tile_address(p, tms_id)
        if self.snapshot is None:
            with self.engine.connect() as conn:
                info, style = self._layer(conn, p)
        else:
            info, style = self._layer(None, p)
        bounds = tms.tms_tile_bounds(_matrix(tms_id), z, x, y)

        def build() -> bytes:
            snapshot = self.snapshot or CatalogueSnapshot(self.engine, ttl=0)
            layers = cached_map_layers(self.engine, snapshot, self.principal, [info.name], [style], None)
            return render.render_map(layers, bounds, _srid(tms_id), 256, 256, db=self.db, image_format=fmt,
                                     transparent=True, buffer_size=TILE_BUFFER)

        limited = self.principal is not None and info.area_limited_for(self.principal)
        if self.cache is None or limited:  # area-limited callers get their own tiles, never cached
            from tiles.cache import content_digest

            data = build()
            tile = CachedTile(data, info.data_version, content_digest(data).hex(), hit=False)
        else:
            namespace = cache_namespace("wmts", info, style, tms_id, FORMATS[fmt])
            tile = self.cache.get_or_build(namespace, (change_key(info),), info.data_version, z, x, y, FORMATS[fmt],
                                           lambda: lonlat_bounds(tms_id, z, x, y), build)
        return TileResult(tile.data, fmt, tile=tile, public=info.access_level == "public")

    def get_feature_info(self, p: Mapping[str, str]) -> OWSResponse:
        tms_id = _tms_id(p.get("TILEMATRIXSET"))
        z, x, y = _tile_address(p, tms_id)
        i = _pixel(p, "I")
        j = _pixel(p, "J")
        fmt = p.get("INFOFORMAT") or "application/json"
        if fmt not in INFO_FORMATS:
            raise OWSException("InvalidParameterValue", f"InfoFormat must be one of {', '.join(INFO_FORMATS)}",
                               "InfoFormat")
        left, bottom, right, top = tms.tms_tile_bounds(_matrix(tms_id), z, x, y)
        res = (right - left) / 256
        cx, cy = left + (i + 0.5) * res, top - (j + 0.5) * res
        with self.engine.connect() as conn:
            info, _ = self._layer(conn, p)
            feats = query_features(conn, self.principal, info.name,
                                   (cx - 3 * res, cy - 3 * res, cx + 3 * res, cy + 3 * res), _srid(tms_id), 10, None)
        return format_feature_info([(info.name, feats)], fmt)

    def get_capabilities(self) -> OWSResponse:
        with self.engine.connect() as conn:
            layers = list_layers(conn, self.principal)
            extents = layer_extents(conn)
        return OWSResponse(capabilities_xml(self.url, layers, extents), "application/xml",
                           headers={"Cache-Control": "no-cache"})


def _pixel(p: Mapping[str, str], key: str) -> int:
    if p.get(key) in (None, ""):
        raise missing(key)
    try:
        return parse_int(key, p[key], minimum=0, maximum=255)
    except InvalidParameter as exc:
        raise OWSException("PointIJOutOfRange", exc.message, key) from None


# --- capabilities -------------------------------------------------------------------------------

def _ows(tag: str) -> str:
    return f"{{{OWS_NS}}}{tag}"


def _w(tag: str) -> str:
    return f"{{{WMTS_NS}}}{tag}"


def _text(parent, tag, value, **attrs):
    el = ET.SubElement(parent, tag, attrs)
    el.text = str(value)
    return el


def _operation(parent, name: str, url: str):
    op = ET.SubElement(parent, _ows("Operation"), name=name)
    http = ET.SubElement(ET.SubElement(op, _ows("DCP")), _ows("HTTP"))
    for href, encoding in ((url + "?", "KVP"), (url + "/1.0.0/", "RESTful")):
        get = ET.SubElement(http, _ows("Get"), {f"{{{XLINK_NS}}}href": href})
        constraint = ET.SubElement(get, _ows("Constraint"), name="GetEncoding")
        _text(ET.SubElement(constraint, _ows("AllowedValues")), _ows("Value"), encoding)


def _tile_matrix_set(parent, tms_id: str):
    matrix_set = _matrix(tms_id)
    el = ET.SubElement(parent, _w("TileMatrixSet"))
    _text(el, _ows("Identifier"), tms_id)
    _text(el, _ows("SupportedCRS"), "urn:ogc:def:crs:EPSG::3857" if tms_id == tms.GOOGLE_ID
          else "urn:ogc:def:crs:EPSG::9210")
    if tms_id == tms.GOOGLE_ID:
        _text(el, _w("WellKnownScaleSet"), "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible")
    for z in range(_maxzoom(tms_id) + 1):
        m = matrix_set.matrix(z)
        tm = ET.SubElement(el, _w("TileMatrix"))
        _text(tm, _ows("Identifier"), z)
        _text(tm, _w("ScaleDenominator"), repr(float(m.scaleDenominator)))
        ox, oy = m.pointOfOrigin
        _text(tm, _w("TopLeftCorner"), f"{ox!r} {oy!r}")
        _text(tm, _w("TileWidth"), m.tileWidth)
        _text(tm, _w("TileHeight"), m.tileHeight)
        _text(tm, _w("MatrixWidth"), m.matrixWidth)
        _text(tm, _w("MatrixHeight"), m.matrixHeight)


def _layer(contents, info: LayerInfo, url: str, bbox):
    el = ET.SubElement(contents, _w("Layer"))
    _text(el, _ows("Title"), info.title)
    _text(el, _ows("Abstract"), info.description or info.title_vi or info.title)
    wgs = ET.SubElement(el, _ows("WGS84BoundingBox"))
    _text(wgs, _ows("LowerCorner"), f"{bbox[0]!r} {bbox[1]!r}")
    _text(wgs, _ows("UpperCorner"), f"{bbox[2]!r} {bbox[3]!r}")
    _text(el, _ows("Identifier"), info.name)
    for i, name in enumerate(style_names(info.name)):
        st = ET.SubElement(el, _w("Style"), isDefault="true" if i == 0 else "false")
        _text(st, _ows("Title"), layer_style(info.name, info.geometry_type, name).title)
        _text(st, _ows("Identifier"), name)
    for fmt in FORMATS:
        _text(el, _w("Format"), fmt)
    for fmt in ("application/json", "text/html", "text/xml"):
        _text(el, _w("InfoFormat"), fmt)
    for tms_id in TILE_MATRIX_SETS:
        _text(ET.SubElement(el, _w("TileMatrixSetLink")), _w("TileMatrixSet"), tms_id)
    for fmt, ext in FORMATS.items():
        ET.SubElement(el, _w("ResourceURL"), format=fmt, resourceType="tile",
                      template=f"{url}/1.0.0/{info.name}/{{Style}}/{{TileMatrixSet}}/{{TileMatrix}}/{{TileRow}}/"
                               f"{{TileCol}}.{ext}")


def capabilities_xml(url: str, layers: list[LayerInfo], extents: dict) -> bytes:
    ET.register_namespace("", WMTS_NS)
    ET.register_namespace("ows", OWS_NS)
    ET.register_namespace("xlink", XLINK_NS)
    root = ET.Element(_w("Capabilities"), version="1.0.0")
    ident = ET.SubElement(root, _ows("ServiceIdentification"))
    _text(ident, _ows("Title"), "Ho Chi Minh City GIS - tile service")
    _text(ident, _ows("ServiceType"), "OGC WMTS")
    _text(ident, _ows("ServiceTypeVersion"), "1.0.0")
    ops = ET.SubElement(root, _ows("OperationsMetadata"))
    for name in ("GetCapabilities", "GetTile", "GetFeatureInfo"):
        _operation(ops, name, url)
    contents = ET.SubElement(root, _w("Contents"))
    for info in layers:
        _layer(contents, info, url, extents.get(info.name, CITY_BBOX))
    for tms_id in TILE_MATRIX_SETS:
        _tile_matrix_set(contents, tms_id)
    ET.SubElement(root, _w("ServiceMetadataURL"), {f"{{{XLINK_NS}}}href": f"{url}/1.0.0/WMTSCapabilities.xml"})
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def rest_params(layer: str, style: str, tms_id: str, z: str, row: str, col: str, ext: str) -> dict[str, str]:
    """KVP parameters of a RESTful GetTile URL."""
    fmt = EXTENSIONS.get(ext.lower())
    if fmt is None:
        raise OWSException("InvalidParameterValue", f"unknown tile extension {ext!r}", "Format")
    return {"SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0", "LAYER": layer, "STYLE": style,
            "TILEMATRIXSET": tms_id, "TILEMATRIX": z, "TILEROW": row, "TILECOL": col, "FORMAT": fmt}



