"""``gisserver tiles ...``: seed, purge and invalidate the tile cache."""

from __future__ import annotations

import click


def _parse_zooms(text: str) -> range:
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-", 1))
        else:
            lo = hi = int(text)
    except ValueError:
        raise click.BadParameter("use Z or ZMIN-ZMAX, e.g. 0-14") from None
    if not 0 <= lo <= hi <= 22:
        raise click.BadParameter("zooms must satisfy 0 <= ZMIN <= ZMAX <= 22")
    return range(lo, hi + 1)


def _parse_bbox(text: str | None):
    if text is None:
        return None
    from gisserver.errors import InvalidParameter
    from gisserver.params import parse_bbox

    try:
        b = parse_bbox("bbox", text, srid=4326)
    except InvalidParameter as exc:
        raise click.BadParameter(exc.message) from None
    return (b.minx, b.miny, b.maxx, b.maxy)


def _cache():
    from gisserver.cli import _settings
    from tiles.cache import TileCache

    return TileCache(_settings().var_dir / "tiles")


def register(main: click.Group) -> None:
    @main.group("tiles")
    def tiles():
        """Tile cache: seed low zooms, purge, record edited areas."""

    @tiles.command("seed")
    @click.argument("layer")
    @click.option("--zoom", "zooms", default="0-14", show_default=True, help="zoom or range ZMIN-ZMAX")
    @click.option("--bbox", default=None, help="lon/lat minx,miny,maxx,maxy (default: the layer's extent)")
    @click.option("--format", "fmt", type=click.Choice(["mvt", "png", "jpg"]), default="mvt", show_default=True,
                  help="mvt: vector tiles; png/jpg: WMTS GoogleMapsCompatible tiles")
    @click.option("--style", default="default", show_default=True, help="style of WMTS tiles")
    @click.option("--max-tiles", default=200_000, show_default=True, type=int, help="refuse larger jobs")
    def seed(layer, zooms, bbox, fmt, style, max_tiles):
        """Render LAYER's tiles into the cache (a progress bar shows how far it is)."""
        from gisserver.cli import _engine
        from layers.catalogue import extent_wgs84, get_layer
        from tiles.seed import count_tiles, seed_tiles

        zoom_range = _parse_zooms(zooms)
        engine = _engine()
        with engine.connect() as conn:
            info = get_layer(conn, layer)
            area = _parse_bbox(bbox) or extent_wgs84(conn, info.name)
        if area is None:
            raise click.UsageError(f"layer {layer!r} has no extent yet; give --bbox")
        total = count_tiles(area, zoom_range)
        if total > max_tiles:
            raise click.UsageError(f"{total} tiles exceed --max-tiles {max_tiles}; narrow --zoom or --bbox")
        with click.progressbar(length=total, label=f"seeding {layer} z{zooms} ({total} tiles)",
                               show_pos=True) as bar:
            stats = seed_tiles(engine, _cache(), info.name, area, zoom_range, fmt, style, progress=bar.update)
        click.echo(f"{stats['built']} built, {stats['cached']} already cached, {stats['bytes']} bytes")

    @tiles.command("purge")
    @click.argument("layer")
    def purge(layer):
        """Delete every cached tile of LAYER."""
        from gisserver.cli import _engine
        from layers.catalogue import get_layer

        with _engine().connect() as conn:
            info = get_layer(conn, layer)
        cache = _cache()
        for service in ("mvt", "wmts"):
            cache.purge(f"{service}/{info.name}.{info.id}")
        click.echo(f"tile cache of {layer} purged")

    @tiles.command("changed")
    @click.argument("layer")
    @click.option("--bbox", required=True, help="lon/lat minx,miny,maxx,maxy of the edited area")
    def changed(layer, bbox):
        """Record that LAYER's current data version changed only inside BBOX."""
        from gisserver.cli import _engine
        from layers.catalogue import get_layer
        from tiles.mvt import change_key

        with _engine().connect() as conn:
            info = get_layer(conn, layer)
        _cache().record_change(change_key(info), info.data_version, _parse_bbox(bbox))
        click.echo(f"{layer} v{info.data_version}: change area recorded")
