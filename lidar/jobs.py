"""LiDAR processing as a job in the ``job`` table: queued -> running (progress %) -> succeeded/failed.

``submit_processing_job`` records the request; ``run_processing_job`` runs it (in a worker, the CLI
or a test), reporting progress in ``job.progress`` and, at the end and in one transaction, the
registered rasters, the tile index and the job's result. A failed run records every failed tile
in ``lidar_tile`` (status 'failed') and the error on the job: nothing is half-registered.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from gisserver.crs import CITY_SRID
from gisserver.errors import GISError, NotFound
from gisserver.schema import job
from lidar.catalogue import register_products
from lidar.store import record_tiles
from lidar.tiling import Source, TileFailed, TileScheme, run_tiled

JOB_KIND = "lidar-process"


def submit_processing_job(conn, *, sources: list[dict], prefix: str, tile_size: float = 500.0,
                          resolution: float = 1.0, target_srid: int | None = CITY_SRID,
                          access_level: str = "public", owner: str | None = None,
                          per_tile_cogs: bool = False) -> int:
    """Queue a run; ``sources`` are dicts with ``path`` and optional ``crs`` / ``vertical_datum``.

    ``per_tile_cogs``: write one COG per tile and register VRT mosaics (city-scale runs).
    """
    params = {"sources": sources, "prefix": prefix, "tile_size": tile_size, "resolution": resolution,
              "target_srid": target_srid, "access_level": access_level, "per_tile_cogs": per_tile_cogs}
    return int(conn.execute(insert(job).values(kind=JOB_KIND, status="queued", params=params, owner=owner,
                                               message="queued").returning(job.c.id)).scalar_one())


class _Progress:
    """Writes job.progress (percent) at most once per whole percent, each in its own transaction."""

    def __init__(self, engine: Engine, job_id: int):
        self.engine, self.job_id, self.last = engine, job_id, -1

    def __call__(self, fraction: float, stage: str) -> None:
        pct = int(fraction * 100)
        if pct == self.last:
            return
        self.last = pct
        with self.engine.begin() as conn:
            conn.execute(update(job).where(job.c.id == self.job_id).values(progress=min(pct, 99), message=stage))


def run_processing_job(engine: Engine, job_id: int, outdir, *, scheduler: str | None = None,
                       n_workers: int | None = None, processes: bool = True, on_progress=None) -> dict:
    """Run a queued job; ``on_progress(fraction, stage)`` is called besides the job row updates."""
    with engine.begin() as conn:
        row = conn.execute(
            select(job.c.params, job.c.status).where(job.c.id == job_id, job.c.kind == JOB_KIND)
        ).one_or_none()
        if row is None:
            raise NotFound(f"no LiDAR job {job_id}")
        conn.execute(update(job).where(job.c.id == job_id).values(status="running", started_at=func.now(),
                                                                  message="running"))
    p = row.params
    sources = [Source(s["path"], s.get("crs"), s.get("vertical_datum")) for s in p["sources"]]
    record = _Progress(engine, job_id)

    def progress(fraction: float, stage: str) -> None:
        record(fraction, stage)
        if on_progress is not None:
            on_progress(fraction, stage)

    try:
        run = run_tiled(sources, Path(outdir), tile_size=p["tile_size"], resolution=p["resolution"],
                        target_srid=p["target_srid"], scheduler=scheduler, n_workers=n_workers,
                        processes=processes, mosaic_in_memory=not p.get("per_tile_cogs", False),
                        progress=progress)
    except GISError as exc:
        _fail(engine, job_id, exc, p["tile_size"])
        raise
    with engine.begin() as conn:
        ids = register_products(conn, run.outputs, prefix=p["prefix"], srid=run.srid,
                                vertical_datum=run.vertical_datum, sources=run.sources,
                                access_level=p["access_level"])
        tiles = record_tiles(conn, run, p["tile_size"], job_id=job_id)
        result = {"rasters": ids, "tiles": tiles, "classes": {str(k): v for k, v in run.classes.items()},
                  "points": sum(run.classes.values()), "srid": run.srid,
                  "width": run.grid.width, "height": run.grid.height}
        conn.execute(update(job).where(job.c.id == job_id).values(
            status="succeeded", progress=100, message="done", result=result, finished_at=func.now()))
    return result


def _fail(engine: Engine, job_id: int, exc: GISError, tile_size: float) -> None:
    from shapely.geometry import box

    from lidar.store import _to_city
    from lidar.tables import lidar_tile

    with engine.begin() as conn:
        # failed tiles are indexed where they can be placed in the city CRS (all are in the job's error)
        if isinstance(exc, TileFailed) and exc.details.get("srid") == CITY_SRID:
            scheme = TileScheme(tile_size, 0.0)
            for failure in exc.details.get("failures", []):
                key = tuple(failure["tile"])
                geom = _to_city(box(*scheme.core_bounds(key)), CITY_SRID)
                conn.execute(insert(lidar_tile).values(
                    job_id=job_id, tile_size=tile_size, tile_x=key[0], tile_y=key[1], status="failed",
                    error=failure["error"], geom=f"SRID={CITY_SRID};{geom.wkt}"))
        conn.execute(update(job).where(job.c.id == job_id).values(
            status="failed", error=f"{exc.code}: {exc.message}", message="failed", finished_at=func.now(),
            result={"error": exc.code, "details": exc.details}))
