"""Vector tiles (Mapbox Vector Tiles) from PostGIS ``ST_AsMVT`` and their TileJSON.

Tiles are cut from the indexed ``geom_3857`` column: the filter is ``geom_3857 && tile envelope``
(the envelope comes from ``ST_TileEnvelope`` with a margin for the tile buffer), so the GiST index
is used and the geometry column is never transformed. ``ST_AsMVTGeom`` simplifies the clipped
geometries to the tile's resolution; each zoom has a feature cap; each layer exposes a chosen set
of attributes (never owners' names), and some layers start at a minimum zoom.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Integer, Table, bindparam, func, select
from sqlalchemy.engine import Connection, Engine

from gisserver.errors import NotFound
from gisserver.security import Principal
from layers.catalogue import (
    LayerInfo,
    access_area_clause,
    extent_wgs84,
    get_layer,
    layer_table,
    property_columns,
)
from tiles import tms
from tiles.cache import CachedTile, TileCache, content_digest
from tiles.connections import CompiledQuery, ReadConnections
from tiles.snapshot import CatalogueSnapshot

EXTENT = 4096
BUFFER = 64
MAXZOOM = 22
WORLD = 20037508.342789244
MEDIA_TYPE = "application/vnd.mapbox-vector-tile"

#: attributes each canonical layer puts in its tiles (others are kept out of the public map)
MVT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "parcels": ("ward_code", "sheet_no", "parcel_no", "area", "land_use"),
    "buildings": ("floors", "height", "source"),
    "roads": ("name", "road_class", "row_width"),
    "red_lines": ("decision",),
    "drainage": ("kind", "diameter_mm", "material"),
    "water_supply": ("diameter_mm", "material"),
    "power_lines": ("name", "voltage_kv", "placement"),
    "telecom": ("kind", "operator"),
    "trees": ("species", "height"),
    "parks": ("name", "kind"),
    "water_bodies": ("name", "kind"),
    "underground_works": ("name", "kind"),
    "zoning": ("zone_code", "name", "land_use", "max_floors", "max_height"),
}
#: layers too dense for small scales start at these zooms (empty tiles below)
MIN_ZOOM: dict[str, int] = {"parcels": 12, "buildings": 12, "trees": 14}
#: columns never exported from generic layers
PRIVATE_COLUMNS = frozenset({"owner_name", "password_hash"})


def feature_cap(z: int) -> int:
    """Most features in one tile at zoom ``z``."""
    if z < 10:
        return 5_000
    if z < 14:
        return 20_000
    return 100_000


def tile_columns(info: LayerInfo, table: Table) -> list:
    return _tile_columns(info.name, table)


def _tile_columns(layer_name: str, table: Table) -> list:
    wanted = MVT_ATTRIBUTES.get(layer_name)
    props = property_columns(table)
    if wanted is None:
        return [c for c in props if c.name not in PRIVATE_COLUMNS and not c.primary_key]
    return [table.c[name] for name in wanted if name in table.c]


def _feature_id_column(table: Table):
    col = table.c.get("id")
    if col is not None and col.type.python_type is int:
        return col
    return None


def current_filter(table: Table):
    """Current features only (history rows of versioned layers are not drawn)."""
    if "end_lifespan" in table.c:
        return [table.c.end_lifespan.is_(None)]
    return []


@lru_cache(maxsize=256)
def mvt_statement(table: Table, layer_name: str):
    """The ``SELECT ST_AsMVT(...)`` statement of a layer, built once, with bound parameters
    ``z``, ``x``, ``y`` and ``cap`` (building the expression costs more than running a small tile,
    so it is cached per table)."""
    return _mvt_select(table, layer_name, ())


def _mvt_select(table: Table, layer_name: str, extra_where: tuple):
    z, x, y = (bindparam(n, type_=Integer) for n in ("z", "x", "y"))
    world = func.ST_MakeEnvelope(-WORLD, -WORLD, WORLD, WORLD, 3857)
    envelope = func.ST_TileEnvelope(z, x, y)
    search = func.ST_TileEnvelope(z, x, y, world, BUFFER / EXTENT)
    # no ST_Simplify before it: ST_AsMVTGeom (PostGIS 3) clips first, then drops repeated points and
    # simplifies at the tile's resolution; simplifying whole geometries first cost up to half the
    # query time at z14 for the same features (docs/maps.md)
    geom = table.c.geom_3857
    fid = _feature_id_column(table)
    columns = _tile_columns(layer_name, table)
    if fid is not None and fid not in columns:
        columns = [fid, *columns]
    inner = (
        select(*columns, func.ST_AsMVTGeom(geom, envelope, EXTENT, BUFFER, True).label("mvtgeom"))
        .where(table.c.geom_3857.op("&&")(search), *current_filter(table), *extra_where)
        .limit(bindparam("cap", type_=Integer))
        .subquery("q")
    )
    args = [inner.table_valued(), layer_name, EXTENT, "mvtgeom"]
    if fid is not None:
        args.append(fid.name)
    return select(func.coalesce(func.ST_AsMVT(*args), b"")).where(inner.c.mvtgeom.isnot(None))


def mvt_parameters(z: int, x: int, y: int) -> dict:
    return {"z": z, "x": x, "y": y, "cap": feature_cap(z)}


def mvt_query(info: LayerInfo, table: Table, z: int, x: int, y: int):
    """The statement for one tile with its parameters bound (for inspection and EXPLAIN)."""
    return mvt_statement(table, info.name).params(mvt_parameters(z, x, y))


def build_tile(conn: Connection, info: LayerInfo, z: int, x: int, y: int,
               principal: Principal | None = None) -> bytes:
    """The MVT bytes of one tile (no cache); with an area-limited ``principal``, their area only."""
    if z < MIN_ZOOM.get(info.name, 0):
        return b""
    table = layer_table(conn, info)
    area = access_area_clause(info, principal, table.c.geom_3857, 3857) if principal is not None else None
    stmt = mvt_statement(table, info.name) if area is None else _mvt_select(table, info.name, (area,))
    data = conn.execute(stmt, mvt_parameters(z, x, y)).scalar()
    return bytes(data) if data is not None else b""


@lru_cache(maxsize=256)
def compiled_mvt_query(table: Table, layer_name: str, engine: Engine) -> CompiledQuery:
    """:func:`mvt_statement` compiled once to SQL text for :class:`ReadConnections`."""
    return CompiledQuery.of(mvt_statement(table, layer_name), engine)


def build_tile_direct(db: ReadConnections, engine: Engine, info: LayerInfo, z: int, x: int, y: int) -> bytes:
    """:func:`build_tile` (no area limit) on an autocommit connection: one round trip."""
    if z < MIN_ZOOM.get(info.name, 0):
        return b""
    if info.kind == "canonical":
        table = layer_table(None, info)
    else:
        with engine.connect() as conn:
            table = layer_table(conn, info)
    data = db.scalar(compiled_mvt_query(table, info.name, engine), mvt_parameters(z, x, y))
    return bytes(data) if data is not None else b""


def layer_tile(engine: Engine, cache: TileCache | None, name: str, principal: Principal | None,
               z: int, x: int, y: int, snapshot: CatalogueSnapshot | None = None,
               db: ReadConnections | None = None) -> tuple[LayerInfo, CachedTile]:
    """One vector tile of a layer the principal may read (unreadable = NotFound), via the cache.

    With a ``snapshot`` a cache hit needs no database round trip; with ``db`` a miss needs one.
    Callers who read a restricted layer only through an area-limited grant get tiles filtered to
    their area, never cached.
    """
    tms.check_tile(z, x, y, maxzoom=MAXZOOM)
    if snapshot is not None:
        info = snapshot.layer(name, principal)
    else:
        with engine.connect() as conn:
            info = get_layer(conn, name, principal)
    limited = principal is not None and info.area_limited_for(principal)

    def build() -> bytes:
        if db is not None and not limited:
            return build_tile_direct(db, engine, info, z, x, y)
        with engine.connect() as conn:
            return build_tile(conn, info, z, x, y, principal if limited else None)

    if cache is None or limited:
        data = build()
        return info, CachedTile(data, info.data_version, content_digest(data).hex(), hit=False)
    tile = cache.get_or_build(
        cache_namespace("mvt", info), (change_key(info),), info.data_version, z, x, y, "mvt",
        lambda: tms.lonlat_tile_bounds(z, x, y), build,
    )
    return info, tile


def current_cached_tile(cache: TileCache, snapshot: CatalogueSnapshot, name: str, principal: Principal,
                        z: int, x: int, y: int) -> tuple[LayerInfo, CachedTile] | None:
    """The cached tile if it is current for the layer's version (from the snapshot: no database),
    else None: a miss, an outdated tile, an area-limited caller, an unknown or unreadable layer or
    a bad address are all left to :func:`layer_tile`, which answers them."""
    if not (0 <= z <= MAXZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
        return None
    try:
        info = snapshot.layer(name, principal)
    except NotFound:
        return None
    if info.area_limited_for(principal):
        return None
    tile = cache.read(cache_namespace("mvt", info), z, x, y, "mvt")
    if tile is None or tile.version != info.data_version:
        return None
    return info, tile


def change_key(info: LayerInfo) -> str:
    """Name of a layer's change log: name and catalogue id, so a re-created layer starts afresh."""
    return f"{info.name}.{info.id}"


def cache_namespace(service: str, info: LayerInfo, *parts: str) -> str:
    """Cache folder of a layer; the catalogue id keeps a re-created layer from reusing old tiles."""
    return "/".join((service, f"{info.name}.{info.id}", *parts))


def _field_type(col) -> str:
    try:
        python = col.type.python_type
    except NotImplementedError:
        return "String"
    if python in (int, float):
        return "Number"
    if python is bool:
        return "Boolean"
    return "String"


def tilejson(conn: Connection, name: str, principal: Principal | None, tiles_url: str) -> dict:
    """TileJSON 3.0.0 for a layer's vector tiles."""
    info = get_layer(conn, name, principal)
    table = layer_table(conn, info)
    extent = extent_wgs84(conn, info.name)
    doc = {
        "tilejson": "3.0.0",
        "name": info.name,
        "description": info.title,
        "version": f"1.0.{info.data_version}",
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": MIN_ZOOM.get(info.name, 0),
        "maxzoom": MAXZOOM,
        "vector_layers": [{
            "id": info.name,
            "description": info.title,
            "minzoom": MIN_ZOOM.get(info.name, 0),
            "maxzoom": MAXZOOM,
            "fields": {c.name: _field_type(c) for c in tile_columns(info, table)},
        }],
    }
    if extent:
        doc["bounds"] = list(extent)
        doc["center"] = [(extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2, 14]
    return doc
