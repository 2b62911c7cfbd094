"""Where a load goes: a canonical table, or a generic table in the ``layerdata`` schema.

Generic tables get the same shape as the canonical ones: ``id`` key, typed columns from the
source, ``attributes`` JSONB, ``geom`` in the city SRID, a generated ``geom_3857`` and GiST
indexes on both. A replace builds the new table beside the old one and swaps them at the end of
the load's transaction, so readers keep the previous version until the commit.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from gisserver import schema
from gisserver.crs import CITY_SRID
from gisserver.errors import InvalidInput, NotFound
from layers import catalogue
from layers.mapping import ColumnSpec, column_kind, safe_column_name, sql_type_for, table_column_specs

GENERIC_SCHEMA = schema.GENERIC_LAYER_SCHEMA

_GEOMETRY_TYPES = {
    "point": "Point",
    "multipoint": "MultiPoint",
    "linestring": "MultiLineString",
    "multilinestring": "MultiLineString",
    "polygon": "MultiPolygon",
    "multipolygon": "MultiPolygon",
}


def generic_geometry_type(source_type: str) -> str:
    """Layer geometry type for a source type: single lines/polygons promoted to Multi*."""
    key = source_type.lower().replace(" z", "").replace(" m", "").replace("25d", "").replace("3d ", "").strip()
    return _GEOMETRY_TYPES.get(key, "Geometry")


@dataclass
class Target:
    name: str
    kind: str  # canonical | generic
    table: Table  # where COPY writes (a staging table for a generic replace)
    geometry_type: str
    specs: dict[str, ColumnSpec]
    existing: catalogue.LayerInfo | None
    final_table: Table | None = None  # generic: the table under its final name
    old_table: Table | None = None  # generic replace: the previous table, dropped at the swap
    dropped_indexes: list[Index] = field(default_factory=list)
    source_columns: dict[str, str] | None = None  # new generic table: source field -> its column

    @property
    def schema_name(self) -> str:
        return self.table.schema or "public"


def lock_layer(conn: Connection, name: str) -> None:
    """Serialise loads of one layer (transaction-scoped advisory lock)."""
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("gisserver.layer-load:" + name))))


def canonical_target(conn: Connection, name: str) -> Target | None:
    entry = schema.CANONICAL_LAYERS.get(name)
    if entry is None:
        return None
    catalogue.sync_canonical_layers(conn)
    table, gtype = entry[0], entry[1]
    info = catalogue.get_layer(conn, name)
    return Target(name=name, kind="canonical", table=table, geometry_type=gtype,
                  specs=table_column_specs(table), existing=info)


def existing_generic(conn: Connection, name: str) -> catalogue.LayerInfo | None:
    try:
        info = catalogue.get_layer(conn, name)
    except NotFound:
        return None
    if info.kind != "generic":
        raise InvalidInput(f"layer {name!r} is a {info.kind} layer without a table ingest knows")
    return info


def generic_columns(fields: list[str], ogr_types: list[str],
                    mapping: dict[str, str] | None) -> list[tuple[str, str, object]]:
    """(source field, column name, SQL type) for a new generic table."""
    mapping = mapping or {}
    taken: set[str] = set()
    out = []
    for i, src in enumerate(fields):
        wanted = mapping.get(src, src)
        out.append((src, safe_column_name(wanted, taken), sql_type_for(ogr_types[i] if i < len(ogr_types) else "")))
    return out


def _short(prefix: str, name: str, suffix: str = "") -> str:
    ident = f"{prefix}{name}{suffix}"
    if len(ident) <= 63:
        return ident
    digest = hashlib.sha1(ident.encode()).hexdigest()[:8]
    return f"{prefix}{name[: 63 - len(prefix) - len(suffix) - 9]}_{digest}{suffix}"


def generic_table(table_name: str, columns: list[tuple[str, str, object]], geometry_type: str) -> Table:
    gtype = geometry_type.upper()
    md = MetaData()
    return Table(
        table_name,
        md,
        Column("id", BigInteger, Identity(), nullable=False),
        *[Column(col, sqltype) for _, col, sqltype in columns],
        Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("geom", Geometry(gtype, srid=CITY_SRID, spatial_index=False), nullable=False),
        Column("geom_3857", Geometry(gtype, srid=3857, spatial_index=False),
               Computed("ST_Transform(geom, 3857)", persisted=True)),
        PrimaryKeyConstraint("id", name=_short("pk_", table_name)),
        schema=GENERIC_SCHEMA,
    )


def generic_indexes(table: Table) -> list[Index]:
    return [
        Index(_short("ix_", table.name, "_geom"), table.c.geom, postgresql_using="gist"),
        Index(_short("ix_", table.name, "_geom_3857"), table.c.geom_3857, postgresql_using="gist"),
    ]


def new_generic_target(conn: Connection, name: str, columns, geometry_type: str,
                       existing: catalogue.LayerInfo | None) -> Target:
    """A fresh table for a new layer, or a staging table beside the current one (replace)."""
    staging_name = name if existing is None else _short("_load_", secrets.token_hex(4) + "_" + name)
    table = generic_table(staging_name, columns, geometry_type)
    table.create(conn)
    final = table if existing is None else generic_table(name, columns, geometry_type)
    old = catalogue.layer_table(conn, existing) if existing is not None else None
    specs = {col: ColumnSpec(col, column_kind(sqltype)) for _, col, sqltype in columns}
    return Target(name=name, kind="generic", table=table, geometry_type=geometry_type, specs=specs,
                  existing=existing, final_table=final, old_table=old,
                  source_columns={src: col for src, col, _ in columns})


def append_generic_target(conn: Connection, info: catalogue.LayerInfo) -> Target:
    table = catalogue.layer_table(conn, info)
    return Target(name=info.name, kind="generic", table=table, geometry_type=info.geometry_type,
                  specs=table_column_specs(table), existing=info, final_table=table)


def is_referenced(conn: Connection, table: Table) -> bool:
    """True when a foreign key of another table points at ``table`` (TRUNCATE impossible)."""
    return bool(conn.execute(
        text("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid = to_regclass(:t)"),
        {"t": conn.dialect.identifier_preparer.format_table(table)},
    ).scalar())


def empty_table(conn: Connection, table: Table, *, fast: bool) -> None:
    """Remove the current rows inside the load's transaction (rolled back if the load fails).

    ``fast`` uses TRUNCATE when nothing references the table; it takes an exclusive lock, so it
    is only used for big loads, which rebuild the indexes anyway.
    """
    if fast and not is_referenced(conn, table):
        conn.execute(text("TRUNCATE " + conn.dialect.identifier_preparer.format_table(table)))
    else:
        conn.execute(delete(table))


def drop_indexes(conn: Connection, target: Target) -> None:
    """Drop a canonical table's secondary indexes before a big load (rebuilt after, same names)."""
    for index in sorted(target.table.indexes, key=lambda i: i.name):
        index.drop(conn)
        target.dropped_indexes.append(index)


def rebuild_indexes(conn: Connection, target: Target) -> None:
    for index in target.dropped_indexes:
        index.create(conn)
    target.dropped_indexes.clear()


def finish_generic(conn: Connection, target: Target) -> None:
    """Swap a staging table in (replace) and create the final table's GiST indexes."""
    prep = conn.dialect.identifier_preparer
    final = target.final_table
    if target.table is not final:
        if target.old_table is not None:
            conn.execute(text("DROP TABLE " + prep.format_table(target.old_table)))
        conn.execute(text(
            "ALTER TABLE " + prep.format_table(target.table) + " RENAME TO " + prep.quote(final.name)
        ))
        conn.execute(text(
            "ALTER TABLE " + prep.format_table(final) + " RENAME CONSTRAINT "
            + prep.quote(_short("pk_", target.table.name)) + " TO " + prep.quote(_short("pk_", final.name))
        ))
    for index in generic_indexes(final):
        index.create(conn)


def register_generic(conn: Connection, target: Target, *, title: str | None, access_level: str | None) -> None:
    """Create or update the catalogue row of a generic layer."""
    props = [{"name": spec.name, "type": _json_type(spec.kind)} for spec in target.specs.values()]
    values = {"geometry_type": target.geometry_type, "properties": props, "updated_at": func.now()}
    if title:
        values["title"] = title
    if access_level:
        if access_level not in schema.ACCESS_LEVELS:
            raise InvalidInput(f"access level must be one of {', '.join(schema.ACCESS_LEVELS)}")
        values["access_level"] = access_level
    if target.existing is None:
        values.setdefault("title", target.name)
        values.setdefault("access_level", "internal")
        conn.execute(insert(schema.layer).values(
            name=target.name, kind="generic", table_schema=GENERIC_SCHEMA, table_name=target.final_table.name,
            srid=CITY_SRID, **values,
        ))
    else:
        conn.execute(update(schema.layer).where(schema.layer.c.name == target.name).values(**values))


def _json_type(kind: str) -> str:
    return {"integer": "integer", "number": "number", "boolean": "boolean"}.get(kind, "string")
