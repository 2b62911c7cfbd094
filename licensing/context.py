"""Everything a compliance check needs about a parcel and its surroundings, gathered in one statement.

The parcel is a CTE and the rest (zone, red lines and roads within a search radius, protection
corridors under the footprint, rasters under the footprint, the rule tables in force) come back as
correlated JSON subqueries, each on a GiST or b-tree index. At city scale the round trips, not the
geometry, dominate a check's time; the statement is built once, with bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from statistics import median

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, Date, bindparam, func, select
from sqlalchemy.engine import Connection

from gisserver import schema
from gisserver.crs import CITY_SRID
from gisserver.errors import Conflict, NotFound
from licensing import tables as lt
from licensing.geometry import from_wkb, to_db
from licensing.proposal import Proposal
from licensing.register import parcel_columns, parcel_row
from licensing.rules import RuleVersion
from licensing.sampling import resolve_path, sample_under

#: how far from the parcel red lines and roads are looked for (search, not law)
SEARCH_RADIUS_M = 50.0
#: raster catalogue kinds the check samples: ground, flood water level (m, Hòn Dấu), flood max depth (m)
RASTER_KINDS = ("dtm", "flood_level", "flood_depth")


@dataclass
class Context:
    parcel: dict
    rules: dict[str, RuleVersion]
    zone: dict | None = None
    red_lines: list[dict] = field(default_factory=list)
    road: dict | None = None
    corridors: list[dict] = field(default_factory=list)
    road_reserves: list[dict] = field(default_factory=list)
    ground: list | None = None
    flood_level: float | None = None
    flood_source: str | None = None


def _hex(geom_expr):
    return func.encode(func.ST_AsBinary(geom_expr), "hex")


def _json_list(inner, *keys):
    obj = func.json_build_object(*[part for key in keys for part in (key, inner.c[key])])
    return select(func.coalesce(func.json_agg(obj), func.json_build_array())).select_from(inner).scalar_subquery()


@lru_cache(maxsize=1)
def _gather_statement():
    """The statement, built once; parameters: parcel_id, footprint (city CRS), on (date)."""
    p = schema.parcel
    z, rl, rd, pc, r, rt = (schema.zoning_zone, schema.red_line, schema.road, lt.protection_corridor,
                            schema.raster, lt.rule_table)
    fp = bindparam("footprint", type_=Geometry(srid=CITY_SRID))
    on = bindparam("on", type_=Date)
    target = select(*parcel_columns(), p.c.geom).where(p.c.id == bindparam("parcel_id", type_=BigInteger)).cte("target")
    zone_keys = ("id", "zone_code", "name", "land_use", "max_density", "max_far", "max_floors", "max_height",
                 "min_setback", "min_ground_elevation", "plan_decision", "subdivision_zone", "attributes")
    zone = (
        select(func.json_build_object(*[part for k in zone_keys for part in (k, z.c[k])]))
        .where(func.ST_Intersects(z.c.geom, func.ST_PointOnSurface(target.c.geom))).limit(1).scalar_subquery()
    )
    red_lines = (
        select(rl.c.id, rl.c.road_id, rl.c.decision, rd.c.row_width, rd.c.name.label("road_name"),
               _hex(rl.c.geom).label("wkb"), func.ST_Distance(rl.c.geom, target.c.geom).label("distance"))
        .select_from(rl.outerjoin(rd, rd.c.id == rl.c.road_id))
        .where(func.ST_DWithin(rl.c.geom, target.c.geom, SEARCH_RADIUS_M))
        .order_by("distance").limit(8).correlate(target).subquery()
    )
    road = (
        select(rd.c.id, rd.c.name, rd.c.row_width, func.ST_Distance(rd.c.geom, target.c.geom).label("distance"))
        .where(func.ST_DWithin(rd.c.geom, target.c.geom, SEARCH_RADIUS_M), rd.c.row_width.is_not(None))
        .order_by("distance").limit(1).correlate(target).subquery()
    )
    found = (
        select(pc.c.id, pc.c.kind, pc.c.source_table, pc.c.source_id, pc.c.half_width, pc.c.attributes,
               pc.c.rule_table_id, _hex(func.ST_Intersection(pc.c.geom, fp)).label("wkb"))
        .where(func.ST_Intersects(pc.c.geom, fp)).subquery()
    )
    rasters = (
        select(r.c.name, r.c.kind, r.c.path, r.c.srid, r.c.resolution)
        .where(r.c.kind.in_(RASTER_KINDS), func.ST_Intersects(r.c.footprint, fp))
        .order_by(r.c.resolution).subquery()
    )
    in_force = (
        select(rt).where(rt.c.effective_from <= on, (rt.c.effective_to.is_(None)) | (rt.c.effective_to > on))
        .subquery()
    )
    return select(
        *[c for c in target.c if c.name != "geom"],
        zone.label("zone"),
        _json_list(red_lines, "id", "road_id", "decision", "row_width", "road_name", "wkb",
                   "distance").label("red_lines"),
        _json_list(road, "id", "name", "row_width", "distance").label("road"),
        _json_list(found, "id", "kind", "source_table", "source_id", "half_width", "attributes", "rule_table_id",
                   "wkb").label("corridors"),
        _json_list(rasters, "name", "kind", "path", "srid", "resolution").label("rasters"),
        _json_list(in_force, "id", "rule_id", "version", "title", "legal_basis", "verify", "effective_from",
                   "effective_to", "data").label("rules"),
    ).select_from(target)


def _with_geom(items: list[dict]) -> list[dict]:
    return [{**{k: v for k, v in item.items() if k != "wkb"}, "geom": from_wkb(bytes.fromhex(item["wkb"]))}
            for item in items]


def _rule_versions(items: list[dict]) -> dict[str, RuleVersion]:
    out = {}
    for item in items:
        item = {**item, "effective_from": date.fromisoformat(item["effective_from"]),
                "effective_to": date.fromisoformat(item["effective_to"]) if item["effective_to"] else None}
        out[item["rule_id"]] = RuleVersion(**{k: item[k] for k in RuleVersion.__dataclass_fields__})
    return out


def _sample_first(rasters: list[dict], footprint, kind: str, raster_root: Path | None) -> tuple[list, str] | None:
    for raster in (r for r in rasters if r["kind"] == kind):
        values = sample_under(resolve_path(raster["path"], raster_root), footprint, raster["srid"])
        if values.size:
            return values.tolist(), raster["name"]
    return None


def gather(conn: Connection, parcel_id: int, proposal: Proposal, *, on: date | None = None,
           raster_root: Path | None = None) -> Context:
    row = conn.execute(_gather_statement(), {"parcel_id": parcel_id, "footprint": to_db(proposal.footprint),
                                             "on": on or date.today()}).mappings().first()
    if row is None:
        raise NotFound(f"no parcel version {parcel_id}")
    parcel = parcel_row(row)
    if parcel["end_lifespan"] is not None:
        raise Conflict(f"parcel version {parcel_id} is not current; check against the current version")
    ctx = Context(parcel=parcel, rules=_rule_versions(row["rules"]), zone=row["zone"])
    ctx.red_lines = _with_geom(row["red_lines"])
    ctx.road = row["road"][0] if row["road"] else None
    found = _with_geom(row["corridors"])
    ctx.corridors = [c for c in found if c["kind"] != "road_reserve"]
    ctx.road_reserves = [c for c in found if c["kind"] == "road_reserve"]
    dtm = _sample_first(row["rasters"], proposal.footprint, "dtm", raster_root)
    ctx.ground = dtm[0] if dtm else None
    flood = _sample_first(row["rasters"], proposal.footprint, "flood_level", raster_root)
    if flood:
        ctx.flood_level, ctx.flood_source = max(flood[0]), f"flood water level raster {flood[1]}"
    elif ctx.ground:
        depth = _sample_first(row["rasters"], proposal.footprint, "flood_depth", raster_root)
        if depth:
            ctx.flood_level = median(ctx.ground) + max(depth[0])
            ctx.flood_source = f"DTM + max depth of flood result raster {depth[1]}"
    return ctx
