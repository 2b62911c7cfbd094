"""Automated compliance check of a proposed building on a parcel, rule by rule.

``check_building`` gathers everything a check needs in a handful of indexed queries (the parcel,
its zone, red lines and roads within a search radius, protection corridors under the footprint,
rasters under the footprint, the rule tables in force) and then evaluates each rule with plain
shapely geometry and the rule tables' data. Each result carries the rule id, pass / fail /
not_evaluated, the measured value, the limit, the legal basis (with rule version and verify
flag) and the geometry at fault as GeoJSON in the city CRS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from statistics import median

from geoalchemy2 import Geometry
from shapely.geometry import Point, Polygon
from shapely.ops import unary_union
from sqlalchemy import BigInteger, Date, bindparam, func, select
from sqlalchemy.engine import Connection

from gisserver import schema
from gisserver.crs import CITY_EPSG, CITY_SRID
from gisserver.errors import Conflict, InvalidInput, NotFound
from licensing import ruledata
from licensing import tables as lt
from licensing.geometry import from_wkb, to_db, to_geojson
from licensing.register import parcel_columns, parcel_row
from licensing.rules import RuleVersion
from licensing.sampling import resolve_path, sample_under

#: how far from the parcel red lines and roads are looked for (search, not law)
SEARCH_RADIUS_M = 50.0
#: geometric noise below which an overlap is not a fault
AREA_TOLERANCE_M2 = 0.01
USES = ("civil", "industrial")
#: raster catalogue kinds the check samples: ground, flood water level (m, Hòn Dấu), flood max depth (m)
RASTER_KINDS = ("dtm", "flood_level", "flood_depth")
PASS, FAIL, NOT_EVALUATED = "pass", "fail", "not_evaluated"


@lru_cache(maxsize=1)
def _check_meta() -> dict:
    with open(Path(__file__).resolve().parent / "data" / "checks.json", encoding="utf-8") as fh:
        return json.load(fh)


@dataclass(frozen=True)
class Proposal:
    """A proposed building: footprint (city CRS), floors, height (m), ground-floor elevation (m, Hòn Dấu)."""

    footprint: Polygon
    floors: int
    height: float
    floor_elevation: float | None = None
    use: str = "civil"
    existing_urban: bool = False
    subdivision_lots: tuple = ()

    def __post_init__(self):
        if self.footprint.geom_type not in ("Polygon", "MultiPolygon") or self.footprint.area <= 0:
            raise InvalidInput("footprint must be a polygon with an area")
        if not isinstance(self.floors, int) or isinstance(self.floors, bool) or not 1 <= self.floors <= 200:
            raise InvalidInput("floors must be an integer between 1 and 200")
        if not isinstance(self.height, int | float) or not 0 < self.height <= 1000:
            raise InvalidInput("height must be a number of metres in (0, 1000]")
        if self.floor_elevation is not None and not -50 <= self.floor_elevation <= 500:
            raise InvalidInput("floor_elevation must be metres above Hòn Dấu in [-50, 500]")
        if self.use not in USES:
            raise InvalidInput(f"use must be one of {', '.join(USES)}")


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


# --- gathering ----------------------------------------------------------------------------------
# Everything a check needs comes back from ONE statement (the parcel as a CTE, the rest as
# correlated JSON subqueries, each on a GiST index): at city scale the round trips, not the
# geometry, dominate a check's time.

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


# --- evaluation ------------------------------------------------------------------------------------

def _result(rule: str, status: str, message: str, *, basis: str | None = None, measured=None, limit=None,
            unit: str | None = None, geometry=None, rule_version: RuleVersion | None = None) -> dict:
    meta = _check_meta().get(rule, {})
    return {
        "rule": rule,
        "title": meta.get("title", rule),
        "status": status,
        "measured": None if measured is None else round(float(measured), 3),
        "limit": None if limit is None else round(float(limit), 3),
        "unit": unit,
        "legal_basis": basis or (rule_version.basis() if rule_version else meta.get("legal_basis", "")),
        "rule_table": None if rule_version is None else {"rule_id": rule_version.rule_id,
                                                         "version": rule_version.version,
                                                         "verify": rule_version.verify},
        "message": message,
        "geometry": to_geojson(geometry) if status == FAIL else None,
    }


def _lot_area(ctx: Context) -> float:
    return float(ctx.parcel["geom"].area)


def _fronting_road_width(ctx: Context) -> tuple[float | None, str]:
    for rl in ctx.red_lines:
        if rl["row_width"]:
            return float(rl["row_width"]), rl["road_name"] or f"road of red line {rl['id']}"
    if ctx.road and ctx.road["row_width"]:
        return float(ctx.road["row_width"]), ctx.road["name"] or f"road {ctx.road['id']}"
    return None, ""


def check_inside_parcel(ctx: Context, p: Proposal) -> dict:
    outside = p.footprint.difference(ctx.parcel["geom"])
    if outside.area > AREA_TOLERANCE_M2:
        return _result("inside_parcel", FAIL, f"{outside.area:.2f} m2 of the footprint lies outside the parcel",
                       measured=outside.area, limit=0, unit="m2", geometry=outside)
    return _result("inside_parcel", PASS, "the footprint lies inside the parcel", measured=0, limit=0, unit="m2")


def check_land_use(ctx: Context, p: Proposal) -> dict:
    rule = ctx.rules.get("land_use_for_building")
    codes = ruledata.land_use_codes_of(ctx.parcel.get("land_use"))
    if rule is None or not codes:
        why = "no rule table in force" if rule is None else "the parcel's land use is not recorded"
        return _result("land_use", NOT_EVALUATED, why, rule_version=rule)
    allowed = rule.data["by_use"].get(p.use, [])
    fitting = [c for c in codes if c in allowed]
    msg = f"parcel land use {'+'.join(codes)}; a {p.use} building needs one of {', '.join(allowed) or 'none'}"
    if not fitting:
        return _result("land_use", FAIL, msg + ": convert the land-use purpose first", measured=None, limit=None,
                       geometry=ctx.parcel["geom"], rule_version=rule)
    return _result("land_use", PASS, msg, rule_version=rule)


def check_red_line_crossing(ctx: Context, p: Proposal) -> dict:
    faults = []
    # a footprint may stand on the red line; crossing means the line runs through its interior
    inner = p.footprint.buffer(-0.01)
    for rl in ctx.red_lines:
        crossing = inner.intersection(rl["geom"])
        if crossing.length > 0.01:
            faults.append(crossing)
    for reserve in ctx.road_reserves:
        if reserve["geom"] is not None and reserve["geom"].area > AREA_TOLERANCE_M2:
            faults.append(reserve["geom"])
    if not ctx.red_lines and not ctx.road_reserves:
        return _result("red_line_crossing", NOT_EVALUATED,
                       f"no red line or road reserve within {SEARCH_RADIUS_M:.0f} m of the parcel")
    if faults:
        fault = unary_union(faults)
        return _result("red_line_crossing", FAIL, "the building crosses the red line into the road reserve",
                       measured=len(faults), limit=0, unit="crossings", geometry=fault)
    return _result("red_line_crossing", PASS, "no part of the building crosses the red line", measured=0, limit=0,
                   unit="crossings")


def check_setback(ctx: Context, p: Proposal) -> dict:
    rule = ctx.rules.get("setback_red_line")
    if not ctx.red_lines or rule is None:
        why = "no rule table in force" if rule is None else f"no red line within {SEARCH_RADIUS_M:.0f} m"
        return _result("red_line_setback", NOT_EVALUATED, why, rule_version=rule)
    nearest = min(ctx.red_lines, key=lambda r: p.footprint.distance(r["geom"]))
    width, road_name = _fronting_road_width(ctx)
    if width is None:
        return _result("red_line_setback", NOT_EVALUATED, "the right-of-way width of the road is unknown",
                       rule_version=rule)
    required = ruledata.required_setback(rule.data, width, p.height)
    zone_min = (ctx.zone or {}).get("min_setback") or 0.0
    limit = max(required, float(zone_min))
    distance = p.footprint.distance(nearest["geom"])
    msg = f"{distance:.2f} m from the red line of {road_name} (road {width:g} m, H {p.height:g} m)"
    if distance + 1e-6 < limit:
        fault = p.footprint.intersection(nearest["geom"].buffer(limit))
        return _result("red_line_setback", FAIL, f"{msg}: needs {limit:g} m", measured=distance, limit=limit,
                       unit="m", geometry=fault, rule_version=rule)
    return _result("red_line_setback", PASS, f"{msg}: needs {limit:g} m", measured=distance, limit=limit,
                   unit="m", rule_version=rule)


def check_density(ctx: Context, p: Proposal) -> dict:
    rule = ctx.rules.get("density_individual_house")
    if rule is None:
        return _result("density", NOT_EVALUATED, "no density rule table in force")
    lot = _lot_area(ctx)
    existing = bool(((ctx.zone or {}).get("attributes") or {}).get("existing_urban", p.existing_urban))
    limit, exception = ruledata.max_density(rule.data, lot, p.height, existing_urban=existing)
    zone_limit = (ctx.zone or {}).get("max_density")
    if zone_limit is not None and zone_limit < limit and not exception:
        limit = float(zone_limit)
    density = p.footprint.area / lot
    msg = f"footprint {p.footprint.area:.1f} m2 on a {lot:.1f} m2 lot"
    if exception:
        msg += " (existing-urban exception: lot <= 100 m2 and H <= 25 m)"
    if density > limit + 1e-9:
        return _result("density", FAIL, msg, measured=density, limit=limit, unit="ratio", geometry=p.footprint,
                       rule_version=rule)
    return _result("density", PASS, msg, measured=density, limit=limit, unit="ratio", rule_version=rule)


def check_far(ctx: Context, p: Proposal) -> dict:
    rule = ctx.rules.get("far_limit")
    zone_far = (ctx.zone or {}).get("max_far")
    if rule is None and zone_far is None:
        return _result("far", NOT_EVALUATED, "no FAR limit in force")
    limit = float(zone_far) if zone_far is not None else float(rule.data["max_far"])
    source = "zone" if zone_far is not None else "default"
    if rule is not None and zone_far is not None:
        limit = min(limit, float(rule.data["max_far"]))
    far = p.footprint.area * p.floors / _lot_area(ctx)
    status = FAIL if far > limit + 1e-9 else PASS
    return _result("far", status, f"{p.floors} floors x {p.footprint.area:.1f} m2 ({source} limit)", measured=far,
                   limit=limit, unit="ratio", geometry=p.footprint, rule_version=rule)


def _zone_limit(ctx: Context, p: Proposal, rule: str, key: str, value: float, unit: str) -> dict:
    zone = ctx.zone
    if zone is None or zone.get(key) is None:
        return _result(rule, NOT_EVALUATED, "the parcel lies in no zone with this limit")
    limit = float(zone[key])
    basis = f"Zoning plan {zone.get('plan_decision') or ''} zone {zone['zone_code']}".strip()
    status = FAIL if value > limit + 1e-9 else PASS
    return _result(rule, status, f"zone {zone['zone_code']}: {value:g} {unit}, limit {limit:g}", measured=value,
                   limit=limit, unit=unit, geometry=p.footprint, basis=basis)


def check_zone_floors(ctx: Context, p: Proposal) -> dict:
    return _zone_limit(ctx, p, "zone_floors", "max_floors", p.floors, "floors")


def check_zone_height(ctx: Context, p: Proposal) -> dict:
    return _zone_limit(ctx, p, "zone_height", "max_height", p.height, "m")


def check_floors_by_row(ctx: Context, p: Proposal) -> dict:
    rule = ctx.rules.get("floors_by_row")
    width, road_name = _fronting_road_width(ctx)
    if rule is None or width is None:
        why = "no rule table in force" if rule is None else f"no road with a known width within {SEARCH_RADIUS_M:.0f} m"
        return _result("floors_by_row", NOT_EVALUATED, why, rule_version=rule)
    limit = ruledata.max_floors_by_row(rule.data, width)
    status = FAIL if p.floors > limit else PASS
    return _result("floors_by_row", status, f"{road_name}: right of way {width:g} m allows {limit} floors",
                   measured=p.floors, limit=limit, unit="floors", geometry=p.footprint, rule_version=rule)


def check_corridors(ctx: Context, p: Proposal) -> dict:
    hits = [c for c in ctx.corridors if c["geom"] is not None and c["geom"].area > AREA_TOLERANCE_M2]
    if not hits:
        return _result("protection_corridors", PASS, "no protection corridor under the footprint", measured=0,
                       limit=0, unit="m2")
    area = sum(c["geom"].area for c in hits)
    parts = []
    for c in hits:
        attrs = c["attributes"] or {}
        label = f"{attrs['voltage_kv']:g} kV line" if c["kind"] == "power_line" else attrs.get("name") or c["kind"]
        parts.append(f"{label} ({c['half_width']:g} m each side)")
    return _result("protection_corridors", FAIL, "inside the corridor of " + "; ".join(parts), measured=area,
                   limit=0, unit="m2", geometry=unary_union([c["geom"] for c in hits]))


def _frontage(lot, red_lines: list[dict], tolerance: float) -> float:
    if not red_lines:
        return 0.0
    lines = unary_union([r["geom"] for r in red_lines])
    along = lot.boundary.intersection(lines.buffer(tolerance))
    # the length along the red line (projections), so the side edges within the tolerance do not count
    total = 0.0
    for piece in getattr(along, "geoms", [along]):
        if piece.geom_type != "LineString" or piece.is_empty:
            continue
        total += abs(lines.project(Point(piece.coords[0])) - lines.project(Point(piece.coords[-1])))
    return total


def check_subdivision(ctx: Context, p: Proposal) -> dict:
    rule = ctx.rules.get("min_lot_subdivision")
    if not p.subdivision_lots:
        return _result("subdivision_min_lot", NOT_EVALUATED, "no subdivision proposed", rule_version=rule)
    zone_no = (ctx.zone or {}).get("subdivision_zone")
    limits = ruledata.min_lot_limits(rule.data, zone_no) if rule else None
    if limits is None:
        return _result("subdivision_min_lot", NOT_EVALUATED, "the parcel's subdivision zone is unknown",
                       rule_version=rule)
    tolerance = float(rule.data.get("frontage_tolerance", 0.5))
    outside = unary_union([lot.difference(ctx.parcel["geom"]) for lot in p.subdivision_lots])
    if outside.area > AREA_TOLERANCE_M2:
        return _result("subdivision_min_lot", FAIL,
                       f"{outside.area:.2f} m2 of the proposed lots lie outside the parcel",
                       measured=outside.area, limit=0, unit="m2", geometry=outside, rule_version=rule)
    faults, worst = [], None
    for lot in p.subdivision_lots:
        frontage = _frontage(lot, ctx.red_lines, tolerance)
        depth = lot.area / frontage if frontage > 0 else 0.0
        short = lot.area < limits["min_area"] or frontage < limits["min_frontage"] or depth < limits["min_depth"]
        if short:
            faults.append(lot)
        if worst is None or lot.area < worst[0]:
            worst = (lot.area, frontage, depth)
    msg = (f"zone {zone_no}: smallest lot {worst[0]:.1f} m2, frontage {worst[1]:.2f} m, depth {worst[2]:.2f} m; "
           f"needs {limits['min_area']} m2, {limits['min_frontage']} m, {limits['min_depth']} m")
    status = FAIL if faults else PASS
    return _result("subdivision_min_lot", status, msg, measured=worst[0], limit=limits["min_area"], unit="m2",
                   geometry=unary_union(faults) if faults else None, rule_version=rule)


def check_floor_vs_dtm(ctx: Context, p: Proposal) -> dict:
    if p.floor_elevation is None:
        return _result("floor_vs_dtm", NOT_EVALUATED, "no floor elevation given")
    if not ctx.ground:
        return _result("floor_vs_dtm", NOT_EVALUATED, "no DTM raster registered under the footprint")
    ground = median(ctx.ground)
    status = FAIL if p.floor_elevation + 1e-9 < ground else PASS
    return _result("floor_vs_dtm", status, f"floor {p.floor_elevation:g} m, ground (DTM median) {ground:.2f} m",
                   measured=p.floor_elevation, limit=ground, unit="m", geometry=p.footprint)


def check_floor_vs_flood(ctx: Context, p: Proposal) -> dict:
    rule = ctx.rules.get("floor_elevation")
    if p.floor_elevation is None or rule is None:
        why = "no floor elevation given" if p.floor_elevation is None else "no rule table in force"
        return _result("floor_vs_flood", NOT_EVALUATED, why, rule_version=rule)
    required, level = ruledata.required_floor_elevation(rule.data, p.use, ctx.flood_level)
    source = ctx.flood_source or "design flood level of the rule table"
    parts = [f"flood level {level:g} m ({source}) + margin = {required:.2f} m"]
    practice = rule.data.get("hcmc_min_floor_elevation")
    if practice is not None and practice > required:
        required = float(practice)
        parts.append(f"HCMC practice level {practice:g} m")
    zone_min = (ctx.zone or {}).get("min_ground_elevation")
    if zone_min is not None and zone_min > required:
        required = float(zone_min)
        parts.append(f"zone minimum ground elevation {zone_min:g} m")
    status = FAIL if p.floor_elevation + 1e-9 < required else PASS
    return _result("floor_vs_flood", status, "; ".join(parts), measured=p.floor_elevation, limit=required,
                   unit="m", geometry=p.footprint, rule_version=rule)


CHECKS = (
    check_inside_parcel, check_land_use, check_red_line_crossing, check_setback, check_density, check_far,
    check_zone_floors, check_zone_height, check_floors_by_row, check_corridors, check_subdivision,
    check_floor_vs_dtm, check_floor_vs_flood,
)


def evaluate(ctx: Context, proposal: Proposal) -> list[dict]:
    return [check(ctx, proposal) for check in CHECKS]


def overall(results: list[dict]) -> str:
    statuses = {r["status"] for r in results}
    if FAIL in statuses:
        return FAIL
    return PASS


def check_building(conn: Connection, parcel_id: int, proposal: Proposal, *, on: date | None = None,
                   raster_root: Path | None = None, with_history: bool = False) -> dict:
    """The compliance report of ``proposal`` on parcel version ``parcel_id`` under the rules in force on ``on``.

    ``with_history`` adds the parcel's history (versions of its number and ancestry), so one request
    gives an officer the parcel, its history and the rule-by-rule report.
    """
    on = on or date.today()
    ctx = gather(conn, parcel_id, proposal, on=on, raster_root=raster_root)
    results = evaluate(ctx, proposal)
    report = _report(ctx, proposal, results, on)
    if with_history:
        report["parcel"]["history"] = parcel_history_summary(conn, ctx.parcel)
    return report


def parcel_history_summary(conn: Connection, parcel: dict) -> dict:
    from licensing.register import lineage, parcel_versions

    versions = parcel_versions(conn, parcel["ward_code"], parcel["sheet_no"], parcel["parcel_no"])
    return {
        "versions": [{"id": v["id"], "land_use": v["land_use"], "area": round(v["geom"].area, 2),
                      "begin_lifespan": v["begin_lifespan"].isoformat(),
                      "end_lifespan": v["end_lifespan"].isoformat() if v["end_lifespan"] else None}
                     for v in versions],
        "ancestry": lineage(conn, parcel["id"])["edges"],
    }


def _report(ctx: Context, proposal: Proposal, results: list[dict], on: date) -> dict:
    parcel = ctx.parcel
    zone = ctx.zone
    return {
        "overall": overall(results),
        "counts": {s: sum(r["status"] == s for r in results) for s in (PASS, FAIL, NOT_EVALUATED)},
        "rules_on": on.isoformat(),
        "crs": f"EPSG:{CITY_EPSG}",
        "parcel": {
            "id": parcel["id"], "ward_code": parcel["ward_code"], "sheet_no": parcel["sheet_no"],
            "parcel_no": parcel["parcel_no"], "area": round(parcel["geom"].area, 2), "land_use": parcel["land_use"],
            "geometry": to_geojson(parcel["geom"]),
        },
        "zone": None if zone is None else {k: v for k, v in zone.items() if k != "attributes"},
        "building": {
            "footprint_area": round(proposal.footprint.area, 2), "floors": proposal.floors,
            "height": proposal.height, "floor_elevation": proposal.floor_elevation, "use": proposal.use,
            "geometry": to_geojson(proposal.footprint),
        },
        "context": {
            "red_lines": [{"id": r["id"], "road": r["road_name"], "row_width": r["row_width"],
                           "geometry": to_geojson(r["geom"])} for r in ctx.red_lines[:4]],
            "corridors": [{"kind": c["kind"], "source_id": c["source_id"], "half_width": c["half_width"]}
                          for c in ctx.corridors],
        },
        "results": results,
    }


def _number(body: dict, key: str, *, required: bool = True):
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{key} must be a number")
    return value


def proposal_from_json(body: dict) -> tuple[int, Proposal]:
    """(parcel id, proposal) from a JSON request body; the footprint's CRS is ``crs`` (default EPSG:9210)."""
    from licensing.geometry import POLYGONAL, parse_geojson, srid_of

    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    parcel_id = body.get("parcel_id")
    if not isinstance(parcel_id, int) or isinstance(parcel_id, bool) or parcel_id < 1:
        raise InvalidInput("parcel_id must be a positive integer")
    srid = srid_of(body.get("crs"))
    footprint = parse_geojson(body.get("footprint"), srid=srid, expect=POLYGONAL, what="footprint")
    lots = body.get("subdivision_lots") or []
    if not isinstance(lots, list) or len(lots) > 100:
        raise InvalidInput("subdivision_lots must be a list of at most 100 polygons")
    floors = _number(body, "floors")
    if not isinstance(floors, int):
        raise InvalidInput("floors must be an integer")
    proposal = Proposal(
        footprint=footprint, floors=floors, height=float(_number(body, "height")),
        floor_elevation=_number(body, "floor_elevation", required=False), use=body.get("use", "civil"),
        existing_urban=bool(body.get("existing_urban", False)),
        subdivision_lots=tuple(parse_geojson(lot, srid=srid, expect=("Polygon",), what=f"subdivision_lots[{i}]")
                               for i, lot in enumerate(lots)),
    )
    return parcel_id, proposal
