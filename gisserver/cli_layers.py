"""``gisserver layers ...``: load vector files into layers, inspect files, list the catalogue."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from gisserver.cli import _engine
from gisserver.cli_errors import GISGroup
from gisserver.schema import ACCESS_LEVELS


def register(main: click.Group) -> None:
    main.add_command(layers)


@click.group("layers", cls=GISGroup)
def layers():
    """Vector layers: load files (GeoPackage, zipped Shapefile, GeoJSON, FlatGeobuf, CSV+WKT, DXF, DGN)."""


def _mapping(items: tuple[str, ...]) -> dict[str, str] | None:
    mapping = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise click.BadParameter(f"{item!r} is not SRC=DST", param_hint="--map")
        mapping[src] = dst
    return mapping or None


@layers.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--layer", "layer_name", required=True, help="target layer: a canonical name (parcels, roads ...) "
              "or a new/generic layer name")
@click.option("--crs", default=None, help="CRS of the file's coordinates, e.g. EPSG:4326 (needed when the file "
              "has none)")
@click.option("--force-crs", is_flag=True, help="use --crs even when it contradicts the file's CRS")
@click.option("--mode", type=click.Choice(["replace", "append"]), default="replace", show_default=True)
@click.option("--policy", type=click.Choice(["repair", "reject-feature", "fail"]), default="repair",
              show_default=True, help="what to do with invalid geometries")
@click.option("--map", "maps", multiple=True, metavar="SRC=DST", help="source field -> column (repeatable)")
@click.option("--source-layer", default=None, help="layer or member to read when the file holds several")
@click.option("--encoding", default=None, help="text encoding when the file does not say (e.g. cp1258)")
@click.option("--title", default=None, help="title of a new generic layer")
@click.option("--access-level", type=click.Choice(ACCESS_LEVELS), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=65536, show_default=True)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the full JSON load report (every repaired/rejected feature) to this file")
@click.option("--quiet", is_flag=True, help="no progress bar")
def load(path, layer_name, crs, force_crs, mode, policy, maps, source_layer, encoding, title, access_level,
         batch_size, report_path, quiet):
    """Load the vector file PATH into a layer, all or nothing."""
    from tqdm import tqdm

    from layers.ingest import load_layer

    mapping = _mapping(maps)
    engine = _engine()
    with tqdm(unit=" features", unit_scale=True, disable=quiet, desc=layer_name) as bar:

        def progress(done: int, total: int | None) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        report = load_layer(
            engine, path, layer_name, actor=os.environ.get("USER", "cli"), crs=crs, force_crs=force_crs,
            mode=mode, policy=policy, mapping=mapping, source_layer=source_layer, encoding=encoding, title=title,
            access_level=access_level, batch_size=batch_size, progress=progress,
        )
    if report_path is not None:
        report_path.write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    click.echo(
        f"{report.layer} ({report.kind}, {report.mode}): read {report.read}, loaded {report.loaded}, "
        f"repaired {report.repaired}, rejected {report.rejected}; version {report.data_version}, "
        f"{report.feature_count} features; {report.seconds.get('total', 0):.1f} s"
    )
    for issue in report.issues[:20]:
        click.echo(f"  feature {issue['fid']}: {issue['action']}: {issue['reason']}")
    if len(report.issues) > 20:
        click.echo(f"  ... {report.repaired + report.rejected - 20} more (use --report FILE)")


@layers.command("inspect")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source-layer", default=None)
@click.option("--encoding", default=None)
def inspect(path, source_layer, encoding):
    """Show what a vector file holds: driver, layer, CRS, geometry type, fields, feature count."""
    from layers.readers import open_vector

    source = open_vector(path, source_layer=source_layer, encoding=encoding)
    click.echo(json.dumps({
        "driver": source.driver, "layer": source.layer, "crs": source.crs.to_string() if source.crs else None,
        "geometry_type": source.geometry_type, "features": source.feature_count, "fields": source.fields,
        "encoding": source.recode or "utf-8", "warnings": source.warnings,
    }, ensure_ascii=False, indent=2))


@layers.command("list")
def list_cmd():
    """List the layer catalogue."""
    from layers.catalogue import list_layers

    with _engine().connect() as conn:
        for info in list_layers(conn):
            click.echo(f"{info.name:24} {info.kind:9} {info.geometry_type:16} {info.access_level:10} "
                       f"v{info.data_version:<4} {info.feature_count:>10} {info.title}")
