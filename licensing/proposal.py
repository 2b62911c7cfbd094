"""A proposed building as the compliance check takes it, and its parsing from a JSON request."""

from __future__ import annotations

from dataclasses import dataclass

from shapely.geometry import Polygon

from gisserver.errors import InvalidInput
from licensing.geometry import POLYGONAL, parse_geojson, srid_of

USES = ("civil", "industrial")


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
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    parcel_id = body.get("parcel_id")
    if not isinstance(parcel_id, int) or isinstance(parcel_id, bool) or parcel_id < 1:
        raise InvalidInput("parcel_id must be a positive integer")
    return parcel_id, building_from_json(body)


def building_from_json(body: dict) -> Proposal:
    """The proposed building of a JSON request body (footprint, floors, height, ...), without a parcel."""
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    srid = srid_of(body.get("crs"))
    footprint = parse_geojson(body.get("footprint"), srid=srid, expect=POLYGONAL, what="footprint")
    lots = body.get("subdivision_lots") or []
    if not isinstance(lots, list) or len(lots) > 100:
        raise InvalidInput("subdivision_lots must be a list of at most 100 polygons")
    floors = _number(body, "floors")
    if not isinstance(floors, int):
        raise InvalidInput("floors must be an integer")
    return Proposal(
        footprint=footprint, floors=floors, height=float(_number(body, "height")),
        floor_elevation=_number(body, "floor_elevation", required=False), use=body.get("use", "civil"),
        existing_urban=bool(body.get("existing_urban", False)),
        subdivision_lots=tuple(parse_geojson(lot, srid=srid, expect=("Polygon",), what=f"subdivision_lots[{i}]")
                               for i, lot in enumerate(lots)),
    )
