"""Rule tables as data: the seed files, their validation and the pure functions that read them.

Every numeric limit of the checks lives in a rule table (``licensing/data/rules/*.json`` seeds
version 1 of each; admins publish new versions through the API). The functions here take the
table's ``data`` and plain numbers and return numbers: no database, no constants of law in code.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date
from functools import lru_cache
from pathlib import Path

from gisserver.errors import InvalidInput

RULES_DIR = Path(__file__).resolve().parent / "data" / "rules"


@lru_cache(maxsize=1)
def _seed_files() -> tuple[dict, ...]:
    seeds = []
    for path in sorted(RULES_DIR.glob("*.json")):
        with open(path, encoding="utf-8") as fh:
            seeds.append(json.load(fh))
    return tuple(seeds)


def seed_rule_tables() -> list[dict]:
    """Rows for ``rule_table`` (version 1 of every rule), validated."""
    rows = []
    for seed in _seed_files():
        validate_rule_data(seed["rule_id"], seed["data"])
        rows.append({
            "rule_id": seed["rule_id"], "version": 1, "title": seed["title"],
            "legal_basis": seed["legal_basis"], "verify": bool(seed["verify"]),
            "effective_from": date.fromisoformat(seed["effective_from"]), "effective_to": None,
            "data": seed["data"], "note": "seed", "created_by": "migration",
        })
    return rows


# --- validation: one function per rule table -----------------------------------------------------

def _num(value, what: str, *, minimum: float = 0.0, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{what} must be a number")
    if value < minimum:
        raise InvalidInput(f"{what} must be >= {minimum}")
    return float(value)


def _increasing_bands(bands, what: str, value_key=None) -> None:
    """[[upper bound or null, value], ...] with increasing bounds and a final open band."""
    if not isinstance(bands, list) or not bands:
        raise InvalidInput(f"{what} must be a non-empty list")
    previous = -math.inf
    for i, band in enumerate(bands):
        if not isinstance(band, list | tuple) or len(band) != 2:
            raise InvalidInput(f"{what}[{i}] must be [upper bound or null, value]")
        bound = _num(band[0], f"{what}[{i}] bound", allow_none=True)
        _num(band[1], f"{what}[{i}] value")
        last = i == len(bands) - 1
        if (bound is None) != last:
            raise InvalidInput(f"{what}: only the last band is open (null bound)")
        if bound is not None and bound <= previous:
            raise InvalidInput(f"{what}: bounds must increase")
        previous = bound if bound is not None else previous


def _v_density(data: dict) -> None:
    points = data.get("points")
    if not isinstance(points, list) or len(points) < 2:
        raise InvalidInput("points must list at least two [lot area, density] pairs")
    previous = -math.inf
    for i, p in enumerate(points):
        if not isinstance(p, list) or len(p) != 2:
            raise InvalidInput(f"points[{i}] must be [lot area, density]")
        area = _num(p[0], f"points[{i}] area")
        _num(p[1], f"points[{i}] density")
        if p[1] > 1:
            raise InvalidInput(f"points[{i}] density is a fraction (<= 1)")
        if area <= previous:
            raise InvalidInput("points: lot areas must increase")
        previous = area
    exc = data.get("existing_urban_exception")
    if exc is not None:
        for key in ("max_lot_area", "max_height", "max_density"):
            _num(exc.get(key), f"existing_urban_exception.{key}")


def _v_far(data: dict) -> None:
    _num(data.get("max_far"), "max_far")


def _v_setback(data: dict) -> None:
    bands = data.get("bands")
    if not isinstance(bands, list) or not bands:
        raise InvalidInput("bands must be a non-empty list")
    for i, band in enumerate(bands):
        if not isinstance(band, dict):
            raise InvalidInput(f"bands[{i}] must be an object")
        _num(band.get("road_width_below"), f"bands[{i}].road_width_below", allow_none=True)
        _increasing_bands(band.get("steps"), f"bands[{i}].steps")
    if bands[-1].get("road_width_below") is not None:
        raise InvalidInput("the last road-width band must be open (road_width_below null)")


def _v_floors(data: dict) -> None:
    _increasing_bands(data.get("bands"), "bands")


def _v_power(data: dict) -> None:
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise InvalidInput("rows must be a non-empty list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput(f"rows[{i}] must be an object")
        _num(row.get("max_kv"), f"rows[{i}].max_kv")
        _num(row.get("half_width"), f"rows[{i}].half_width")
        _num(row.get("vertical_clearance"), f"rows[{i}].vertical_clearance")
        if row.get("conductor") not in ("bare", "covered", "any"):
            raise InvalidInput(f"rows[{i}].conductor must be bare, covered or any")


def _v_water(data: dict) -> None:
    by_kind = data.get("by_kind")
    if not isinstance(by_kind, dict):
        raise InvalidInput("by_kind must map water-body kinds to widths")
    for kind, width in by_kind.items():
        _num(width, f"by_kind.{kind}")
    _num(data.get("default"), "default", allow_none=True)


def _v_road(data: dict) -> None:
    factor = _num(data.get("half_width_factor"), "half_width_factor")
    if factor > 1:
        raise InvalidInput("half_width_factor must be <= 1")
    _num(data.get("default_row_width"), "default_row_width", allow_none=True)


def _v_min_lot(data: dict) -> None:
    zones = data.get("zones")
    if not isinstance(zones, dict) or not zones:
        raise InvalidInput("zones must map zone numbers to limits")
    for zone, limits in zones.items():
        if not isinstance(limits, dict):
            raise InvalidInput(f"zones.{zone} must be an object")
        for key in ("min_area", "min_frontage", "min_depth"):
            _num(limits.get(key), f"zones.{zone}.{key}")
    _num(data.get("frontage_tolerance", 0.5), "frontage_tolerance")


def _v_elevation(data: dict) -> None:
    _num(data.get("design_flood_level"), "design_flood_level", minimum=-100)
    _num(data.get("hcmc_min_floor_elevation"), "hcmc_min_floor_elevation", minimum=-100, allow_none=True)
    margins = data.get("margins")
    if not isinstance(margins, dict) or "civil" not in margins:
        raise InvalidInput("margins must give at least the civil margin")
    for kind, margin in margins.items():
        _num(margin, f"margins.{kind}")


def _v_deadlines(data: dict) -> None:
    days = data.get("working_days")
    if not isinstance(days, dict) or not days:
        raise InvalidInput("working_days must map dossier kinds to days")
    for kind, n in days.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidInput(f"working_days.{kind} must be a positive integer")
    holidays = data.get("public_holidays", [])
    if not isinstance(holidays, list):
        raise InvalidInput("public_holidays must be a list of ISO dates")
    for d in holidays:
        try:
            date.fromisoformat(d)
        except (TypeError, ValueError):
            raise InvalidInput(f"public_holidays: {d!r} is not an ISO date") from None


def _v_attachments(data: dict) -> None:
    _num(data.get("max_bytes"), "max_bytes", minimum=1)
    types = data.get("mime_types")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) and "/" in t for t in types):
        raise InvalidInput("mime_types must be a non-empty list of MIME types")


def _v_land_use(data: dict) -> None:
    by_use = data.get("by_use")
    if not isinstance(by_use, dict) or "civil" not in by_use:
        raise InvalidInput("by_use must map building uses (at least civil) to lists of land-use codes")
    for use, codes in by_use.items():
        if not isinstance(codes, list) or not all(isinstance(c, str) and 0 < len(c) <= 8 for c in codes):
            raise InvalidInput(f"by_use.{use} must be a list of land-use codes")


VALIDATORS = {
    "density_individual_house": _v_density,
    "far_limit": _v_far,
    "setback_red_line": _v_setback,
    "floors_by_row": _v_floors,
    "power_line_corridor": _v_power,
    "water_corridor": _v_water,
    "road_corridor": _v_road,
    "min_lot_subdivision": _v_min_lot,
    "floor_elevation": _v_elevation,
    "dossier_deadlines": _v_deadlines,
    "dossier_attachments": _v_attachments,
    "land_use_for_building": _v_land_use,
}


def validate_rule_data(rule_id: str, data) -> None:
    validator = VALIDATORS.get(rule_id)
    if validator is None:
        raise InvalidInput(f"unknown rule table {rule_id!r}; one of {', '.join(sorted(VALIDATORS))}")
    if not isinstance(data, dict):
        raise InvalidInput("rule data must be a JSON object")
    validator(data)


# --- evaluation: pure functions over a table's data ----------------------------------------------

def interpolate(points: list, x: float) -> float:
    """Piecewise-linear interpolation over increasing [x, y] points, constant outside."""
    if x <= points[0][0]:
        return float(points[0][1])
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x <= x1:
            return float(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return float(points[-1][1])


def max_density(data: dict, lot_area: float, height: float, *, existing_urban: bool) -> tuple[float, bool]:
    """(max net density as a fraction, whether the existing-urban exception applied)."""
    exc = data.get("existing_urban_exception")
    if existing_urban and exc and lot_area <= exc["max_lot_area"] and height <= exc["max_height"]:
        return float(exc["max_density"]), True
    return interpolate(data["points"], lot_area), False


def banded(bands: list, x: float) -> float:
    """Value of the first band whose upper bound is above x (``[[bound or None, value], ...]``)."""
    for bound, value in bands:
        if bound is None or x < bound:
            return float(value)
    return float(bands[-1][1])


def required_setback(data: dict, road_width: float, height: float) -> float:
    for band in data["bands"]:
        below = band["road_width_below"]
        if below is None or road_width < below:
            return banded(band["steps"], height)
    return banded(data["bands"][-1]["steps"], height)


def max_floors_by_row(data: dict, row_width: float) -> int:
    return int(banded(data["bands"], row_width))


def power_line_row(data: dict, voltage_kv: float, conductor: str) -> dict | None:
    """The corridor row for a line: the smallest voltage class covering it, conductor-specific first."""
    candidates = [r for r in data["rows"] if voltage_kv <= r["max_kv"]]
    if not candidates:
        return None
    lowest = min(r["max_kv"] for r in candidates)
    same_class = [r for r in candidates if r["max_kv"] == lowest]
    for row in same_class:
        if row["conductor"] == conductor:
            return row
    for row in same_class:
        if row["conductor"] == "any":
            return row
    return max(same_class, key=lambda r: r["half_width"])


def water_half_width(data: dict, kind: str | None) -> float | None:
    width = data["by_kind"].get(kind or "", data.get("default"))
    return None if width is None else float(width)


def land_use_codes_of(value: str | None) -> list[str]:
    """Codes of a parcel's land use as recorded (``ODT``, ``ODT+CLN``, ``ODT, CLN`` ...)."""
    return [c for c in re.split(r"[+,;/\s]+", (value or "").upper()) if c]


def min_lot_limits(data: dict, zone: int | str | None) -> dict | None:
    if zone is None:
        return None
    return data["zones"].get(str(zone))


def required_floor_elevation(data: dict, use: str, flood_level: float | None = None) -> tuple[float, float]:
    """(required floor elevation from the flood level + margin, the flood level used)."""
    level = float(data["design_flood_level"] if flood_level is None else flood_level)
    margins = data["margins"]
    margin = float(margins.get(use, margins["civil"]))
    return level + margin, level
