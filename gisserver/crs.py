"""Coordinate reference systems, above all the city CRS (VN-2000 / TM-3 105°45').

EPSG's default VN-2000 -> WGS84 operation for EPSG:9210 is the "Mekong delta" one (EPSG:5194),
about 0.8 m off the official transformation of Decision 05/2007/QĐ-BTNMT (EPSG:6960). We register
the city CRS under a custom SRID whose definition carries the official 7 parameters (PROJ's
``+towgs84`` uses the position-vector convention: the decision's rotation signs are flipped).
Requests naming EPSG:9210 are served in this CRS.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pyproj import CRS, Transformer

from gisserver.errors import UnknownCRS

#: SRID under which the city CRS is registered in PostGIS (user range; 9210 is its EPSG code).
CITY_SRID = 909210
CITY_EPSG = 9210
CITY_NAME = "VN-2000 / TM-3 105-45 (HCMC, official Decision 05/2007 parameters)"
CITY_PROJ4 = (
    "+proj=tmerc +lat_0=0 +lon_0=105.75 +k=0.9999 +x_0=500000 +y_0=0 +ellps=WGS84 "
    "+towgs84=-191.90441429,-39.30318279,-111.45032835,0.00928836,-0.01975479,0.00427372,"
    "0.252906278 +units=m +no_defs +type=crs"
)
#: Heights in the city datum refer to the Hòn Dấu tide gauge.
CITY_VERTICAL_DATUM = "Hon Dau (VN-2000 heights)"

CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
WEB_MERCATOR_SRID = 3857

# CRSs the service accepts for input and output; anything else with an EPSG code that PostGIS
# knows is accepted too (see resolve_srid), these are just advertised.
ADVERTISED_SRIDS = (4326, 3857, CITY_EPSG, 3405, 4756, 5896, 5897, 5898, 5899)

_URI_RE = re.compile(
    r"^https?://www\.opengis\.net/def/crs/(?P<auth>EPSG|OGC)/[^/]+/(?P<code>[A-Za-z0-9]+)$"
)
_CURIE_RE = re.compile(r"^\[?(?P<auth>EPSG|OGC|CRS):{1,2}(?P<code>[A-Za-z0-9]+)\]?$", re.I)
_URN_RE = re.compile(r"^urn:ogc:def:crs:(?P<auth>EPSG|OGC):[0-9.]*:(?P<code>[A-Za-z0-9]+)$", re.I)


def city_crs() -> CRS:
    return _city_crs()


@lru_cache(maxsize=1)
def _city_crs() -> CRS:
    # built from the PROJ string, then named, so files written with it (LAS WKT, GeoTIFF,
    # GeoPackage) say what they are instead of "unknown"
    d = CRS.from_proj4(CITY_PROJ4).to_json_dict()
    d["source_crs"]["name"] = "VN-2000 / TM-3 105-45"
    d["source_crs"]["base_crs"]["name"] = "VN-2000"
    d["source_crs"]["base_crs"]["datum"]["name"] = "Vietnam 2000"
    d["source_crs"]["conversion"]["name"] = "TM-3 105-45"
    d["transformation"]["name"] = "VN-2000 to WGS 84 (Decision 05/2007/QD-BTNMT)"
    return CRS.from_json_dict(d)


OFFICIAL_TOWGS84 = (-191.90441429, -39.30318279, -111.45032835, 0.00928836, -0.01975479, 0.00427372, 0.252906278)


def srid_to_epsg(srid: int) -> int:
    """The EPSG code users see for a storage SRID."""
    return CITY_EPSG if srid == CITY_SRID else srid


def crs_uri(srid: int) -> str:
    return f"http://www.opengis.net/def/crs/EPSG/0/{srid_to_epsg(srid)}"


def resolve_srid(value: str | int | None, *, default: int | None = None) -> int:
    """Parse a CRS given as an EPSG code, ``EPSG:n``, an OGC URI/URN or ``CRS84``.

    Returns the storage SRID (``CITY_SRID`` for EPSG:9210). ``CRS84`` (lon/lat) maps to 4326;
    callers that care about axis order must check :func:`is_crs84` themselves.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise UnknownCRS("no CRS given")
        return default
    if isinstance(value, int):
        return _check_epsg(value)
    text = value.strip()
    if text.isdigit():
        return _check_epsg(int(text))
    for pattern in (_URI_RE, _CURIE_RE, _URN_RE):
        m = pattern.match(text)
        if m:
            auth, code = m.group("auth").upper(), m.group("code").upper()
            if auth in ("OGC", "CRS") and code in ("CRS84", "84"):
                return 4326
            if auth == "EPSG" and code.isdigit():
                return _check_epsg(int(code))
            break
    raise UnknownCRS(f"unknown or unsupported CRS {value!r}; use e.g. EPSG:9210, EPSG:4326, CRS84")


def is_crs84(value: str | None) -> bool:
    if not value:
        return False
    v = value.strip().upper()
    return v.endswith("CRS84") or v in ("CRS:84", "OGC:CRS84")


@lru_cache(maxsize=256)
def _check_epsg(code: int) -> int:
    if code in (CITY_EPSG, CITY_SRID):
        return CITY_SRID
    try:
        CRS.from_epsg(code)
    except Exception as exc:  # pyproj raises CRSError
        raise UnknownCRS(f"EPSG:{code} is not a known CRS") from exc
    return code


def pyproj_crs(srid: int) -> CRS:
    """pyproj CRS for a storage SRID (the city SRID gets the official parameters)."""
    if srid in (CITY_SRID, CITY_EPSG):
        return city_crs()
    return CRS.from_epsg(srid)


@lru_cache(maxsize=64)
def transformer(src_srid: int, dst_srid: int) -> Transformer:
    """A lon/lat-ordered (always_xy) transformer between two storage SRIDs."""
    return Transformer.from_crs(pyproj_crs(src_srid), pyproj_crs(dst_srid), always_xy=True)


def srid_from_pyproj(crs: CRS) -> int:
    """Map a CRS read from a file onto a storage SRID; VN-2000 TM-3 105°45' maps to the city SRID."""
    if crs is None:
        raise UnknownCRS("no CRS")
    if crs.equals(city_crs(), ignore_axis_order=True) or _is_vn2000_tm3_10545(crs):
        return CITY_SRID
    epsg = crs.to_epsg(min_confidence=70)
    if epsg is None:
        raise UnknownCRS(f"CRS {crs.name!r} has no EPSG code; declare the CRS explicitly")
    return _check_epsg(epsg)


def _is_vn2000_tm3_10545(crs: CRS) -> bool:
    """EPSG:9210 itself, or a TM-3 105°45' projection on VN-2000 (by name or by the official shift)."""
    if crs.to_epsg(min_confidence=70) == CITY_EPSG:
        return True
    source = crs.source_crs if crs.is_bound else crs
    if source is None or not source.is_projected:
        return False
    geodetic = source.geodetic_crs.name if source.geodetic_crs else ""
    if not ("VN-2000" in geodetic or "Vietnam 2000" in geodetic or (crs.is_bound and _has_official_shift(crs))):
        return False
    op = source.coordinate_operation
    params = {p.name: p.value for p in (op.params if op else [])}
    return (
        abs(params.get("Longitude of natural origin", 0) - 105.75) < 1e-9
        and abs(params.get("Scale factor at natural origin", 0) - 0.9999) < 1e-12
        and abs(params.get("False easting", 0) - 500000) < 1e-6
    )


def _has_official_shift(crs: CRS) -> bool:
    values = [p["value"] for p in crs.to_json_dict().get("transformation", {}).get("parameters", [])]
    return len(values) == 7 and all(abs(a - b) < 1e-6 for a, b in zip(values, OFFICIAL_TOWGS84, strict=True))
