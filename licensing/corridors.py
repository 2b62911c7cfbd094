"""Protection corridors generated from network features and the corridor rule tables.

* overhead power lines: half-width by voltage class and conductor (rule ``power_line_corridor``),
  measured here from the line's centreline (the conductor spread is not in the network data);
* rivers and canals: bank protection strip by water-body kind (rule ``water_corridor``);
* roads: the road reserve between the red lines, half the right-of-way each side of the centre
  line (rule ``road_corridor``).

Corridors are derived data: regenerating replaces those of the regenerated kinds, in one
transaction, with the rule version used recorded on every row.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import delete, func, insert, literal, select, true
from sqlalchemy.engine import Connection

from gisserver import audit, schema
from gisserver.errors import InvalidInput
from licensing import tables as lt
from licensing.rules import RuleVersion, rule_in_force

PC = lt.protection_corridor
KINDS = ("power_line", "water", "road_reserve")


def _insert_from(conn: Connection, select_stmt) -> int:
    cols = ["kind", "source_table", "source_id", "rule_table_id", "half_width", "attributes", "geom"]
    return conn.execute(insert(PC).from_select(cols, select_stmt)).rowcount


def _power_lines(conn: Connection, rule: RuleVersion) -> int:
    pl = schema.power_line
    rows = sorted(rule.data["rows"], key=lambda r: r["max_kv"])
    count, lower = 0, 0.0
    for max_kv in sorted({r["max_kv"] for r in rows}):
        in_class = [r for r in rows if r["max_kv"] == max_kv]
        specific = [r["conductor"] for r in in_class if r["conductor"] != "any"]
        for row in in_class:
            width = float(row["half_width"])
            if row["conductor"] == "any":
                conductor_ok = pl.c.conductor.not_in(specific) if specific else true()
            else:
                conductor_ok = pl.c.conductor == row["conductor"]
            stmt = select(
                literal("power_line"), literal("power_line"), pl.c.id, literal(rule.id), literal(width),
                func.jsonb_build_object("voltage_kv", pl.c.voltage_kv, "conductor", pl.c.conductor,
                                        "vertical_clearance", literal(float(row["vertical_clearance"])),
                                        "name", pl.c.name),
                func.ST_Multi(func.ST_Buffer(pl.c.geom, width)),
            ).where(pl.c.placement == "overhead", pl.c.voltage_kv > lower, pl.c.voltage_kv <= max_kv, conductor_ok)
            count += _insert_from(conn, stmt)
        lower = float(max_kv)
    return count


def _water(conn: Connection, rule: RuleVersion) -> int:
    wb = schema.water_body
    by_kind = rule.data["by_kind"]
    count = 0
    for kind, width in sorted(by_kind.items()):
        count += _insert_from(conn, _water_select(rule, float(width), wb.c.kind == kind))
    default = rule.data.get("default")
    if default is not None:
        other = wb.c.kind.is_(None) | wb.c.kind.not_in(list(by_kind))
        count += _insert_from(conn, _water_select(rule, float(default), other))
    return count


def _water_select(rule: RuleVersion, width: float, condition):
    wb = schema.water_body
    strip = func.ST_Difference(func.ST_Buffer(wb.c.geom, width), wb.c.geom)
    return select(
        literal("water"), literal("water_body"), wb.c.id, literal(rule.id), literal(width),
        func.jsonb_build_object("water_kind", wb.c.kind, "name", wb.c.name),
        func.ST_Multi(func.ST_CollectionExtract(strip, 3)),
    ).where(condition)


def _roads(conn: Connection, rule: RuleVersion) -> int:
    rd = schema.road
    factor = float(rule.data["half_width_factor"])
    default = rule.data.get("default_row_width")
    row_width = rd.c.row_width if default is None else func.coalesce(rd.c.row_width, float(default))
    half = row_width * factor
    stmt = select(
        literal("road_reserve"), literal("road"), rd.c.id, literal(rule.id), half,
        func.jsonb_build_object("row_width", row_width, "name", rd.c.name),
        func.ST_Multi(func.ST_Buffer(rd.c.geom, half, "endcap=flat")),
    ).where(row_width.is_not(None), row_width > 0)
    return _insert_from(conn, stmt)


GENERATORS = {
    "power_line": ("power_line_corridor", _power_lines),
    "water": ("water_corridor", _water),
    "road_reserve": ("road_corridor", _roads),
}


def generate_corridors(conn: Connection, actor: str, *, kinds: tuple[str, ...] = KINDS,
                       on: date | None = None) -> dict[str, int]:
    """Regenerate the corridors of ``kinds`` from the network and the rules in force on ``on``."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise InvalidInput(f"corridor kinds must be among {', '.join(KINDS)}")
    counts = {}
    for kind in kinds:
        rule_id, generator = GENERATORS[kind]
        rule = rule_in_force(conn, rule_id, on)
        conn.execute(delete(PC).where(PC.c.kind == kind))
        counts[kind] = generator(conn, rule)
    audit.record(conn, actor=actor, action="corridors.generate", target_type="protection_corridor",
                 detail={"counts": counts, "on": (on or date.today()).isoformat()})
    return counts


def corridors_for(conn: Connection, source_table: str, source_id: int) -> list[dict]:
    rows = conn.execute(
        select(PC.c.id, PC.c.kind, PC.c.half_width, PC.c.attributes, PC.c.rule_table_id,
               func.ST_Area(PC.c.geom).label("area"))
        .where(PC.c.source_table == source_table, PC.c.source_id == source_id)
    ).mappings()
    return [dict(r) for r in rows]
