"""``lidar`` command group (index files, process them into rasters) with progress bars.

Register it in the main CLI with ``main.add_command(lidar.cli.lidar)``.
"""

from __future__ import annotations

import json
import sys

import click

from gisserver.cli_errors import GISGroup


def _engine():
    from gisserver.config import Settings
    from gisserver.db import make_engine, resolve_database_url

    return make_engine(resolve_database_url(Settings.from_env(), start_embedded=True), pool_size=2)


@click.group(cls=GISGroup)
def lidar():
    """LiDAR point clouds: file index, terrain and surface models."""


@lidar.command("info")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--crs", default=None, help="CRS to declare when the file has none (e.g. EPSG:28992)")
def info(path, crs):
    """Validate a file and print its summary (one chunked pass)."""
    from lidar.io import summarize

    click.echo(json.dumps(summarize(path, crs=crs).as_dict(), indent=2))


@lidar.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--crs", default=None, help="CRS to declare when the files have none")
@click.option("--vertical-datum", default=None, help="height reference, e.g. 'Hon Dau'")
def index(paths, crs, vertical_datum):
    """Add files to the LiDAR file index (each file in its own transaction)."""
    from lidar.store import index_file

    engine = _engine()
    try:
        for path in paths:
            with engine.begin() as conn:
                file_id = index_file(conn, path, crs=crs, vertical_datum=vertical_datum)
            click.echo(f"indexed {path} as {file_id}")
    finally:
        engine.dispose()


@lidar.command("process")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "outdir", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--prefix", required=True, help="raster catalogue name prefix (e.g. q8_2026)")
@click.option("--crs", default=None, help="CRS to declare when the files have none")
@click.option("--vertical-datum", default=None)
@click.option("--tile-size", default=500.0, show_default=True, type=float)
@click.option("--resolution", default=1.0, show_default=True, type=float)
@click.option("--native", is_flag=True, help="keep the files' own CRS instead of the city CRS")
@click.option("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster)")
@click.option("--workers", default=None, type=int, help="LocalCluster worker processes")
@click.option("--per-tile", is_flag=True, help="one COG per tile + VRT mosaics (city-scale runs)")
@click.option("--buildings", is_flag=True,
              help="also buildings and LoD2 roofs per tile (cadastral footprints first), stored with the rasters")
def process(paths, outdir, prefix, crs, vertical_datum, tile_size, resolution, native, scheduler, workers, per_tile,
            buildings):
    """Ground, DTM, DSM, nDSM and hillshade COGs, registered in the raster catalogue, as a job;
    with --buildings also the buildings and their roofs, stored in the same transaction."""
    from tqdm import tqdm

    from gisserver.crs import CITY_SRID
    from lidar import jobs

    if buildings and native:
        raise click.UsageError("--buildings needs the city CRS (buildings are stored in it): drop --native")
    engine = _engine()
    try:
        with engine.begin() as conn:
            job_id = jobs.submit_processing_job(
                conn, sources=[{"path": p, "crs": crs, "vertical_datum": vertical_datum} for p in paths],
                prefix=prefix, tile_size=tile_size, resolution=resolution,
                target_srid=None if native else CITY_SRID, owner="cli", per_tile_cogs=per_tile,
                buildings=buildings)
        click.echo(f"job {job_id}")
        with tqdm(total=100, unit="%", file=sys.stderr) as bar:

            def report(fraction, stage):
                bar.n = int(fraction * 100)
                bar.set_description(stage)
                bar.refresh()

            result = jobs.run_processing_job(engine, job_id, outdir, scheduler=scheduler, n_workers=workers,
                                             on_progress=report)
        built = result.get("buildings")
        if built is not None:  # the ids of a city's buildings would fill the terminal: their count instead
            result = {**result, "buildings": {**{k: v for k, v in built.items() if k != "ids"},
                                              "stored": len(built["ids"])}}
        click.echo(json.dumps(result, indent=2))
        if built is not None:
            click.echo(f"{len(built['ids'])} buildings stored ({built['detected']} detected, "
                       f"{built['cadastral_updated']} cadastral footprints updated, {built['lod2']} LoD2 roofs)")
    finally:
        engine.dispose()



@lidar.command("city-model")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "outdir", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--crs", default=None, help="CRS to declare when the file has none")
@click.option("--vertical-datum", default=None)
@click.option("--native", is_flag=True, help="keep the file's own CRS instead of the city CRS")
@click.option("--lod2/--lod1-only", default=True, show_default=True, help="fit LoD2 roofs")
@click.option("--tile-size", default=500.0, show_default=True, type=float)
@click.option("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster)")
@click.option("--workers", default=1, show_default=True, type=int,
              help="LocalCluster workers (1: in this process; more: worker processes)")
def city_model(path, outdir, crs, vertical_datum, native, lod2, tile_size, scheduler, workers):
    """3D city model of a file, tile by tile: CityJSON 2.0 (LoD1 + LoD2) and a 3D Tiles tileset with its GLB."""
    from pathlib import Path

    from tqdm import tqdm

    from gisserver.crs import CITY_SRID
    from lidar.cityjson import write_3dtiles, write_cityjson
    from lidar.citymodel import city_model as build

    with tqdm(total=100, unit="%", file=sys.stderr) as bar:

        def report(fraction, stage):
            bar.n = int(fraction * 100)
            bar.set_description(stage)
            bar.refresh()

        model = build(path, crs=crs, vertical_datum=vertical_datum, target_srid=None if native else CITY_SRID,
                      lod2=lod2, tile_size=tile_size, scheduler=scheduler, n_workers=workers,
                      processes=workers > 1, progress=report)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    write_cityjson(out / "buildings.city.json", model.buildings, model.srid)
    write_3dtiles(out, model.buildings, model.srid)
    click.echo(json.dumps({"srid": model.srid, "vertical_datum": model.vertical_datum, **model.statistics,
                           "files": ["buildings.city.json", "tileset.json", "buildings.glb"]}, indent=2))
