"""Map-serving endpoints: vector and raster tiles, TileJSON, styles, legends, WMS and WMTS.

Each view parses its parameters, calls one function of ``tiles/`` and serialises the result.
REST endpoints answer errors as problem+json; WMS/WMTS answer ServiceExceptionReports (the
services themselves catch the project's errors and render them in the requested version).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from gisserver.api import services
from gisserver.params import parse_int
from gisserver.web_auth import principal
from tiles.cache import CachedTile, TileCache

bp = Blueprint("maps", __name__)

#: seconds clients and proxies may reuse a tile before revalidating it with its ETag
TILE_MAX_AGE = 60


#: seconds a worker may serve tiles from its copy of the layer catalogue (see tiles.snapshot)
CATALOGUE_TTL = 1.0


def catalogue_snapshot():
    from tiles.snapshot import CatalogueSnapshot

    ext = current_app.extensions
    snap = ext.get("gisserver.tiles_catalogue")
    if snap is None:
        snap = ext["gisserver.tiles_catalogue"] = CatalogueSnapshot(services().engine, CATALOGUE_TTL)
    return snap


def tile_cache() -> TileCache:
    ext = current_app.extensions
    cache = ext.get("gisserver.tiles_cache")
    if cache is None:
        cache = ext["gisserver.tiles_cache"] = TileCache(services().settings.var_dir / "tiles")
    return cache


def _base_url() -> str:
    return (services().settings.public_url or request.host_url).rstrip("/")


def _zxy(z: str, x: str, y: str) -> tuple[int, int, int]:
    return (parse_int("z", z, minimum=0), parse_int("x", x, minimum=0), parse_int("y", y, minimum=0))


def tile_response(tile: CachedTile, mimetype: str, public: bool) -> Response:
    """The tile with its ETag and caching headers, or 304 when the client has this version."""
    etag = f'"{tile.etag}"'
    headers = {
        "ETag": etag,
        "Cache-Control": f"{'public' if public else 'private'}, max-age={TILE_MAX_AGE}",
        "X-Tile-Cache": "hit" if tile.hit else "miss",
    }
    if public:  # public map data may be used by web maps of other sites
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Vary"] = "Authorization, Cookie"
    if tile.etag in request.if_none_match:
        return Response(status=304, headers=headers)
    return Response(tile.data, mimetype=mimetype, headers=headers)


# --- vector tiles ----------------------------------------------------------------------------

@bp.get("/tiles/<layer>/<z>/<x>/<y>.mvt")
@bp.get("/tiles/<layer>/<z>/<x>/<y>.pbf")
def vector_tile(layer: str, z: str, x: str, y: str):
    from tiles import mvt

    z_, x_, y_ = _zxy(z, x, y)
    info, tile = mvt.layer_tile(services().engine, tile_cache(), layer, principal(), z_, x_, y_,
                                catalogue_snapshot())
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
