"""CQL2 (text and JSON) filters -> SQLAlchemy expressions on a layer's table.

Parsing is pygeofilter's (``cql2_text`` / ``cql2_json``); the translation is ours, so that:

* only properties that exist in the layer are accepted (anything else is a 400, never a column
  name pasted into SQL), plus the geometry, which may be called ``geom`` or ``geometry``;
* every literal is a bound parameter, typed by the column it is compared with (a string compared
  with a numeric property is a 400, not a database error);
* functions are limited to a short whitelist;
* geometries are read with ST_GeomFromGeoJSON in the filter CRS and transformed to the storage
  CRS, so spatial predicates use the GiST index on the stored geometry.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from pygeofilter import ast, values
from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    Numeric,
    String,
    Text,
    and_,
    bindparam,
    false,
    func,
    true,
)
from sqlalchemy import not_ as sql_not
from sqlalchemy import or_ as sql_or
from sqlalchemy.sql.elements import ColumnElement

from gisserver.errors import InvalidParameter

FILTER_LANGS = ("cql2-text", "cql2-json")
GEOMETRY_NAMES = ("geom", "geometry")
# CQL2 wildcards are SQL's; CASEI arrives as lower(); upper() for symmetry
FUNCTIONS = {"lower": func.lower, "upper": func.upper}
MAX_FILTER_LENGTH = 20_000
MAX_NODES = 500


@dataclass(frozen=True)
class FilterContext:
    """What a filter may refer to: the table's property columns and its geometry."""

    columns: dict  # property name -> Column
    geometry: ColumnElement
    storage_srid: int
    filter_srid: int = 4326
    filter_flip_axes: bool = False  # EPSG:4326 given as filter-crs: lat/lon order


def parse_filter(text: str | dict | None, lang: str | None = None):
    """Parse a CQL2 filter into pygeofilter's AST (None when no filter). Errors are 400s."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    lang = lang or ("cql2-json" if isinstance(text, dict) or str(text).lstrip().startswith("{") else "cql2-text")
    if lang not in FILTER_LANGS:
        raise InvalidParameter("filter-lang", f"must be one of {', '.join(FILTER_LANGS)}")
    if isinstance(text, str) and len(text) > MAX_FILTER_LENGTH:
        raise InvalidParameter("filter", f"longer than {MAX_FILTER_LENGTH} characters")
    try:
        if lang == "cql2-text":
            from pygeofilter.parsers.cql2_text import parse

            return parse(text)
        from pygeofilter.parsers.cql2_json import parse

        document = json.loads(text) if isinstance(text, str) else text
        return parse(_bbox_literals_to_polygons(document))
    except InvalidParameter:
        raise
    except Exception as exc:  # lark and the JSON walker raise many unrelated types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidParameter("filter", f"not valid {lang}: {first_line[:200]}") from None


def _bbox_literals_to_polygons(node):
    # pygeofilter reads {"bbox": [minx, miny, maxx, maxy]} into an Envelope with mixed-up axes
    if isinstance(node, list):
        return [_bbox_literals_to_polygons(n) for n in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"bbox"} and isinstance(node["bbox"], list):
        box = node["bbox"]
        if len(box) == 6:
            box = [box[0], box[1], box[3], box[4]]
        if len(box) != 4 or not all(isinstance(v, int | float) for v in box):
            raise InvalidParameter("filter", "a bbox literal needs 4 (or 6) numbers")
        return {"type": "Polygon", "coordinates": [_ring(*box)]}
    if set(node) == {"casei"}:  # the CQL2 JSON spelling; pygeofilter reads {"lower": ...}
        return {"lower": _bbox_literals_to_polygons(node["casei"])}
    return {k: _bbox_literals_to_polygons(v) for k, v in node.items()}


def _ring(minx, miny, maxx, maxy):
    return [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]


def to_sql(node, ctx: FilterContext) -> ColumnElement:
    """Translate a parsed CQL2 AST into a boolean SQLAlchemy expression."""
    counter = [0]
    return _Translator(ctx, counter).condition(node)


# --- translation ---------------------------------------------------------------------------------

_COMPARE = {
    ast.Equal: lambda a, b: a == b,
    ast.NotEqual: lambda a, b: a != b,
    ast.LessThan: lambda a, b: a < b,
    ast.LessEqual: lambda a, b: a <= b,
    ast.GreaterThan: lambda a, b: a > b,
    ast.GreaterEqual: lambda a, b: a >= b,
}
_SPATIAL = {
    ast.GeometryIntersects: func.ST_Intersects,
    ast.GeometryDisjoint: func.ST_Disjoint,
    ast.GeometryContains: func.ST_Contains,
    ast.GeometryWithin: func.ST_Within,
    ast.GeometryTouches: func.ST_Touches,
    ast.GeometryCrosses: func.ST_Crosses,
    ast.GeometryOverlaps: func.ST_Overlaps,
    ast.GeometryEquals: func.ST_Equals,
}
_ARITHMETIC = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mul: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
_NUMERIC = (Integer, Float, Numeric)
_TEXT = (String, Text)


class _Translator:
    def __init__(self, ctx: FilterContext, counter: list[int]):
        self.ctx = ctx
        self.counter = counter

    def _tick(self):
        self.counter[0] += 1
        if self.counter[0] > MAX_NODES:
            raise InvalidParameter("filter", f"too complex (more than {MAX_NODES} terms)")

    # conditions -------------------------------------------------------------------------------
    def condition(self, node) -> ColumnElement:  # noqa: C901 - one dispatch table, flat
        self._tick()
        if isinstance(node, ast.And):
            return and_(self.condition(node.lhs), self.condition(node.rhs))
        if isinstance(node, ast.Or):
            return sql_or(self.condition(node.lhs), self.condition(node.rhs))
        if isinstance(node, ast.Not):
            return sql_not(self.condition(node.sub_node))
        if isinstance(node, ast.Include):
            return false() if node.not_ else true()
        if type(node) in _COMPARE:
            return self._comparison(node)
        if isinstance(node, ast.Between):
            return self._between(node)
        if isinstance(node, ast.Like):
            return self._like(node)
        if isinstance(node, ast.In):
            return self._in(node)
        if isinstance(node, ast.IsNull):
            expr = self.scalar(node.lhs)
            return expr.is_not(None) if node.not_ else expr.is_(None)
        if type(node) in _SPATIAL:
            return _SPATIAL[type(node)](self.spatial(node.lhs), self.spatial(node.rhs))
        if isinstance(node, ast.BBox):
            return self._bbox(node)
        if isinstance(node, ast.SpatialDistancePredicate):
            return self._distance(node)
        if isinstance(node, ast.TemporalPredicate):
            return self._temporal(node)
        if isinstance(node, bool):
            return true() if node else false()
        if isinstance(node, ast.Attribute):
            column = self.attribute(node)
            if not isinstance(column.type, Boolean):
                raise InvalidParameter("filter", f"property {node.name!r} is not a boolean condition")
            return column.is_(True)
        raise InvalidParameter("filter", f"unsupported expression: {_describe(node)}")

    def _comparison(self, node) -> ColumnElement:
        lhs, rhs = self.typed_pair(node.lhs, node.rhs)
        return _COMPARE[type(node)](lhs, rhs)

    def _between(self, node) -> ColumnElement:
        expr, low = self.typed_pair(node.lhs, node.low)
        _, high = self.typed_pair(node.lhs, node.high)
        cond = expr.between(low, high)
        return sql_not(cond) if node.not_ else cond

    def _like(self, node) -> ColumnElement:
        expr = self.scalar(node.lhs)
        if not _is_text(expr):
            raise InvalidParameter("filter", "LIKE needs a text property")
        if isinstance(node.pattern, str):
            pattern = bindparam(None, node.pattern, type_=Text())
        elif isinstance(node.pattern, ast.Function):  # CASEI('...')
            pattern = self.scalar(node.pattern)
        else:
            raise InvalidParameter("filter", "the LIKE pattern must be a string")
        cond = expr.ilike(pattern, escape="\\") if node.nocase else expr.like(pattern, escape="\\")
        return sql_not(cond) if node.not_ else cond

    def _in(self, node) -> ColumnElement:
        expr = self.scalar(node.lhs)
        if not node.sub_nodes:
            raise InvalidParameter("filter", "IN needs at least one value")
        if len(node.sub_nodes) > MAX_NODES:
            raise InvalidParameter("filter", f"IN takes at most {MAX_NODES} values")
        items = [self.typed_pair(node.lhs, v)[1] for v in node.sub_nodes]
        cond = expr.in_(items)
        return sql_not(cond) if node.not_ else cond

    def _bbox(self, node) -> ColumnElement:
        srid, flip = self.ctx.filter_srid, self.ctx.filter_flip_axes
        if node.crs:
            from gisserver.crs import is_crs84, resolve_srid
            from gisserver.errors import UnknownCRS

            try:
                srid = resolve_srid(node.crs)
            except UnknownCRS as exc:
                raise InvalidParameter("filter", exc.message) from None
            flip = srid == 4326 and not is_crs84(node.crs)
        coords = [node.minx, node.miny, node.maxx, node.maxy]
        if flip:
            coords = [coords[1], coords[0], coords[3], coords[2]]
        envelope = func.ST_MakeEnvelope(*[_number(v) for v in coords], bindparam(None, srid, type_=Integer()))
        return func.ST_Intersects(self.spatial(node.lhs), self._to_storage(envelope, srid))

    def _distance(self, node) -> ColumnElement:
        units = (node.units or "meters").lower()
        if units not in ("m", "meter", "meters", "metre", "metres"):
            raise InvalidParameter("filter", "distances are in metres (units 'meters')")
        distance = _number(node.distance, minimum=0)
        cond = func.ST_DWithin(self.spatial(node.lhs), self.spatial(node.rhs), distance)
        return sql_not(cond) if isinstance(node, ast.DistanceBeyond) else cond

    def _temporal(self, node) -> ColumnElement:
        expr = self.scalar(node.lhs)
        if not isinstance(expr.type, DateTime | Date):
            raise InvalidParameter("filter", "temporal operators need a date/time property")
        value = node.rhs
        if isinstance(value, values.Interval | list):
            start, end = (value.start, value.end) if isinstance(value, values.Interval) else value
            start, end = _instant(start), _instant(end)
        else:
            start = end = _instant(value)
        kind = type(node)
        if kind is ast.TimeBefore:
            return expr < bindparam(None, start, type_=expr.type)
        if kind is ast.TimeAfter:
            return expr > bindparam(None, end, type_=expr.type)
        if kind is ast.TimeEquals and start == end:
            return expr == bindparam(None, start, type_=expr.type)
        if kind in (ast.TimeDuring, ast.TimeOverlaps):  # instant inside [start, end]
            conds = []
            if start is not None:
                conds.append(expr >= bindparam(None, start, type_=expr.type))
            if end is not None:
                conds.append(expr <= bindparam(None, end, type_=expr.type))
            return and_(*conds) if conds else expr.is_not(None)
        raise InvalidParameter("filter", f"temporal operator {node.op.value} is not supported")

    # expressions ------------------------------------------------------------------------------
    def attribute(self, node: ast.Attribute):
        column = self.ctx.columns.get(node.name)
        if column is None:
            if node.name in GEOMETRY_NAMES:
                raise InvalidParameter("filter", f"{node.name!r} is the geometry; use a spatial operator")
            raise InvalidParameter(
                "filter", f"unknown property {node.name!r}", details={"queryables": sorted(self.ctx.columns)}
            )
        return column

    def scalar(self, node) -> ColumnElement:
        self._tick()
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, ast.Function):
            maker = FUNCTIONS.get(node.name.lower())
            if maker is None or len(node.arguments) != 1:
                raise InvalidParameter("filter", f"unsupported function {node.name!r}")
            arg = self.scalar(node.arguments[0]) if not isinstance(node.arguments[0], str) else \
                bindparam(None, node.arguments[0], type_=Text())
            if not _is_text(arg):
                raise InvalidParameter("filter", f"{node.name}() needs text")
            return maker(arg, type_=Text())
        if type(node) in _ARITHMETIC:
            lhs, rhs = self.numeric(node.lhs), self.numeric(node.rhs)
            return _ARITHMETIC[type(node)](lhs, rhs)
        if isinstance(node, bool):
            return bindparam(None, node, type_=Boolean())
        if isinstance(node, int | float):
            return bindparam(None, _number(node), type_=Float() if isinstance(node, float) else Integer())
        if isinstance(node, str):
            return bindparam(None, node, type_=Text())
        if isinstance(node, datetime | date):
            value = _instant(node)
            return bindparam(None, value, type_=DateTime(timezone=True) if isinstance(value, datetime) else Date())
        raise InvalidParameter("filter", f"unsupported value: {_describe(node)}")

    def numeric(self, node) -> ColumnElement:
        expr = self.scalar(node)
        if not isinstance(expr.type, _NUMERIC):
            raise InvalidParameter("filter", "arithmetic needs numbers")
        return expr

    def typed_pair(self, lhs_node, rhs_node):
        """Translate both sides of a comparison; a literal takes the type of the other side."""
        if _is_literal(lhs_node) and not _is_literal(rhs_node):
            rhs, lhs = self.typed_pair(rhs_node, lhs_node)
            return lhs, rhs
        lhs = self.scalar(lhs_node)
        if not _is_literal(rhs_node):
            rhs = self.scalar(rhs_node)
            _check_compatible(lhs, rhs)
            return lhs, rhs
        return lhs, bindparam(None, _coerce(lhs, rhs_node), type_=lhs.type)

    def spatial(self, node) -> ColumnElement:
        self._tick()
        if isinstance(node, ast.Attribute):
            if node.name in GEOMETRY_NAMES:
                return self.ctx.geometry
            if node.name in self.ctx.columns:
                raise InvalidParameter("filter", f"property {node.name!r} is not a geometry")
            raise InvalidParameter("filter", f"unknown property {node.name!r}")
        if isinstance(node, values.Geometry | values.Envelope):
            geojson = node.__geo_interface__
            if self.ctx.filter_flip_axes:
                geojson = _flip(geojson)
            try:
                text = json.dumps(geojson)
            except (TypeError, ValueError):
                raise InvalidParameter("filter", "invalid geometry literal") from None
            srid = self.ctx.filter_srid
            geom = func.ST_SetSRID(func.ST_GeomFromGeoJSON(bindparam(None, text, type_=Text())),
                                   bindparam(None, srid, type_=Integer()))
            return self._to_storage(geom, srid)
        raise InvalidParameter("filter", f"expected a geometry, got {_describe(node)}")

    def _to_storage(self, geom, srid: int):
        if srid == self.ctx.storage_srid:
            return geom
        return func.ST_Transform(geom, bindparam(None, self.ctx.storage_srid, type_=Integer()))


# --- helpers -------------------------------------------------------------------------------------

def _is_literal(node) -> bool:
    return isinstance(node, bool | int | float | str | datetime | date | time | timedelta)


def _is_text(expr) -> bool:
    return isinstance(expr.type, _TEXT)


def _describe(node) -> str:
    return type(node).__name__ if not isinstance(node, str) else repr(node)


def _number(value, minimum: float | None = None):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter("filter", f"{value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidParameter("filter", "numbers must be finite")
    if minimum is not None and value < minimum:
        raise InvalidParameter("filter", f"{value} must be >= {minimum}")
    return value


def _instant(value):
    """A date/datetime from the parser as a plain, UTC-normalised value (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        offset = value.utcoffset() or timedelta(0)
        return (value.replace(tzinfo=None) - offset).replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    raise InvalidParameter("filter", f"{value!r} is not a date or timestamp")


def _coerce(column_expr, value):
    """The literal as a value of the column's type, or a 400 naming the mismatch."""
    kind = column_expr.type
    name = getattr(column_expr, "name", "expression")
    if isinstance(kind, Boolean):
        if isinstance(value, bool):
            return value
    elif isinstance(kind, _NUMERIC):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _number(value)
    elif isinstance(kind, _TEXT):
        if isinstance(value, str):
            return value
    elif isinstance(kind, DateTime):
        if isinstance(value, datetime):
            return _instant(value)
        if isinstance(value, date):
            return datetime.combine(value, time(0), tzinfo=UTC)
    elif isinstance(kind, Date):
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
    else:
        raise InvalidParameter("filter", f"property {name!r} cannot be compared")
    raise InvalidParameter("filter", f"property {name!r} cannot be compared with {value!r} (wrong type)")


def _check_compatible(lhs, rhs) -> None:
    groups = ((Boolean,), _NUMERIC, _TEXT, (DateTime, Date))
    for group in groups:
        if isinstance(lhs.type, group) and isinstance(rhs.type, group):
            return
    raise InvalidParameter("filter", "the two sides of a comparison have different types")


def _flip(geojson: dict) -> dict:
    def flip(coords):
        if coords and isinstance(coords[0], int | float):
            return [coords[1], coords[0], *coords[2:]]
        return [flip(c) for c in coords]

    if geojson.get("type") == "GeometryCollection":
        return {"type": "GeometryCollection", "geometries": [_flip(g) for g in geojson.get("geometries", [])]}
    return {"type": geojson.get("type"), "coordinates": flip(geojson.get("coordinates", []))}
