"""Spatial queries on catalogue layers: plain arguments in, plain results out (no Flask).

Every query works on the stored geometry in its storage CRS (the city CRS for canonical layers),
so the GiST index on ``geom`` is used: query geometries are transformed to the storage CRS, never
the other way round. Distances are metres in the city CRS. Output geometries are transformed to
the requested CRS only for the rows returned.

Identify is the hot path: its statement is compiled once per (layer, data version, output CRS)
and carries its own catalogue check (data version and access level of the layer row, joined in
the same statement), so a request costs one pooled connection and one round trip.
"""

from __future__ import annotations

import json
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from uuid import UUID

import psycopg2
from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    and_,
    bindparam,
    create_engine,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from gisserver import schema
from gisserver.crs import CITY_SRID, crs_uri, is_crs84, pyproj_crs, resolve_srid
from gisserver.errors import InvalidGeometry, InvalidInput, InvalidParameter, NotFound
from gisserver.security import Principal
from layers import cql
from layers.catalogue import (
    LayerInfo,
    access_area_clause,
    get_layer,
    grants_column,
    layer_table,
    list_layers,
    personal_columns,
    property_columns,
    readable_from_row,
)

CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
MAX_IDENTIFY_TOLERANCE = 1000.0
MAX_DISTANCE = 50_000.0
MAX_NEAREST = 1000


# --- coordinate reference systems ----------------------------------------------------------------

@dataclass(frozen=True)
class CRSRef:
    """A CRS as clients name it: storage SRID plus the axis order its definition demands."""

    srid: int
    latlon: bool = False  # northing first (EPSG:4326 as opposed to CRS84)

    @property
    def uri(self) -> str:
        return CRS84_URI if self.srid == 4326 and not self.latlon else crs_uri(self.srid)

    @property
    def geographic(self) -> bool:
        return _is_geographic(self.srid)

    @property
    def decimals(self) -> int:
        # ~1 mm either way: 8 decimals of a degree, 4 of a metre
        return 8 if self.geographic else 4


CRS84 = CRSRef(4326)
CITY = CRSRef(CITY_SRID)


def crs_ref(value: str | int | None, default: CRSRef = CRS84) -> CRSRef:
    """Parse a CRS name (EPSG code, URI, CURIE, CRS84); raises UnknownCRS."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, str) and is_crs84(value):
        return CRS84
    srid = resolve_srid(value)
    return CRSRef(srid, _northing_first(srid))


@lru_cache(maxsize=128)
def _northing_first(srid: int) -> bool:
    axes = pyproj_crs(srid).axis_info
    return bool(axes) and axes[0].direction.lower() in ("north", "south")


@lru_cache(maxsize=128)
def _is_geographic(srid: int) -> bool:
    return pyproj_crs(srid).is_geographic


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    crs: CRSRef = CRS84

    def xy(self) -> tuple[float, float]:
        """Easting/longitude first, whatever the CRS's axis order."""
        return (self.y, self.x) if self.crs.latlon else (self.x, self.y)


@dataclass(frozen=True)
class Box:
    minx: float
    miny: float
    maxx: float
    maxy: float
    crs: CRSRef = CRS84

    def xy(self) -> tuple[float, float, float, float]:
        if self.crs.latlon:
            return self.miny, self.minx, self.maxy, self.maxx
        return self.minx, self.miny, self.maxx, self.maxy


# --- layers as query sources ---------------------------------------------------------------------

@dataclass(frozen=True)
class LayerSource:
    """A catalogue layer ready to be queried: table, geometry, id and property columns."""

    info: LayerInfo
    table: Table
    geom: ColumnElement
    id_column: ColumnElement
    columns: dict = field(default_factory=dict)  # property name -> Column
    begin: ColumnElement | None = None  # lifespan columns (versioned registers)
    end: ColumnElement | None = None
    # the caller reads this layer through an area-limited grant: keep features in the area
    restrict: ColumnElement | None = None

    @property
    def srid(self) -> int:
        return self.info.srid

    def filter_context(self, crs: CRSRef = CRS84) -> cql.FilterContext:
        return cql.FilterContext(self.columns, self.geom, self.srid, crs.srid, crs.latlon)


_sources: dict[tuple, LayerSource] = {}
_sources_lock = threading.Lock()


def open_layer(conn: Connection, name: str, principal: Principal | None) -> LayerSource:
    """The layer as a query source; NotFound when missing or not readable by ``principal``."""
    info = get_layer(conn, name, principal)
    source = source_for(conn, info)
    if principal is not None and info.area_limited_for(principal):
        source = replace(source, restrict=access_area_clause(info, principal, source.geom))
    private = personal_columns(info, principal)
    if private:
        source = replace(source, columns={k: c for k, c in source.columns.items() if k not in private})
    return source


def source_for(conn: Connection, info: LayerInfo) -> LayerSource:
    key = (conn.engine.url, info.id, info.kind, info.table_schema, info.table_name, info.data_version)
    with _sources_lock:
        cached = _sources.get(key)
    if cached is not None and cached.info == info:
        return cached
    table = layer_table(conn, info)
    if "geom" not in table.c:
        raise NotFound(f"layer {info.name!r} has no geometry column")
    columns = {c.name: c for c in property_columns(table) if _queryable_type(c.type) is not None}
    pk = list(table.primary_key.columns)
    id_column = pk[0] if len(pk) == 1 else next(
        (table.c[n] for n in ("id", "fid", "ogc_fid") if n in table.c), None
    )
    if id_column is None:
        raise NotFound(f"layer {info.name!r} has no feature id column")
    source = LayerSource(
        info=info, table=table, geom=table.c.geom, id_column=id_column, columns=columns,
        begin=table.c.get("begin_lifespan"), end=table.c.get("end_lifespan"),
    )
    with _sources_lock:
        if len(_sources) > 1000:
            _sources.clear()
        _sources[key] = source
    return source


def _queryable_type(sqltype) -> str | None:
    if isinstance(sqltype, Boolean):
        return "boolean"
    if isinstance(sqltype, Integer):
        return "integer"
    if isinstance(sqltype, Float | Numeric):
        return "number"
    if isinstance(sqltype, String | Text):
        return "string"
    if isinstance(sqltype, DateTime):
        return "date-time"
    if isinstance(sqltype, Date):
        return "date"
    return None


def queryables(source: LayerSource) -> dict:
    """JSON Schema of the properties a filter may use (OGC API Features Part 3)."""
    props = {
        "geometry": {
            "title": "geometry",
            "format": f"geometry-{source.info.geometry_type.lower()}",
            "x-ogc-role": "primary-geometry",
        }
    }
    for name, column in source.columns.items():
        kind = _queryable_type(column.type)
        schema_ = {"title": name}
        if kind in ("date-time", "date"):
            schema_.update(type="string", format=kind)
        else:
            schema_["type"] = kind
        if column is source.id_column:
            schema_["x-ogc-role"] = "id"
        props[name] = schema_
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "title": source.info.title,
        "properties": props,
        "additionalProperties": False,
    }


def readable_layers(conn: Connection, principal: Principal | None) -> list[tuple[LayerInfo, tuple | None]]:
    """Layers the principal may read, each with its CRS84 extent (one query)."""
    infos = list_layers(conn, principal)
    extents = _extents(conn)
    return [(info, extents.get(info.name)) for info in infos]


def readable_layer(conn: Connection, name: str, principal: Principal | None) -> tuple[LayerInfo, tuple | None]:
    info = get_layer(conn, name, principal)
    return info, _extents(conn, name).get(name)


def _extents(conn: Connection, name: str | None = None) -> dict[str, tuple]:
    e = schema.layer.c.extent
    stmt = select(schema.layer.c.name, func.ST_XMin(e), func.ST_YMin(e), func.ST_XMax(e), func.ST_YMax(e)).where(
        e.is_not(None))
    if name is not None:
        stmt = stmt.where(schema.layer.c.name == bindparam(None, name, type_=Text()))
    return {row[0]: tuple(float(v) for v in row[1:]) for row in conn.execute(stmt)}


# --- geometry expressions ------------------------------------------------------------------------

def _srid_param(srid: int):
    return bindparam(None, srid, type_=Integer())


def _to_storage(geom, srid: int, storage_srid: int):
    if srid == storage_srid:
        return geom
    return func.ST_Transform(geom, _srid_param(storage_srid))


def point_expr(point: Point, storage_srid: int):
    x, y = point.xy()
    made = func.ST_SetSRID(
        func.ST_MakePoint(bindparam(None, x, type_=Float()), bindparam(None, y, type_=Float())),
        _srid_param(point.crs.srid),
    )
    return _to_storage(made, point.crs.srid, storage_srid)


def box_expr(box: Box, storage_srid: int):
    minx, miny, maxx, maxy = box.xy()
    if box.crs.srid == 4326 and minx > maxx:
        raise InvalidParameter("bbox", "boxes crossing the antimeridian are not supported here")
    env = func.ST_MakeEnvelope(*[bindparam(None, v, type_=Float()) for v in (minx, miny, maxx, maxy)],
                               _srid_param(box.crs.srid))
    if box.crs.srid != storage_srid:
        # densify so the transformed envelope follows the curved edges closely
        env = func.ST_Transform(func.ST_Segmentize(env, _segment_length(box)), _srid_param(storage_srid))
    return env


def _segment_length(box: Box) -> float:
    minx, miny, maxx, maxy = box.xy()
    return max(maxx - minx, maxy - miny, 1e-9) / 16


def geojson_expr(geometry: dict, crs: CRSRef, storage_srid: int):
    """A GeoJSON geometry (dict) as a storage-CRS SQL expression; bad input is InvalidGeometry."""
    if not isinstance(geometry, dict):
        raise InvalidGeometry("expected a GeoJSON geometry object")
    if geometry.get("type") == "Feature":
        geometry = geometry.get("geometry") or {}
    if geometry.get("type") not in (
        "Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection",
    ):
        raise InvalidGeometry("expected a GeoJSON geometry (Point, LineString, Polygon, Multi*, ...)")
    try:
        import shapely.geometry

        shape = shapely.geometry.shape(geometry)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise InvalidGeometry(f"malformed GeoJSON geometry: {exc}") from None
    if shape.is_empty:
        raise InvalidGeometry("the geometry is empty")
    if crs.latlon:
        import shapely.ops

        shape = shapely.ops.transform(lambda x, y, *z: (y, x), shape)
    geom = func.ST_GeomFromWKB(bindparam(None, shape.wkb, type_=LargeBinary()), _srid_param(crs.srid))
    return _to_storage(geom, crs.srid, storage_srid)


def output_geometry(source_geom, storage_srid: int, out: CRSRef):
    geom = source_geom if out.srid == storage_srid else func.ST_Transform(source_geom, _srid_param(out.srid))
    if out.latlon:
        geom = func.ST_FlipCoordinates(geom)
    # options 0: no bbox and no "crs" member (the CRS is in the Content-Crs header)
    return func.ST_AsGeoJSON(geom, bindparam(None, out.decimals, type_=Integer()), bindparam(None, 0, type_=Integer()),
                             type_=Text())


# --- database errors caused by the input ----------------------------------------------------------

@contextmanager
def input_errors():
    """Turn database errors that the request's values caused into 400s (never a 500).

    Data exceptions (SQLSTATE class 22: division by zero, numbers out of range ...) and PostGIS
    failing to transform coordinates outside a CRS's domain are the caller's input, not a bug.
    """
    try:
        yield
    except (DBAPIError, psycopg2.Error) as exc:
        orig = getattr(exc, "orig", exc)
        text_ = (str(orig).strip().splitlines() or [""])[0]
        if isinstance(orig, psycopg2.DataError):
            raise InvalidInput(f"the query cannot be evaluated with these values: {text_}") from None
        if isinstance(orig, psycopg2.InternalError) and text_.startswith("transform:"):
            raise InvalidInput(f"coordinates outside the area of their CRS ({text_})") from None
        raise


# --- searches ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Search:
    """What to select from a layer. All fields optional; values already parsed and typed."""

    bbox: Box | None = None
    intersects: dict | None = None  # GeoJSON geometry
    intersects_crs: CRSRef = CRS84
    near: Point | None = None
    distance: float | None = None  # metres from ``near`` (within-distance search)
    filter: object | None = None  # pygeofilter AST (layers.cql.parse_filter)
    filter_crs: CRSRef = CRS84
    properties: tuple = ()  # ((name, raw string value), ...): equality filters
    at: datetime | tuple | None = None  # instant or (start, end) for versioned layers
    all_versions: bool = False
    limit: int = 100
    offset: int = 0
    out: CRSRef = CRS84


@dataclass
class FeaturePage:
    features: list
    number_matched: int
    number_returned: int
    limit: int
    offset: int
    crs: CRSRef

    @property
    def has_next(self) -> bool:
        return self.offset + self.number_returned < self.number_matched

    @property
    def has_prev(self) -> bool:
        return self.offset > 0


def where_clauses(source: LayerSource, search: Search) -> list[ColumnElement]:
    clauses: list[ColumnElement] = []
    if search.bbox is not None:
        clauses.append(func.ST_Intersects(source.geom, box_expr(search.bbox, source.srid)))
    if search.intersects is not None:
        clauses.append(func.ST_Intersects(
            source.geom, geojson_expr(search.intersects, search.intersects_crs, source.srid)))
    if search.near is not None and search.distance is not None:
        if not 0 <= search.distance <= MAX_DISTANCE:
            raise InvalidParameter("distance", f"must be between 0 and {MAX_DISTANCE:g} metres")
        clauses.append(func.ST_DWithin(source.geom, point_expr(search.near, source.srid), search.distance))
    if search.filter is not None:
        clauses.append(cql.to_sql(search.filter, source.filter_context(search.filter_crs)))
    for name, raw in search.properties:
        column = source.columns.get(name)
        if column is None:
            raise InvalidParameter(name, "not a property of this collection")
        clauses.append(column == bindparam(None, parse_property_value(name, column, raw), type_=column.type))
    clauses.extend(_lifespan_clauses(source, search))
    if source.restrict is not None:
        clauses.append(source.restrict)
    return clauses


def _lifespan_clauses(source: LayerSource, search: Search) -> list[ColumnElement]:
    if source.end is None or source.begin is None or search.all_versions:
        return []
    if search.at is None:
        return [source.end.is_(None)]
    start, end = search.at if isinstance(search.at, tuple) else (search.at, search.at)
    clauses = []
    if end is not None:
        clauses.append(source.begin <= bindparam(None, end, type_=DateTime(timezone=True)))
    if start is not None:
        clauses.append(or_(source.end.is_(None), source.end > bindparam(None, start, type_=DateTime(timezone=True))))
    return clauses


def parse_property_value(name: str, column, raw: str):
    """A query-parameter string as a value of the column's type (400 when it is not one)."""
    kind = _queryable_type(column.type)
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean":
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return raw.lower() == "true"
        if kind == "date-time":
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if kind == "date":
            return date.fromisoformat(raw)
    except ValueError:
        raise InvalidParameter(name, f"{raw!r} is not a valid {kind}") from None
    return raw


def _feature_select(source: LayerSource, out: CRSRef, *extra):
    return select(
        source.id_column.label("__id"),
        *source.columns.values(),
        output_geometry(source.geom, source.srid, out).label("__geometry"),
        *extra,
    )


def search_features(conn: Connection, source: LayerSource, search: Search) -> FeaturePage:
    """Features of a layer matching ``search``, one page, with the total count."""
    clauses = where_clauses(source, search)
    where = and_(true(), *clauses)
    with input_errors():
        matched = conn.execute(select(func.count()).select_from(source.table).where(where)).scalar_one()
    stmt = _feature_select(source, search.out).where(where)
    if search.near is not None:
        near = point_expr(search.near, source.srid)
        stmt = stmt.add_columns(func.ST_Distance(source.geom, near).label("__distance"))
        stmt = stmt.order_by(source.geom.op("<->")(near), source.id_column)
    else:
        stmt = stmt.order_by(source.id_column)
    stmt = stmt.limit(search.limit).offset(search.offset)
    with input_errors():
        features = [feature_from_row(source, row) for row in conn.execute(stmt).mappings()]
    return FeaturePage(features, matched, len(features), search.limit, search.offset, search.out)


def nearest(conn: Connection, source: LayerSource, point: Point, k: int = 5,
            max_distance: float | None = None, out: CRSRef = CRS84, flt=None) -> list[dict]:
    """The ``k`` features nearest to ``point`` (KNN on the GiST index), with distances in metres."""
    if not 1 <= k <= MAX_NEAREST:
        raise InvalidParameter("k", f"must be between 1 and {MAX_NEAREST}")
    search = Search(near=point, distance=max_distance, filter=flt, out=out)
    near = point_expr(point, source.srid)
    stmt = (
        _feature_select(source, out, func.ST_Distance(source.geom, near).label("__distance"))
        .where(and_(true(), *where_clauses(source, search)))
        .order_by(source.geom.op("<->")(near))
        .limit(k)
    )
    with input_errors():
        return [feature_from_row(source, row) for row in conn.execute(stmt).mappings()]


def get_feature(conn: Connection, source: LayerSource, fid: str, out: CRSRef = CRS84) -> dict:
    """One feature by id (any version of a versioned layer); NotFound otherwise."""
    try:
        value = parse_property_value("featureId", source.id_column, fid)
    except InvalidParameter:
        raise NotFound(f"no feature {fid!r} in {source.info.name!r}") from None
    stmt = _feature_select(source, out).where(source.id_column == bindparam(None, value, type_=source.id_column.type))
    if source.restrict is not None:
        stmt = stmt.where(source.restrict)
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFound(f"no feature {fid!r} in {source.info.name!r}")
    return feature_from_row(source, row)


def parcel_lookup(conn: Connection, ward_code: str, sheet_no: int, parcel_no: int, principal: Principal | None,
                  out: CRSRef = CRS84) -> dict:
    """The current parcel numbered (ward, map sheet, parcel number); NotFound otherwise."""
    source = open_layer(conn, "parcels", principal)
    p = schema.parcel
    stmt = _feature_select(source, out).where(
        p.c.ward_code == bindparam(None, ward_code, type_=p.c.ward_code.type),
        p.c.sheet_no == bindparam(None, sheet_no, type_=Integer()),
        p.c.parcel_no == bindparam(None, parcel_no, type_=Integer()),
        p.c.end_lifespan.is_(None),
    )
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFound(f"no current parcel {parcel_no} on sheet {sheet_no} in ward {ward_code!r}")
    return feature_from_row(source, row)


def feature_from_row(source: LayerSource, row) -> dict:
    props = {name: _json_value(row[name]) for name in source.columns}
    if "__distance" in row:
        props["distance_m"] = round(float(row["__distance"]), 3)
    geometry = row["__geometry"]
    return {
        "type": "Feature",
        "id": _json_value(row["__id"]),
        "geometry": json.loads(geometry) if geometry is not None else None,
        "properties": props,
    }


_PLAIN = (str, int, float, bool, type(None))


def _json_value(value):
    if type(value) in _PLAIN:  # the common case, without the isinstance chain
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


# --- identify: the lean path ---------------------------------------------------------------------

@dataclass(frozen=True)
class _IdentifyPlan:
    source: LayerSource
    sql: str
    defaults: dict  # values of the statement's constant parameters
    properties: tuple[str, ...]  # the property columns it selects
    # the same statement for asyncpg (the ASGI front, layers/identify_async.py): $n placeholders
    # with casts, and the parameter names in $n order
    async_sql: str
    async_order: tuple[str, ...]


_plans: dict[tuple, _IdentifyPlan] = {}
_plans_lock = threading.Lock()


def identify_plan(engine: Engine, name: str, out: CRSRef = CRS84, hidden: frozenset[str] = frozenset(), *,
                  refresh: bool = False) -> _IdentifyPlan:
    """The compiled identify statement for a layer (cached per engine, layer data version, output
    CRS and the personal columns ``hidden`` from the caller)."""
    key = (engine, name, out, hidden)  # the engine by identity: hashing its URL renders it as a string
    if not refresh:
        with _plans_lock:
            plan = _plans.get(key)
        if plan is not None:
            return plan
    with engine.connect() as conn:
        source = source_for(conn, get_layer(conn, name))
        plan = _compile_identify(conn, source, out, hidden)
    with _plans_lock:
        if len(_plans) > 1000:
            _plans.clear()
        _plans[key] = plan
    return plan


def _compile_identify(conn: Connection, source: LayerSource, out: CRSRef, hidden: frozenset[str]) -> _IdentifyPlan:
    """One statement per layer: the catalogue row (version, access, grants) left-joined to the
    nearest features, without the ``hidden`` columns; the geometry as GeoJSON text."""
    x, y = bindparam("x", type_=Float()), bindparam("y", type_=Float())
    srid = bindparam("srid", type_=Integer())
    pt = func.ST_Transform(func.ST_SetSRID(func.ST_MakePoint(x, y), srid), _srid_param(source.srid))
    conditions = [func.ST_DWithin(source.geom, pt, bindparam("tolerance", type_=Float()))]
    conditions.extend(_lifespan_clauses(source, Search()))
    shown = [column.label(key) for key, column in source.columns.items() if key not in hidden]
    inner = (
        select(source.id_column.label("__id"), *shown,
               output_geometry(source.geom, source.srid, out).label("__geometry"),
               func.ST_Distance(source.geom, pt).label("__distance"))
        .where(*conditions)
        .order_by(source.geom.op("<->")(pt))
        .limit(bindparam("limit", type_=Integer()))
        .lateral("f")
    )
    lay = schema.layer
    stmt = (
        select(lay.c.data_version.label("__layer_version"), lay.c.access_level.label("__layer_access"),
               lay.c.owner_agency_id.label("__layer_owner"), lay.c.table_name.label("__layer_table"),
               grants_column().label("__layer_grants"), *inner.c)
        .select_from(lay.outerjoin(inner, true()))
        .where(lay.c.name == bindparam("layer", type_=Text()))
    )
    compiled = stmt.compile(dialect=conn.dialect)
    defaults = {k: v for k, v in compiled.params.items() if v is not None}
    for_asyncpg = stmt.compile(dialect=_asyncpg_dialect())
    return _IdentifyPlan(source, str(compiled), defaults, tuple(c.name for c in shown),
                         str(for_asyncpg), tuple(for_asyncpg.positiontup))


@lru_cache(maxsize=1)
def _asyncpg_dialect():
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    return PGDialect_asyncpg()


def _json_default(value):
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default).encode


def feature_text(row: dict, properties: tuple[str, ...], layer: str) -> str:
    """An identify row as a GeoJSON Feature text: values as :func:`feature_from_row` gives them,
    the GeoJSON geometry PostGIS wrote spliced in as it is (never parsed and re-encoded)."""
    props = {name: _json_value(row[name]) for name in properties}
    props["distance_m"] = round(float(row["__distance"]), 3)
    return (f'{{"type":"Feature","id":{_dumps(_json_value(row["__id"]))},"geometry":{row["__geometry"] or "null"},'
            f'"properties":{_dumps(props)},"layer":{_dumps(layer)}}}')


def identify(engine: Engine, layers: list[str], point: Point, principal: Principal | None, *,
             tolerance: float = 0.0, limit: int = 10, out: CRSRef = CRS84) -> dict[str, list[str]]:
    """Features of each layer containing ``point`` or within ``tolerance`` metres, nearest first,
    as GeoJSON Feature texts (:func:`feature_text`: properties as :func:`feature_from_row` gives
    them, without the personal columns the principal may not see, plus ``distance_m``, and the
    feature's ``layer``).

    A layer that does not exist or that the principal may not read raises NotFound. Runs on the
    engine's lean twin pool (:func:`lean_engine`): one round trip per layer.
    """
    if not 0 <= tolerance <= MAX_IDENTIFY_TOLERANCE:
        raise InvalidParameter("tolerance", f"must be between 0 and {MAX_IDENTIFY_TOLERANCE:g} metres")
    x, y = point.xy()
    params = {"x": x, "y": y, "srid": point.crs.srid, "tolerance": tolerance, "limit": limit}
    lean = lean_engine(engine)
    with input_errors():
        return _identify_with_retry(lean, layers, params, principal, out)


def _identify_with_retry(lean: Engine, layers, params, principal, out) -> dict[str, list[str]]:
    for attempt in (1, 2):
        # the pool's DBAPI connection itself: no SQLAlchemy Connection around one statement
        dbc = lean.raw_connection()
        try:
            return {name: _identify_one(lean, dbc, name, params, principal, out) for name in layers}
        except (DBAPIError, lean.dialect.loaded_dbapi.Error) as exc:
            # no pre-ping on the lean pool: when the server dropped the connections, the first
            # query fails (on this connection, or on the one compiling a statement: SQLAlchemy's
            # DBAPIError), the pool is emptied and the query is retried on a fresh connection
            if attempt == 2 or not _is_disconnect(lean, dbc, exc):
                raise
            dbc.invalidate()
        finally:
            dbc.close()  # back to the pool, or discarded when invalidated
        lean.dispose()
    raise AssertionError("unreachable")


def _is_disconnect(engine: Engine, dbc, exc: Exception) -> bool:
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated
    return engine.dialect.is_disconnect(exc, dbc.dbapi_connection, None)


_lean_engines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lean_lock = threading.Lock()


def lean_engine(engine: Engine) -> Engine:
    """A twin of ``engine`` for single-statement reads: autocommit, no pre-ping, no reset on return.

    The main pool pings on every checkout and rolls back on every return, which costs three extra
    round trips (BEGIN, SELECT 1, ROLLBACK) around a 0.2 ms query. Same URL and pool size.
    """
    with _lean_lock:
        lean = _lean_engines.get(engine)
        if lean is None:
            pool_size = getattr(engine.pool, "size", lambda: 5)()
            lean = create_engine(
                engine.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False,
                pool_reset_on_return=None, isolation_level="AUTOCOMMIT", pool_recycle=1800,
                connect_args={"application_name": "gisserver-identify", "connect_timeout": 10},
            )
            _lean_engines[engine] = lean
    return lean


def _identify_one(lean: Engine, dbc, name, params, principal, out) -> list[str]:
    plan = _caller_plan(lean, name, out, principal)
    try:
        rows = _run_plan(dbc, plan, name, params)
    except (psycopg2.errors.UndefinedColumn, psycopg2.errors.UndefinedTable):
        # a replace swapped in a table with other columns (same name) since the statement was
        # compiled: recompiled below, like any catalogue change (the lean pool is autocommit)
        rows = []
    head = rows[0] if rows else None
    info = plan.source.info
    if head is None or head["__layer_version"] != info.data_version or head["__layer_table"] != info.table_name:
        # the catalogue changed since the statement was compiled: recompile and run again
        plan = _caller_plan(lean, name, out, principal, refresh=True)
        rows = _run_plan(dbc, plan, name, params)
        head = rows[0] if rows else None
    if head is None or (principal is not None and not readable_from_row(
            principal, head["__layer_access"], head["__layer_owner"], head["__layer_grants"])):
        raise NotFound(f"no layer named {name!r}")
    rows = [row for row in rows if row["__id"] is not None]
    if principal is not None and head["__layer_access"] == "restricted" and rows:
        with lean.connect() as conn:
            rows = _within_granted_area(conn, name, principal, rows)
    return [feature_text(row, plan.properties, name) for row in rows]


def _caller_plan(engine: Engine, name: str, out: CRSRef, principal: Principal | None, *,
                 refresh: bool = False) -> _IdentifyPlan:
    """The layer's plan, without the personal columns this caller may not see."""
    plan = identify_plan(engine, name, out, refresh=refresh)
    hidden = personal_columns(plan.source.info, principal)
    return identify_plan(engine, name, out, hidden, refresh=refresh) if hidden else plan


def cached_caller_plan(engine: Engine, name: str, out: CRSRef, principal: Principal | None) -> _IdentifyPlan | None:
    """:func:`_caller_plan` when it is compiled already (no database access), else None."""
    with _plans_lock:
        plan = _plans.get((engine, name, out, frozenset()))
        if plan is None:
            return None
        hidden = personal_columns(plan.source.info, principal)
        return _plans.get((engine, name, out, hidden)) if hidden else plan


def _within_granted_area(conn, name: str, principal: Principal, rows: list[dict]) -> list[dict]:
    """Drop the features outside the granted area for a caller who reads the layer through an
    area-limited grant only (rare: the common path above never gets here with such a grant)."""
    info = get_layer(conn, name, principal)
    if not info.area_limited_for(principal):
        return rows
    source = source_for(conn, info)
    ids = [row["__id"] for row in rows]
    clause = access_area_clause(info, principal, source.geom)
    keep = set(conn.execute(
        select(source.id_column).where(source.id_column.in_(ids), clause)
    ).scalars())
    return [row for row in rows if row["__id"] in keep]


def _run_plan(dbc, plan: _IdentifyPlan, name: str, params: dict) -> list:
    values = dict(plan.defaults)
    values.update(params)
    values["layer"] = name
    return run_compiled(dbc, plan.sql, values)


def run_compiled(dbc, sql: str, values: dict) -> list[dict]:
    """Run a statement compiled by SQLAlchemy on a DBAPI connection, rows as dicts.

    The statement text comes from ``Compiled`` (no value is ever formatted into it); skipping
    SQLAlchemy's result layer saves ~0.1 ms of column bookkeeping per identify request.
    """
    cursor = dbc.cursor()
    try:
        cursor.execute(sql, values)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        cursor.close()


def identify_statement(conn: Connection, name: str, point: Point, *, tolerance: float = 0.0, limit: int = 10,
                       out: CRSRef = CRS84, principal: Principal | None = None) -> tuple[str, dict]:
    """The exact SQL and parameters identify runs for ``principal`` (for benchmarks that query
    PostGIS directly)."""
    plan = _caller_plan(conn.engine, name, out, principal)
    x, y = point.xy()
    values = dict(plan.defaults)
    values.update(x=x, y=y, srid=point.crs.srid, tolerance=tolerance, limit=limit, layer=name)
    return plan.sql, values


__all__ = [
    "CRS84", "CITY", "CRSRef", "Point", "Box", "LayerSource", "Search", "FeaturePage", "crs_ref",
    "open_layer", "source_for", "queryables", "search_features", "nearest", "get_feature", "parcel_lookup",
    "identify", "identify_statement", "lean_engine", "run_compiled", "input_errors", "readable_layers",
    "readable_layer",
]


def identify_async_statement(conn: Connection, name: str, point: Point, *, tolerance: float = 0.0, limit: int = 10,
                             out: CRSRef = CRS84, principal: Principal | None = None) -> tuple[str, dict]:
    """The exact SQL the ASGI front's identify sends through asyncpg for ``principal``, and its
    arguments by name in ``$n`` order (for benchmarks that query PostGIS directly the same way)."""
    plan = _caller_plan(conn.engine, name, out, principal)
    x, y = point.xy()
    values = dict(plan.defaults)
    values.update(x=x, y=y, srid=point.crs.srid, tolerance=tolerance, limit=limit, layer=name)
    return plan.async_sql, {key: values[key] for key in plan.async_order}
