"""Map-serving endpoints: vector and raster tiles, TileJSON, styles, legends, WMS and WMTS.

Each view parses its parameters, calls one function of ``tiles/`` and serialises the result.
REST endpoints answer errors as problem+json; WMS/WMTS answer ServiceExceptionReports (the
services themselves catch the project's errors and render them in the requested version).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from gisserver.api import services
from gisserver.errors import GISError
from gisserver.params import parse_int
from gisserver.web_auth import principal
from tiles.cache import CachedTile, TileCache

bp = Blueprint("maps", __name__)


@bp.record_once
def _record_layer_changes(state) -> None:
    """Edits committed by this app record their change areas, so only the tiles they touch are rebuilt."""
    from tiles.cache import record_changes_of

    gis = state.app.extensions["gisserver"]
    record_changes_of(gis.engine, gis.settings.var_dir)


#: seconds clients and proxies may reuse a tile before revalidating it with its ETag
TILE_MAX_AGE = 60


#: seconds a worker may serve tiles from its copy of the layer catalogue (see tiles.snapshot)
CATALOGUE_TTL = 1.0


def catalogue_snapshot(app=None):
    from tiles.snapshot import CatalogueSnapshot

    ext = (app or current_app).extensions
    snap = ext.get("gisserver.tiles_catalogue")
    if snap is None:
        snap = ext["gisserver.tiles_catalogue"] = CatalogueSnapshot(ext["gisserver"].engine, CATALOGUE_TTL)
    return snap


def tile_cache(app=None) -> TileCache:
    ext = (app or current_app).extensions
    cache = ext.get("gisserver.tiles_cache")
    if cache is None:
        cache = ext["gisserver.tiles_cache"] = TileCache(ext["gisserver"].settings.var_dir / "tiles")
    return cache


def read_connections(app=None):
    """Autocommit connections for tile queries (see tiles.connections), one set per app."""
    from tiles.connections import ReadConnections

    ext = (app or current_app).extensions
    db = ext.get("gisserver.tiles_db")
    if db is None:
        db = ext["gisserver.tiles_db"] = ReadConnections(ext["gisserver"].engine)
    return db


def _base_url() -> str:
    return (services().settings.public_url or request.host_url).rstrip("/")


def _zxy(z: str, x: str, y: str) -> tuple[int, int, int]:
    return (parse_int("z", z, minimum=0), parse_int("x", x, minimum=0), parse_int("y", y, minimum=0))


def tile_headers(tile: CachedTile, mimetype: str, public: bool) -> dict[str, str]:
    """ETag and caching headers of a tile (the same from the Flask view and the hit path)."""
    headers = {
        "Content-Type": mimetype,
        "ETag": f'"{tile.etag}"',
        "Cache-Control": f"{'public' if public else 'private'}, max-age={TILE_MAX_AGE}",
        "X-Tile-Cache": "hit" if tile.hit else "miss",
    }
    if public:  # public map data may be used by web maps of other sites
        headers["Access-Control-Allow-Origin"] = "*"
        headers["Vary"] = "Cookie"  # what Flask's session handling adds to every answer
    else:
        headers["Vary"] = "Authorization, Cookie"
    return headers


def tile_response(tile: CachedTile, mimetype: str, public: bool) -> Response:
    """The tile with its ETag and caching headers, or 304 when the client has this version."""
    headers = tile_headers(tile, mimetype, public)
    if tile.etag in request.if_none_match:
        del headers["Content-Type"]
        return Response(status=304, headers=headers)
    return Response(tile.data, headers=headers)


def fast_paths(app) -> dict:
    """WMS GetMap answered by :class:`gisserver.fastpath.FastPath` before Flask."""
    return {"/wms": lambda args, caller: wms_getmap_answer(app, args, caller)}


def wms_getmap_answer(app, args, caller) -> tuple[bytes, list[tuple[str, str]]] | None:
    """A successful GetMap image with the headers the Flask view gives it; None for any other
    request or any failure (Flask then answers it, with the ServiceExceptionReport)."""
    from tiles.wms import WMSService

    request_name = next((v for k, v in args.items() if k.upper() == "REQUEST"), "")
    if request_name.lower() not in ("getmap", "map"):
        return None
    gis = app.extensions["gisserver"]
    result = WMSService(gis.engine, caller, "", catalogue_snapshot(app)).handle(args)
    if result.status != 200:
        return None
    return result.body, [("Content-Type", result.content_type), *result.headers.items(), ("Vary", "Cookie")]


def fast_prefixes(app) -> dict:
    """Vector tiles answered by :class:`gisserver.fastpath.FastPath` before Flask."""
    return {"/tiles/": lambda environ, caller: tile_hit(app, environ, caller)}


def tile_hit(app, environ: dict, caller) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """A vector tile answered before Flask: read from the cache when it is current in this
    worker's catalogue snapshot, else built and stored (one query on an autocommit connection),
    with the headers of :func:`tile_headers` (200, or 304 for a matching ``If-None-Match``).
    None for an area-limited caller; a bad address or an unknown or unreadable layer raise the
    project's errors. Either way the Flask view then answers, as always.

    A hit is one file read; Flask's request machinery (context, routing, session, response
    object) cost several times more CPU than that (``bench/tiles_cache.py``), and a sixth of a
    small tile's build (``bench/tiles_mvt.py``).
    """
    from tiles import mvt

    parts = environ.get("PATH_INFO", "")[len("/tiles/"):].split("/")
    if len(parts) != 4:
        return None
    layer, z, x, name = parts
    y, _, ext = name.partition(".")
    if ext not in ("mvt", "pbf") or not all(v.isascii() and v.isdigit() for v in (z, x, y)):
        return None
    cache, snapshot = tile_cache(app), catalogue_snapshot(app)
    found = mvt.current_cached_tile(cache, snapshot, layer, caller, int(z), int(x), int(y))
    if found is None:
        info = snapshot.layer(layer, caller)  # unknown or unreadable: NotFound, answered by Flask
        if info.area_limited_for(caller):
            return None
        try:
            found = mvt.layer_tile(app.extensions["gisserver"].engine, cache, layer, caller, int(z), int(x), int(y),
                                   snapshot, read_connections(app))
        except GISError:
            raise
        except Exception:  # e.g. the database is down: Flask answers (and logs) it with the usual problem
            return None
    info, tile = found
    headers = tile_headers(tile, mvt.MEDIA_TYPE, info.access_level == "public")
    if _etag_matches(environ.get("HTTP_IF_NONE_MATCH"), tile.etag):
        del headers["Content-Type"]
        return "304 NOT MODIFIED", list(headers.items()), b""
    headers["Content-Length"] = str(len(tile.data))
    return "200 OK", list(headers.items()), tile.data


def _etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` holds this (strong or weak) ETag or ``*``."""
    if not header:
        return False
    for candidate in header.split(","):
        value = candidate.strip()
        if value.startswith("W/"):
            value = value[2:]
        if value == "*" or value.strip('"') == etag:
            return True
    return False


# --- vector tiles ----------------------------------------------------------------------------

@bp.get("/tiles/<layer>/<z>/<x>/<y>.mvt")
@bp.get("/tiles/<layer>/<z>/<x>/<y>.pbf")
def vector_tile(layer: str, z: str, x: str, y: str):
    from tiles import mvt

    z_, x_, y_ = _zxy(z, x, y)
    info, tile = mvt.layer_tile(services().engine, tile_cache(), layer, principal(), z_, x_, y_,
                                catalogue_snapshot(), read_connections())
    return tile_response(tile, mvt.MEDIA_TYPE, info.access_level == "public")


@bp.get("/tiles/<layer>.json")
def tilejson(layer: str):
    from tiles import mvt

    url = f"{_base_url()}/tiles/{layer}/{{z}}/{{x}}/{{y}}.mvt"
    with services().engine.connect() as conn:
        return mvt.tilejson(conn, layer, principal(), url)


@bp.get("/styles/<layer>.json")
def maplibre_style(layer: str):
    from layers.catalogue import get_layer
    from tiles import styles

    with services().engine.connect() as conn:
        info = get_layer(conn, layer, principal())
    return styles.maplibre_style(info.name, info.geometry_type, f"{_base_url()}/tiles/{info.name}.json",
                                 info.title, request.args.get("style") or None,
                                 glyphs_url=request.args.get("glyphs") or None)


# --- OGC services ----------------------------------------------------------------------------

def _ows_response(result) -> Response:
    resp = Response(result.body, status=result.status, content_type=result.content_type)
    resp.headers.update(result.headers)
    return resp


@bp.get("/wms")
def wms():
    from tiles.wms import WMSService

    service = WMSService(services().engine, principal(), f"{_base_url()}/wms", catalogue_snapshot())
    return _ows_response(service.handle(request.args))


def _wmts_response(result) -> Response:
    tile = getattr(result, "tile", None)
    if tile is not None:
        return tile_response(tile, result.content_type, result.public)
    return _ows_response(result)


def _wmts_service():
    from tiles.wmts import WMTSService

    return WMTSService(services().engine, principal(), f"{_base_url()}/wmts", tile_cache(), catalogue_snapshot())


@bp.get("/wmts")
def wmts_kvp():
    return _wmts_response(_wmts_service().handle(request.args))


@bp.get("/wmts/1.0.0/WMTSCapabilities.xml")
def wmts_capabilities():
    return _wmts_response(_wmts_service().handle({"SERVICE": "WMTS", "REQUEST": "GetCapabilities"}))


@bp.get("/wmts/1.0.0/<layer>/<style>/<tms_id>/<z>/<row>/<col>.<ext>")
def wmts_rest_tile(layer: str, style: str, tms_id: str, z: str, row: str, col: str, ext: str):
    from tiles.exceptions import OWSException, ows_exception_report
    from tiles.wms import OWSResponse
    from tiles.wmts import rest_params

    try:
        params = rest_params(layer, style, tms_id, z, row, col, ext)
    except OWSException as exc:
        body, ctype = ows_exception_report(exc)
        return _ows_response(OWSResponse(body, ctype, exc.status))
    return _wmts_response(_wmts_service().handle(params))


# --- raster tiles and legends ----------------------------------------------------------------

@bp.get("/api/rasters")
def rasters():
    """Raster products the caller may read (DTM, DSM, nDSM, hillshade, flood depth ...)."""
    from tiles import xyz

    with services().engine.connect() as conn:
        items = xyz.list_rasters(conn, principal())
    for item in items:
        item["tiles"] = f"{_base_url()}/raster/{item['name']}/{{z}}/{{x}}/{{y}}.png"
    return {"rasters": items}


@bp.get("/raster/<name>/<z>/<x>/<y>.<ext>")
def raster_tile(name: str, z: str, x: str, y: str, ext: str):
    from tiles import xyz

    z_, x_, y_ = _zxy(z, x, y)
    style = request.args.get("style") or "default"
    with services().engine.connect() as conn:
        info, tile, mimetype = xyz.raster_tile(conn, tile_cache(), services().settings.raster_dir, name,
                                               principal(), z_, x_, y_, ext.lower(), style)
    return tile_response(tile, mimetype, info.access_level == "public")


@bp.get("/legend/raster/<name>.json")
def raster_legend(name: str):
    from tiles import xyz

    with services().engine.connect() as conn:
        return xyz.legend(conn, services().settings.raster_dir, name, principal(),
                          request.args.get("style") or "default")


@bp.get("/legend/raster/<name>.png")
def raster_legend_image(name: str):
    from tiles import xyz

    with services().engine.connect() as conn:
        png = xyz.legend_image(conn, services().settings.raster_dir, name, principal(),
                               request.args.get("style") or "default")
    return Response(png, mimetype="image/png")


@bp.get("/legend/<layer>.png")
def layer_legend(layer: str):
    from tiles.wms import legend_graphic

    with services().engine.connect() as conn:
        png = legend_graphic(conn, principal(), layer, request.args.get("style") or None)
    return Response(png, mimetype="image/png")
