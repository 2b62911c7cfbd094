"""Seeding the tile cache: every tile of a lon/lat box over a range of zooms (no Flask)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from tiles import tms
from tiles.cache import TileCache


def count_tiles(bbox: tuple[float, float, float, float], zooms: range) -> int:
    total = 0
    for z in zooms:
        ul = tms.web_mercator().tile(bbox[0], bbox[3], z)
        lr = tms.web_mercator().tile(bbox[2], bbox[1], z)
        total += (lr.x - ul.x + 1) * (lr.y - ul.y + 1)
    return total


def seed_tiles(engine: Engine, cache: TileCache, layer: str, bbox: tuple[float, float, float, float],
               zooms: range, fmt: str = "mvt", style: str = "default",
               progress: Callable[[int], None] | None = None) -> dict:
    """Build the missing or outdated tiles of ``layer`` in ``bbox``; returns counts."""
    from tiles import mvt

    stats = {"built": 0, "cached": 0, "bytes": 0}
    wmts = None
    if fmt != "mvt":
        from tiles.wmts import WMTSService

        wmts = WMTSService(engine, None, "", cache)
    for tile in tms.tiles_in_lonlat_bbox(bbox, zooms):
        if wmts is None:
            _, result = mvt.layer_tile(engine, cache, layer, None, tile.z, tile.x, tile.y)
        else:
            result = wmts.get_tile({"LAYER": layer, "STYLE": style, "TILEMATRIXSET": tms.GOOGLE_ID,
                                    "TILEMATRIX": str(tile.z), "TILEROW": str(tile.y), "TILECOL": str(tile.x),
                                    "FORMAT": "image/png" if fmt == "png" else "image/jpeg"}).tile
        stats["cached" if result.hit else "built"] += 1
        stats["bytes"] += len(result.data)
        if progress:
            progress(1)
    return stats
