"""The layer catalogue: which layers exist, where their data is, who may read them.

Canonical layers are the typed tables of ``gisserver.schema``; generic layers are tables in the
``layerdata`` schema created by ingest. Table identifiers only ever come from this catalogue.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import MetaData, Table, event, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from gisserver import schema
from gisserver.crs import CITY_SRID
from gisserver.errors import InvalidInput, NotFound
from gisserver.security import Principal, can_edit, can_read

log = logging.getLogger(__name__)

LAYER_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# columns that are storage details, not feature properties
HIDDEN_COLUMNS = frozenset({"geom", "geom_3857", "attributes"})
# personal data (Decree 13/2023 on personal data protection): shown to staff only, in every service
PERSONAL_COLUMNS = {"parcel": frozenset({"owner_name"})}


def personal_columns(info: LayerInfo, principal: Principal | None) -> frozenset[str]:
    """Columns of the layer this caller may not see (empty for staff)."""
    if principal is not None and principal.is_staff:
        return frozenset()
    return PERSONAL_COLUMNS.get(info.table_name, frozenset()) if info.kind == "canonical" else frozenset()


@dataclass(frozen=True)
class LayerInfo:
    id: int
    name: str
    title: str
    title_vi: str | None
    description: str
    kind: str
    table_schema: str
    table_name: str
    geometry_type: str
    srid: int
    access_level: str
    owner_agency_id: int | None
    data_version: int
    feature_count: int
    properties: list = field(default_factory=list)
    style: dict | None = None
    # agencies with an active whole-layer grant (edit implies read)
    reader_agencies: frozenset[int] = frozenset()
    editor_agencies: frozenset[int] = frozenset()
    # agencies whose grant covers only an area: agency id -> permission
    area_grants: tuple[tuple[int, str], ...] = ()

    def readable_by(self, principal: Principal) -> bool:
        area_readers = frozenset(a for a, _ in self.area_grants)
        return can_read(principal, self.access_level, self.owner_agency_id, self.reader_agencies | area_readers)

    def editable_by(self, principal: Principal) -> bool:
        return can_edit(principal, self.owner_agency_id, self.editor_agencies)

    def area_limited_for(self, principal: Principal) -> bool:
        """True when the principal reads this layer only through an area-limited grant."""
        if self.access_level != "restricted" or principal.is_admin or principal.agency_id is None:
            return False
        if principal.agency_id == self.owner_agency_id or principal.agency_id in self.reader_agencies:
            return False
        return any(a == principal.agency_id for a, _ in self.area_grants)


def validate_layer_name(name: str) -> str:
    if not isinstance(name, str) or not LAYER_NAME_RE.match(name):
        raise InvalidInput(
            f"invalid layer name {name!r}: use lower-case letters, digits and _ (start with a letter, "
            "at most 63 characters)"
        )
    return name


def sync_canonical_layers(conn: Connection) -> None:
    """Make sure every canonical table has its catalogue row (idempotent)."""
    existing = set(conn.execute(select(schema.layer.c.name)).scalars())
    for name, (table, gtype, title, title_vi, access) in schema.CANONICAL_LAYERS.items():
        if name in existing:
            continue
        props = [
            {"name": c.name, "type": _json_type(c.type)}
            for c in table.columns
            if c.name not in HIDDEN_COLUMNS
        ]
        conn.execute(
            insert(schema.layer).values(
                name=name, title=title, title_vi=title_vi, kind="canonical", table_schema="public",
                table_name=table.name, geometry_type=gtype, srid=CITY_SRID, access_level=access,
                properties=props,
            )
        )


def _json_type(sqltype) -> str:
    try:
        python = sqltype.python_type
    except NotImplementedError:
        python = None
    if python is int:
        return "integer"
    if python is float:
        return "number"
    if python is bool:
        return "boolean"
    return "string"


def grants_column():
    g = schema.layer_grant
    agg = func.coalesce(
        func.jsonb_agg(func.jsonb_build_array(g.c.agency_id, g.c.permission, g.c.area.is_not(None))),
        text("'[]'::jsonb"),
    )
    return (
        select(agg)
        .where(g.c.layer_id == schema.layer.c.id, g.c.revoked_at.is_(None))
        .scalar_subquery()
        .label("grants")
    )


def readable_from_row(principal: Principal, access_level: str, owner_agency_id: int | None, grants) -> bool:
    """``LayerInfo.readable_by`` for code that selects the layer row itself (with grants_column())."""
    readers = frozenset(a for a, _p, _area in (grants or []))
    return can_read(principal, access_level, owner_agency_id, readers)


def _row_to_info(row) -> LayerInfo:
    grants = row.get("grants") or []
    whole = [(a, p) for a, p, has_area in grants if not has_area]
    return LayerInfo(
        reader_agencies=frozenset(a for a, _ in whole),
        editor_agencies=frozenset(a for a, p in whole if p == "edit"),
        area_grants=tuple((a, p) for a, p, has_area in grants if has_area),
        id=row["id"], name=row["name"], title=row["title"], title_vi=row["title_vi"],
        description=row["description"], kind=row["kind"], table_schema=row["table_schema"],
        table_name=row["table_name"], geometry_type=row["geometry_type"], srid=row["srid"],
        access_level=row["access_level"], owner_agency_id=row["owner_agency_id"],
        data_version=row["data_version"], feature_count=row["feature_count"],
        properties=list(row["properties"] or []), style=row["style"],
    )


def list_layers(conn: Connection, principal: Principal | None = None) -> list[LayerInfo]:
    rows = conn.execute(select(schema.layer, grants_column()).order_by(schema.layer.c.id)).mappings()
    infos = [_row_to_info(r) for r in rows]
    if principal is not None:
        infos = [i for i in infos if i.readable_by(principal)]
    return infos


def get_layer(conn: Connection, name: str, principal: Principal | None = None) -> LayerInfo:
    """The layer, or NotFound. A layer the principal may not read is reported as not found."""
    row = conn.execute(
        select(schema.layer, grants_column()).where(schema.layer.c.name == name)
    ).mappings().first()
    if row is None:
        raise NotFound(f"no layer named {name!r}")
    info = _row_to_info(row)
    if principal is not None and not info.readable_by(principal):
        raise NotFound(f"no layer named {name!r}")
    return info


_reflected: dict[tuple[str, str, int], Table] = {}
_reflect_lock = threading.Lock()


def layer_table(conn: Connection, info: LayerInfo) -> Table:
    """SQLAlchemy Table for a layer (canonical from the schema, generic reflected and cached)."""
    if info.kind == "canonical":
        return schema.metadata.tables[info.table_name]
    key = (info.table_schema, info.table_name, info.data_version)
    with _reflect_lock:
        cached = _reflected.get(key)
    if cached is not None:
        return cached
    md = MetaData()
    table = Table(info.table_name, md, schema=info.table_schema, autoload_with=conn)
    with _reflect_lock:
        _reflected[key] = table
    return table


def property_columns(table: Table) -> list:
    return [c for c in table.columns if c.name not in HIDDEN_COLUMNS]


@dataclass(frozen=True)
class LayerChange:
    """What an edit did to a layer: current features added and removed, and the bounding box
    ``(minx, miny, maxx, maxy)`` in the layer's CRS of every geometry it touched (old and new);
    ``bbox=None``: unknown (the whole layer may have changed), ``bbox=()``: no geometry changed.

    :func:`bump_version` updates the catalogue from it without scanning the table, and the tile
    cache rebuilds only the tiles the box touches.
    """

    added: int = 0
    removed: int = 0
    bbox: tuple[float, float, float, float] | None = None


#: engine -> callbacks(info, version, lon/lat bbox, () or None) run when a transaction that bumped
#: a layer's version commits (the tile cache records its change areas through this)
_change_listeners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PENDING = "gisserver.layer_changes"


def on_layer_change(engine: Engine, callback: Callable[[LayerInfo, int, tuple | None], None]) -> None:
    """Call ``callback(info, version, lonlat_bbox)`` for every version bump committed through
    ``engine`` (``lonlat_bbox`` None: the whole layer may have changed, (): no geometry changed).
    Runs when the transaction commits, so a rolled-back edit reports nothing."""
    listeners = _change_listeners.get(engine)
    if listeners is None:
        listeners = _change_listeners[engine] = []
        event.listen(engine, "commit", _notify_committed)
        event.listen(engine, "rollback", _forget_pending)
    if callback not in listeners:
        listeners.append(callback)


def _notify_committed(conn: Connection) -> None:
    pending = conn.info.pop(_PENDING, None)
    if not pending:
        return
    for callback in _change_listeners.get(conn.engine, ()):
        for info, version, bbox in pending:
            try:
                callback(info, version, bbox)
            except Exception:  # a change not recorded only costs rebuilds: never fail the edit for it
                log.exception("recording the change of layer %s v%s failed", info.name, version)


def _forget_pending(conn: Connection) -> None:
    conn.info.pop(_PENDING, None)


def current_features_filter(table: Table) -> list:
    """Versioned tables (with ``end_lifespan``) count and draw their current rows only."""
    return [table.c.end_lifespan.is_(None)] if "end_lifespan" in table.c else []


def bump_version(conn: Connection, name: str, change: LayerChange | None = None) -> int:
    """Record that a layer's data changed: new data version, feature count and extent.

    Without ``change`` (a bulk load) the current features are counted and their extent computed
    (a table scan). With a :class:`LayerChange` the count is updated by its difference and the
    extent grown by its box, from the catalogue row alone: an edit costs the same at 1M parcels as
    at 1,000. (Edits only ever grow the stored extent; the next full count tightens it.)
    """
    info = get_layer(conn, name)
    lyr = schema.layer.c
    changed = None
    if change is None:
        table = layer_table(conn, info)
        count, extent = conn.execute(
            select(func.count(), func.ST_Transform(func.ST_SetSRID(func.ST_Extent(table.c.geom), info.srid), 4326))
            .where(*current_features_filter(table))
        ).one()
        extent = _widened(extent) if extent is not None else None
    else:
        count = func.greatest(lyr.feature_count + int(change.added) - int(change.removed), 0)
        extent = lyr.extent
        if change.bbox:
            changed = _widened(_lonlat_envelope(change.bbox, info.srid))
            extent = func.ST_Envelope(func.ST_Collect(func.coalesce(lyr.extent, changed), changed))
    row = conn.execute(
        update(schema.layer)
        .where(lyr.name == name)
        .values(data_version=lyr.data_version + 1, feature_count=count, extent=extent, updated_at=func.now())
        .returning(lyr.data_version, *_box_columns(changed))
    ).one()
    version = row[0]
    if change is None or change.bbox is None:
        lonlat = None
    else:
        lonlat = tuple(float(v) for v in row[1:5])  # () when no geometry changed
    if _change_listeners.get(conn.engine):
        conn.info.setdefault(_PENDING, []).append((info, version, lonlat))
    return version


def _lonlat_envelope(bbox, srid: int):
    """The lon/lat envelope of a box given in ``srid`` (transformed with the official parameters)."""
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    return func.ST_Envelope(func.ST_Transform(func.ST_MakeEnvelope(minx, miny, maxx, maxy, srid), 4326))


def _widened(envelope):
    # a single point or an axis-parallel line has a degenerate envelope: widen it a hair (1e-7 degree)
    return func.ST_Envelope(func.ST_Expand(envelope, 1e-7))


def _box_columns(geom) -> list:
    if geom is None:
        return []
    return [func.ST_XMin(geom), func.ST_YMin(geom), func.ST_XMax(geom), func.ST_YMax(geom)]


def extent_wgs84(conn: Connection, name: str) -> tuple[float, float, float, float] | None:
    row = conn.execute(
        select(
            func.ST_XMin(schema.layer.c.extent), func.ST_YMin(schema.layer.c.extent),
            func.ST_XMax(schema.layer.c.extent), func.ST_YMax(schema.layer.c.extent),
        ).where(schema.layer.c.name == name)
    ).first()
    if row is None or row[0] is None:
        return None
    return tuple(float(v) for v in row)


def set_access_level(conn: Connection, name: str, access_level: str) -> None:
    if access_level not in schema.ACCESS_LEVELS:
        raise InvalidInput(f"access level must be one of {', '.join(schema.ACCESS_LEVELS)}")
    conn.execute(update(schema.layer).where(schema.layer.c.name == name).values(access_level=access_level))


def analyze(conn: Connection, info: LayerInfo) -> None:
    """Refresh planner statistics after a bulk load (identifiers from the catalogue, quoted)."""
    preparer = conn.dialect.identifier_preparer
    conn.execute(text("ANALYZE " + preparer.quote_schema(info.table_schema) + "." + preparer.quote(info.table_name)))


def access_area_clause(info: LayerInfo, principal: Principal, geom_column, srid: int = CITY_SRID):
    """For a caller who reads the layer only through area-limited grants, the SQL condition that
    keeps features intersecting the granted area (None when the whole layer is readable).
    ``srid`` is the SRID of ``geom_column`` (e.g. 3857 for tiles)."""
    if not info.area_limited_for(principal):
        return None
    g = schema.layer_grant
    area = (
        select(func.ST_Union(g.c.area))
        .where(g.c.layer_id == info.id, g.c.agency_id == principal.agency_id, g.c.revoked_at.is_(None))
        .scalar_subquery()
    )
    if srid != CITY_SRID:
        area = func.ST_Transform(area, srid)
    return func.ST_Intersects(geom_column, area)
