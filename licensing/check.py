"""Automated compliance check of a proposed building on a parcel, rule by rule.

``check_building`` gathers the context in one statement (:mod:`licensing.context`) and then
evaluates each rule with plain shapely geometry and the rule tables' data. Each result carries
the rule id, pass / fail / not_evaluated, the measured value, the limit, the legal basis (with
rule version and verify flag) and the geometry at fault as GeoJSON in the city CRS.
"""

from __future__ import annotations

import json
from datetime import date
from functools import lru_cache
from pathlib import Path
from statistics import median

from shapely.geometry import Point
from shapely.ops import unary_union
from sqlalchemy.engine import Connection

from gisserver.crs import CITY_EPSG
from licensing import ruledata
from licensing.context import SEARCH_RADIUS_M, Context, gather
from licensing.geometry import to_geojson
from licensing.proposal import USES, Proposal, building_from_json, proposal_from_json
from licensing.rules import RuleVersion

__all__ = ["CHECKS", "USES", "Context", "Proposal", "building_from_json", "check_building", "evaluate",
           "proposal_from_json"]

#: geometric noise below which an overlap is not a fault
AREA_TOLERANCE_M2 = 0.01
PASS, FAIL, NOT_EVALUATED = "pass", "fail", "not_evaluated"


@lru_cache(maxsize=1)
def _check_meta() -> dict:
    with open(Path(__file__).resolve().parent / "data" / "checks.json", encoding="utf-8") as fh:
        return json.load(fh)


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


