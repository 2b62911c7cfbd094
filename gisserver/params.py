"""Request parameters parsed once into typed values; every failure is an InvalidParameter (400)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from gisserver.crs import resolve_srid
from gisserver.errors import InvalidParameter, UnknownCRS


@dataclass(frozen=True)
class BBox:
    minx: float
    miny: float
    maxx: float
    maxy: float
    srid: int = 4326


def parse_float(name: str, value: str | None, *, default: float | None = None,
                minimum: float | None = None, maximum: float | None = None) -> float:
    if value is None or value == "":
        if default is None:
            raise InvalidParameter(name, "is required")
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidParameter(name, f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise InvalidParameter(name, "must be finite")
    if minimum is not None and number < minimum:
        raise InvalidParameter(name, f"must be >= {minimum}")
    if maximum is not None and number > maximum:
        raise InvalidParameter(name, f"must be <= {maximum}")
    return number


def parse_int(name: str, value: str | None, *, default: int | None = None,
              minimum: int | None = None, maximum: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise InvalidParameter(name, "is required")
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidParameter(name, f"{value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise InvalidParameter(name, f"must be >= {minimum}")
    if maximum is not None and number > maximum:
        raise InvalidParameter(name, f"must be <= {maximum}")
    return number


def parse_bool(name: str, value: str | None, *, default: bool) -> bool:
    if value is None or value == "":
        return default
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise InvalidParameter(name, f"{value!r} is not a boolean (true/false)")


def parse_crs(name: str, value: str | None, *, default: int | None = None) -> int:
    try:
        return resolve_srid(value, default=default)
    except UnknownCRS as exc:
        raise InvalidParameter(name, exc.message) from None


def parse_bbox(name: str, value: str | None, *, srid: int = 4326) -> BBox | None:
    """``minx,miny,maxx,maxy`` (a 6-number 3D bbox keeps its 2D part)."""
    if value is None or value == "":
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise InvalidParameter(name, "must have 4 (or 6) comma-separated numbers")
    numbers = [parse_float(name, p.strip()) for p in parts]
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    minx, miny, maxx, maxy = numbers
    if miny > maxy:
        raise InvalidParameter(name, "the lower corner must be below the upper corner")
    if srid == 4326 and not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InvalidParameter(name, "longitude/latitude out of range")
    if minx > maxx and srid != 4326:
        raise InvalidParameter(name, "minx must not exceed maxx")
    return BBox(minx, miny, maxx, maxy, srid)


def parse_datetime(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(name, f"{value!r} is not an ISO 8601 date-time") from None


def parse_choice(name: str, value: str | None, choices: tuple[str, ...], *, default: str) -> str:
    if value is None or value == "":
        return default
    if value not in choices:
        raise InvalidParameter(name, f"must be one of {', '.join(choices)}")
    return value
