"""XYZ raster tiles of raster products (DTM, nDSM, flood depth, hillshade) read from COGs with
rio-tiler, coloured by kind, as PNG, WebP or JPEG, with legends.

Rasters come from the ``raster`` catalogue table (path relative to the raster folder); access
follows the table's ``access_level``. Colour ramps are fixed per kind (not stretched per tile), so
neighbouring tiles and the legend agree. ``style=hillshade`` shades any elevation raster in grey,
computed on the tile with a one-pixel buffer so tiles join without seams.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.transform import Affine
from rio_tiler.colormap import cmap
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from gisserver import schema
from gisserver.errors import InvalidParameter, NotFound
from gisserver.security import Principal, can_read
from tiles import tms
from tiles.cache import CachedTile, TileCache, content_digest

TILE_SIZE = 256
MAXZOOM = 22
FORMATS = {"png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp"), "jpg": ("JPEG", "image/jpeg"),
           "jpeg": ("JPEG", "image/jpeg")}


@dataclass(frozen=True)
class Ramp:
    colormap: str
    vmin: float
    vmax: float
    unit: str
    transparent_below: float | None = None   # values below are not drawn (dry cells)
    title: str = ""


#: raster kind -> colour ramp (fixed ranges for the HCMC delta, metres in the Hon Dau datum)
RAMPS: dict[str, Ramp] = {
    "dtm": Ramp("terrain", -1.0, 8.0, "m", title="Ground elevation (DTM)"),
    "dsm": Ramp("terrain", -1.0, 40.0, "m", title="Surface elevation (DSM)"),
    "ndsm": Ramp("viridis", 0.0, 40.0, "m", title="Height above ground (nDSM)"),
    "flood_depth": Ramp("blues", 0.0, 2.0, "m", transparent_below=0.01, title="Flood depth"),
    "flood_level": Ramp("blues", 0.0, 3.0, "m", title="Flood water level"),
    "hillshade": Ramp("gray", 0.0, 255.0, "", title="Hillshade"),
}
ELEVATION_KINDS = frozenset({"dtm", "dsm"})
STYLES = ("default", "hillshade")


@dataclass(frozen=True)
class RasterInfo:
    id: int
    name: str
    kind: str
    path: Path
    access_level: str
    data_version: int
    nodata: float | None


def get_raster(conn: Connection, name: str, principal: Principal | None, raster_root: Path) -> RasterInfo:
    r = schema.raster
    row = conn.execute(select(r.c.id, r.c.name, r.c.kind, r.c.path, r.c.access_level, r.c.data_version, r.c.nodata)
                       .where(r.c.name == name)).mappings().first()
    if row is None or (principal is not None and not can_read(principal, row["access_level"])):
        raise NotFound(f"no raster named {name!r}")
    path = Path(row["path"])
    if not path.is_absolute():
        path = Path(raster_root) / path
    if not path.exists():
        raise NotFound(f"the file of raster {name!r} is missing on the server")
    return RasterInfo(row["id"], row["name"], row["kind"], path, row["access_level"], row["data_version"],
                      row["nodata"])


def list_rasters(conn: Connection, principal: Principal | None) -> list[dict]:
    """Rasters the caller may read (name, kind, resolution, datum, extent in lon/lat), newest first."""
    r = schema.raster
    rows = conn.execute(
        select(r.c.name, r.c.kind, r.c.resolution, r.c.vertical_datum, r.c.access_level, r.c.created_at,
               func.ST_XMin(func.ST_Transform(r.c.footprint, 4326)).label("west"),
               func.ST_YMin(func.ST_Transform(r.c.footprint, 4326)).label("south"),
               func.ST_XMax(func.ST_Transform(r.c.footprint, 4326)).label("east"),
               func.ST_YMax(func.ST_Transform(r.c.footprint, 4326)).label("north"))
        .order_by(r.c.created_at.desc(), r.c.id.desc())
    ).mappings()
    return [
        {"name": row["name"], "kind": row["kind"], "resolution": row["resolution"],
         "vertical_datum": row["vertical_datum"], "created_at": row["created_at"].isoformat(),
         "bounds": [row["west"], row["south"], row["east"], row["north"]]}
        for row in rows if principal is None or can_read(principal, row["access_level"])
    ]


def ramp_for(info: RasterInfo, style: str) -> Ramp:
    if style not in STYLES:
        raise InvalidParameter("style", f"must be one of {', '.join(STYLES)}")
    if style == "hillshade":
        if info.kind not in ELEVATION_KINDS and info.kind != "hillshade":
            raise InvalidParameter("style", f"hillshade needs an elevation raster, not {info.kind!r}")
        return RAMPS["hillshade"]
    return RAMPS.get(info.kind, Ramp("viridis", 0.0, 1.0, "", title=info.kind))


# --- pure array functions --------------------------------------------------------------------

def hillshade(elevation: np.ndarray, cell_size: float, azimuth: float = 315.0, altitude: float = 45.0) -> np.ndarray:
    """Grey hillshade (0-255) of an elevation array (Horn's gradient, light from ``azimuth``)."""
    z = elevation.astype("float64")
    dzdx = np.gradient(z, cell_size, axis=1)
    dzdy = np.gradient(z, cell_size, axis=0)
    slope = np.arctan(np.hypot(dzdx, dzdy))
    aspect = np.arctan2(dzdy, -dzdx)
    az = np.radians(360.0 - azimuth + 90.0)
    alt = np.radians(altitude)
    shade = np.sin(alt) * np.cos(slope) + np.cos(alt) * np.sin(slope) * np.cos(az - aspect)
    return np.clip(shade * 255.0, 0, 255).astype("uint8")


def colourise(values: np.ndarray, valid: np.ndarray, ramp: Ramp) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 array (3, h, w), alpha mask (h, w)) of ``values`` on ``ramp``; NaN is not drawn."""
    finite = np.isfinite(values)
    valid = valid & finite
    values = np.where(finite, values, ramp.vmin)
    scaled = np.clip((values.astype("float64") - ramp.vmin) / (ramp.vmax - ramp.vmin), 0, 1)
    index = np.round(scaled * 255).astype("uint8")
    lut = np.array([cmap.get(ramp.colormap)[i][:3] for i in range(256)], dtype="uint8")
    rgb = np.moveaxis(lut[index], -1, 0)
    alpha = valid.copy()
    if ramp.transparent_below is not None:
        alpha &= values >= ramp.transparent_below
    return rgb, (alpha * 255).astype("uint8")


#: any non-identity pixel transform: an image written without one makes rasterio warn
#: (NotGeoreferencedWarning), and the filter rio-tiler sets against that warning is process-wide
#: state that concurrent tile requests in other threads reset (warnings.catch_warnings is not
#: thread-safe), so the warning then escapes; the image bytes are the same
_IMAGE_TRANSFORM = Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(TILE_SIZE))


def encode(rgb: np.ndarray, alpha: np.ndarray, fmt: str) -> bytes:
    """PNG/WebP with alpha; JPEG (no alpha) on white."""
    driver = FORMATS[fmt][0]
    if driver == "JPEG":
        flat = np.where(alpha[None, :, :] > 0, rgb, 255).astype("uint8")
        return ImageData(flat).render(add_mask=False, img_format="JPEG", transform=_IMAGE_TRANSFORM)
    data = np.concatenate([rgb, alpha[None, :, :]], axis=0)
    return ImageData(data).render(add_mask=False, img_format=driver, transform=_IMAGE_TRANSFORM)


# --- tiles -------------------------------------------------------------------------------------

def _read_tile(info: RasterInfo, z: int, x: int, y: int, style: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not info.path.exists():
        raise NotFound(f"the file of raster {info.name!r} is missing")
    buffer = 1 if style == "hillshade" and info.kind != "hillshade" else 0
    try:
        with Reader(str(info.path)) as src:
            img = src.tile(x, y, z, tilesize=TILE_SIZE, indexes=1, buffer=buffer or None,
                           resampling_method="bilinear" if buffer else "nearest")
    except TileOutsideBounds:
        return None
    values = img.array.data[0]
    valid = ~np.ma.getmaskarray(img.array)[0]
    if info.nodata is not None:
        valid &= values != info.nodata
    if buffer:
        left, bottom, right, top = tms.web_tile_bounds(z, x, y)
        cell = (right - left) / TILE_SIZE
        shade = hillshade(np.where(valid, values, np.nanmean(values[valid]) if valid.any() else 0), cell)
        return shade[1:-1, 1:-1], valid[1:-1, 1:-1]
    return values, valid


def build_raster_tile(info: RasterInfo, z: int, x: int, y: int, style: str, fmt: str) -> bytes:
    ramp = ramp_for(info, style)
    read = _read_tile(info, z, x, y, style)
    if read is None:
        values = np.zeros((TILE_SIZE, TILE_SIZE))
        valid = np.zeros((TILE_SIZE, TILE_SIZE), dtype=bool)
    else:
        values, valid = read
    rgb, alpha = colourise(values, valid, ramp)
    return encode(rgb, alpha, fmt)


def raster_tile(conn: Connection, cache: TileCache | None, raster_root: Path, name: str,
                principal: Principal | None, z: int, x: int, y: int, fmt: str, style: str = "default",
                ) -> tuple[RasterInfo, CachedTile, str]:
    """One coloured XYZ tile of a readable raster, via the cache; returns (info, tile, media type)."""
    if fmt not in FORMATS:
        raise InvalidParameter("format", f"must be one of {', '.join(FORMATS)}")
    tms.check_tile(z, x, y, maxzoom=MAXZOOM)
    info = get_raster(conn, name, principal, raster_root)
    ramp_for(info, style)  # validate before touching the cache

    def build() -> bytes:
        return build_raster_tile(info, z, x, y, style, fmt)

    if cache is None:
        data = build()
        tile = CachedTile(data, info.data_version, content_digest(data).hex(), hit=False)
    else:
        tile = cache.get_or_build(f"raster/{info.name}.{info.id}/{style}/{fmt}", (f"raster:{info.name}.{info.id}",),
                                  info.data_version, z, x, y, fmt, lambda: tms.lonlat_tile_bounds(z, x, y), build)
    return info, tile, FORMATS[fmt][1]


def flood_step_tile(conn: Connection, cache: TileCache | None, principal: Principal | None, run_id: int, t: int,
                    z: int, x: int, y: int, fmt: str) -> tuple[CachedTile, str]:
    """One XYZ tile of a flood run's depth at simulated second ``t`` (the ``flood_depth`` ramp:
    0-2 m, dry cells under 1 cm transparent); returns (tile, media type).

    Access follows the ``flood_steps`` map layer (see :func:`flood.service.step_raster`).
    A run's results never change, so the cache version is the instant the run finished."""
    from flood.service import step_raster

    if fmt not in FORMATS:
        raise InvalidParameter("format", f"must be one of {', '.join(FORMATS)}")
    tms.check_tile(z, x, y, maxzoom=MAXZOOM)
    path, version = step_raster(conn, run_id, t, principal)
    info = RasterInfo(0, f"flood_run_{run_id}_t{t}", "flood_depth", path, "internal", version, None)

    def build() -> bytes:
        return build_raster_tile(info, z, x, y, "default", fmt)

    if cache is None:
        data = build()
        return CachedTile(data, version, content_digest(data).hex(), hit=False), FORMATS[fmt][1]
    tile = cache.get_or_build(f"flood/run_{run_id}/t{t}/{fmt}", (f"flood_run:{run_id}",), version, z, x, y, fmt,
                              lambda: tms.lonlat_tile_bounds(z, x, y), build)
    return tile, FORMATS[fmt][1]


def ramp_legend(ramp: Ramp) -> dict:
    """A ramp as JSON: title, unit, range, transparency cut and six stops of value -> colour."""
    colours = cmap.get(ramp.colormap)
    stops = []
    for k in range(6):
        frac = k / 5
        r, g, b, _ = colours[round(frac * 255)]
        stops.append({"value": round(ramp.vmin + frac * (ramp.vmax - ramp.vmin), 3),
                      "color": f"#{r:02x}{g:02x}{b:02x}"})
    return {"title": ramp.title, "unit": ramp.unit, "min": ramp.vmin, "max": ramp.vmax,
            "transparent_below": ramp.transparent_below, "stops": stops}


def ramp_image(ramp: Ramp, width: int = 256, height: int = 16) -> bytes:
    """A horizontal colour bar PNG of a ramp (min on the left, every colour drawn)."""
    values = np.tile(np.linspace(ramp.vmin, ramp.vmax, width), (height, 1))
    rgb, alpha = colourise(values, np.ones_like(values, dtype=bool), replace_ramp(ramp))
    return encode(rgb, alpha, "png")


def legend(conn: Connection, raster_root: Path, name: str, principal: Principal | None,
           style: str = "default") -> dict:
    """The colour ramp of a raster as JSON (stops of value -> colour)."""
    info = get_raster(conn, name, principal, raster_root)
    return {"raster": info.name, "kind": info.kind, "style": style, **ramp_legend(ramp_for(info, style))}


def legend_image(conn: Connection, raster_root: Path, name: str, principal: Principal | None,
                 style: str = "default", width: int = 256, height: int = 16) -> bytes:
    """A horizontal colour bar PNG of the raster's ramp (min on the left)."""
    info = get_raster(conn, name, principal, raster_root)
    ramp = ramp_for(info, style)
    values = np.tile(np.linspace(ramp.vmin, ramp.vmax, width), (height, 1))
    rgb, alpha = colourise(values, np.ones_like(values, dtype=bool), replace_ramp(ramp))
    return encode(rgb, alpha, "png")


def replace_ramp(ramp: Ramp) -> Ramp:
    """The ramp without its transparency cut (the legend shows every colour)."""
    return Ramp(ramp.colormap, ramp.vmin, ramp.vmax, ramp.unit, None, ramp.title)
