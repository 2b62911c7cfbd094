"""LiDAR processing as a job in the ``job`` table: queued -> running (progress %) -> succeeded/failed.

``submit_processing_job`` records the request; ``run_processing_job`` runs it (in a worker, the CLI
or a test), reporting progress in ``job.progress`` and, at the end and in one transaction, the
registered rasters, the tile index, with ``buildings`` the buildings and roofs its tiles made (as
an ingest's, see below), and the job's result. A failed run records every failed tile
in ``lidar_tile`` (status 'failed') and the error on the job: nothing is half-registered.

Ingest jobs (the HTTP API): ``preflight`` checks a file before it is queued (header, CRS declared
or in the file, complete LAZ chunk table, inside the city), ``submit_ingest_job`` queues it and
``work`` (``python -m lidar.worker``) runs queued ingests: one validating pass over the points,
the tiled run in which every tile makes its DTM/DSM/nDSM/hillshade and its buildings (the
cadastral footprints it owns, and detected ones) with their LoD2 roofs (``lidar.tile_buildings``),
and one transaction that indexes the file, registers the rasters, the tiles, the buildings and
their roof models, and writes the audit entry. A failure registers nothing and removes an
uploaded file.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import struct
import threading
import time
from pathlib import Path

import shapely
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Engine

from gisserver import audit
from gisserver.crs import CITY_SRID
from gisserver.errors import Conflict, GISError, InvalidFile, InvalidInput, NotFound
from gisserver.schema import job, raster
from lidar.catalogue import footprint_in_city_crs, register_products
from lidar.io import DEFAULT_CHUNK_SIZE, LidarFile, open_cloud, summarize
from lidar.store import cadastral_footprints, check_not_indexed, insert_file, record_tiles, store_tiled_buildings
from lidar.tile_buildings import BuildingRequest
from lidar.tiling import Source, TileFailed, TileScheme, run_tiled

log = logging.getLogger(__name__)

JOB_KIND = "lidar-process"
INGEST_KIND = "lidar-ingest"
JOB_KINDS = (JOB_KIND, INGEST_KIND)


def submit_processing_job(conn, *, sources: list[dict], prefix: str, tile_size: float = 500.0,
                          resolution: float = 1.0, target_srid: int | None = CITY_SRID,
                          access_level: str = "public", owner: str | None = None,
                          per_tile_cogs: bool = False, buildings: bool = False) -> int:
    """Queue a run; ``sources`` are dicts with ``path`` and optional ``crs`` / ``vertical_datum``.

    ``per_tile_cogs``: write one COG per tile and register VRT mosaics (city-scale runs).
    ``buildings``: the tiles also make buildings and LoD2 roofs, stored with the rasters (as an
    ingest does); they are stored in the city CRS, so the run must be in it.
    """
    if buildings and target_srid != CITY_SRID:
        raise InvalidInput("buildings are stored in the city CRS: a run with buildings cannot keep the files' "
                           "own CRS (drop --native)", details={"target_srid": target_srid})
    params = {"sources": sources, "prefix": prefix, "tile_size": tile_size, "resolution": resolution,
              "target_srid": target_srid, "access_level": access_level, "per_tile_cogs": per_tile_cogs,
              "buildings": buildings}
    return int(conn.execute(insert(job).values(kind=JOB_KIND, status="queued", params=params, owner=owner,
                                               message="queued").returning(job.c.id)).scalar_one())


class _Progress:
    """Writes job.progress (percent) and stage at most once per whole percent or new stage, each in its
    own transaction, then calls ``also`` (if given) every time."""

    def __init__(self, engine: Engine, job_id: int, also=None):
        self.engine, self.job_id, self.last, self.also = engine, job_id, None, also

    def __call__(self, fraction: float, stage: str) -> None:
        pct = int(fraction * 100)
        if (pct, stage) != self.last:
            self.last = (pct, stage)
            with self.engine.begin() as conn:
                conn.execute(update(job).where(job.c.id == self.job_id).values(progress=min(pct, 99), message=stage))
        if self.also is not None:  # the caller's own callback (a CLI progress bar), on every call
            self.also(fraction, stage)


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
    progress = _Progress(engine, job_id, also=on_progress)

    area = lidar_date = None
    try:
        building_inputs = {}
        if p.get("buildings"):
            clouds = [open_cloud(s.path, crs=s.crs, vertical_datum=s.vertical_datum) for s in sources]
            area, lidar_date = survey_area(clouds), survey_date(clouds)
            building_inputs = _building_inputs(engine, area)
        run = run_tiled(sources, Path(outdir), tile_size=p["tile_size"], resolution=p["resolution"],
                        target_srid=p["target_srid"], scheduler=scheduler, n_workers=n_workers,
                        processes=processes, mosaic_in_memory=not p.get("per_tile_cogs", False),
                        progress=progress, **building_inputs)
    except GISError as exc:
        _fail(engine, job_id, exc, p["tile_size"])
        raise
    with engine.begin() as conn:
        ids, tiles = _register_run(conn, run, p, job_id)
        result = {"rasters": ids, "tiles": tiles, "classes": {str(k): v for k, v in run.classes.items()},
                  "points": sum(run.classes.values()), "srid": run.srid,
                  "width": run.grid.width, "height": run.grid.height}
        if p.get("buildings"):
            result["buildings"] = _store_buildings(conn, run, area, lidar_date)
            result["lidar_date"] = lidar_date.isoformat() if lidar_date else None
        conn.execute(update(job).where(job.c.id == job_id).values(
            status="succeeded", progress=100, message="done", result=result, finished_at=func.now()))
    return result


def survey_area(clouds: list[LidarFile]):
    """The union of the files' footprints (header bounds) in the city CRS: where the run's cadastral
    footprints are read and where an earlier survey's detected buildings are replaced."""
    return shapely.union_all([footprint_in_city_crs(c.bounds(), c.crs.srid) for c in clouds])


def survey_date(clouds: list[LidarFile]) -> dt.date | None:
    """The LiDAR date of a run's buildings: the acquisition date (header creation date) when every
    file has the same one. A run stores one date for all its buildings, so files with different
    dates, or any file without one, give None rather than a date some buildings' points lack."""
    dates = {c.acquisition_date for c in clouds}
    if len(dates) != 1 or None in dates:
        return None
    return dt.date.fromisoformat(dates.pop())


def _building_inputs(engine: Engine, area) -> dict:
    """``run_tiled``'s arguments for buildings and LoD2 roofs per tile: the request and the
    cadastre's footprints meeting ``area`` (city CRS), each measured by the tile that owns it."""
    with engine.connect() as conn:
        cadastral = cadastral_footprints(conn, area.bounds)
    inside = shapely.intersects(list(cadastral.values()), area) if cadastral else []
    return {"buildings": BuildingRequest(), "cadastral": {
        fid: geom for (fid, geom), keep in zip(cadastral.items(), inside, strict=True) if keep}}


def _register_run(conn, run, p: dict, job_id: int) -> tuple[dict, int]:
    """The run's rasters in the catalogue and its tiles in the tile index: (raster ids, tiles)."""
    rasters = register_products(conn, run.outputs, prefix=p["prefix"], srid=run.srid,
                                vertical_datum=run.vertical_datum, sources=run.sources,
                                access_level=p["access_level"])
    return rasters, record_tiles(conn, run, p["tile_size"], job_id=job_id)


def _store_buildings(conn, run, area, lidar_date: dt.date | None) -> dict:
    """The tiles' buildings and roofs stored in the caller's transaction (``store_tiled_buildings``);
    the job result's summary of them."""
    built = store_tiled_buildings(conn, run.detected, run.cadastral, bounds=run.grid.bounds, area=area,
                                  lidar_date=lidar_date)
    return {"ids": built["stored"], "detected": built["detected"], "cadastral_updated": built["cadastral_updated"],
            "dropped_as_cadastral": built["dropped_as_cadastral"], "replaced": built["replaced"],
            "lod2": _lod2_count(conn)}


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


# --- ingest jobs (HTTP upload or server-side path) --------------------------------------------------


def preflight(path, *, crs=None, vertical_datum: str | None = None, max_area_km2: float | None = None) -> LidarFile:
    """The checks that need no pass over the points, so that a request can answer 400 at once.

    Header and VLRs, the CRS (in the file or declared: ``MissingCRS`` otherwise), an uncompressed
    file's size, a LAZ file's chunk table (a truncated LAZ has lost it), points present, the
    cloud inside the city CRS's area of use and, with ``max_area_km2``, its header extent (the
    ingest holds the area's grids in memory). Corruption inside the compressed points is found by
    the job's first pass, which then registers nothing.
    """
    cloud = open_cloud(path, crs=crs, vertical_datum=vertical_datum)
    if cloud.point_count == 0:
        raise InvalidFile(f"{cloud.path.name}: the file holds no points")
    _check_laz_chunk_table(cloud)
    cloud.check_area_of_use(CITY_SRID)
    if max_area_km2 is not None:
        x0, y0, x1, y1 = cloud.bounds(CITY_SRID)
        area = (x1 - x0) * (y1 - y0) / 1e6
        if area > max_area_km2:
            raise InvalidInput(
                f"{cloud.path.name} covers {area:.2f} km2, more than the {max_area_km2:g} km2 an HTTP ingest "
                "processes; split it or run `gisserver lidar process --per-tile` on the server",
                details={"area_km2": round(area, 3), "limit_km2": max_area_km2},
            )
    return cloud


def _check_laz_chunk_table(cloud: LidarFile) -> None:
    h = cloud.header
    if not h.are_points_compressed:
        return
    with open(cloud.path, "rb") as fh:
        fh.seek(h.offset_to_point_data)
        raw = fh.read(8)
    if len(raw) < 8:
        raise InvalidFile(f"{cloud.path.name}: truncated: the file ends before its point data")
    (offset,) = struct.unpack("<q", raw)
    # -1: a streaming writer that never came back to write the offset (the table is found at the end)
    if offset != -1 and offset >= cloud.file_size:
        raise InvalidFile(
            f"{cloud.path.name}: truncated: the LAZ chunk table should start at byte {offset} "
            f"but the file has {cloud.file_size} bytes",
            details={"expected_bytes": offset, "file_bytes": cloud.file_size},
        )


def submit_ingest_job(conn, *, path, name: str, uploaded: bool, crs: str | None = None,
                      vertical_datum: str | None = None, prefix: str | None = None, tile_size: float = 500.0,
                      resolution: float = 1.0, access_level: str = "public", owner: str) -> int:
    """Queue the ingest of a pre-flighted file; ``prefix`` of the raster names defaults to lidar_<job id>.

    ``uploaded``: the file was sent over HTTP and belongs to the server (removed if the job fails).
    """
    path = Path(path).resolve()
    check_not_indexed(conn, path)
    pending = conn.execute(select(job.c.id).where(job.c.kind == INGEST_KIND, job.c.status.in_(("queued", "running")),
                                                  job.c.params["path"].astext == str(path))).scalar()
    if pending is not None:
        raise Conflict(f"{path.name} is already being ingested (job {pending})")
    params = {"path": str(path), "name": name, "uploaded": uploaded, "crs": crs, "vertical_datum": vertical_datum,
              "prefix": prefix, "tile_size": tile_size, "resolution": resolution, "access_level": access_level}
    job_id = int(conn.execute(insert(job).values(kind=INGEST_KIND, status="queued", params=params, owner=owner,
                                                 message="queued").returning(job.c.id)).scalar_one())
    if prefix is None:
        params["prefix"] = f"lidar_{job_id}"
        conn.execute(update(job).where(job.c.id == job_id).values(params=params))
    names = [f"{params['prefix']}_{kind}" for kind in ("dtm", "dsm", "ndsm", "hillshade")]
    taken = conn.execute(select(raster.c.name).where(raster.c.name.in_(names))).scalars().first()
    if taken is not None:
        raise Conflict(f"a raster named {taken!r} is already registered; choose another prefix")
    audit.record(conn, actor=owner, action="lidar.ingest.submit", target_type="job", target_id=job_id,
                 after={"name": name, "uploaded": uploaded, "crs": crs, "prefix": params["prefix"]})
    return job_id


def job_status(conn, job_id: int) -> dict:
    """A LiDAR job as the API shows it (status, progress in percent, message, result or error)."""
    row = conn.execute(
        select(job.c.id, job.c.kind, job.c.status, job.c.progress, job.c.message, job.c.error, job.c.result,
               job.c.params, job.c.owner, job.c.created_at, job.c.started_at, job.c.finished_at)
        .where(job.c.id == job_id, job.c.kind.in_(JOB_KINDS))
    ).first()
    if row is None:
        raise NotFound(f"no LiDAR job {job_id}")
    d = dict(row._mapping)
    d["progress"] = float(d["progress"] or 0)
    params = dict(d.pop("params") or {})
    if params.get("uploaded"):
        params.pop("path", None)  # where the server keeps an upload is not the caller's business
    d["params"] = params
    for key in ("created_at", "started_at", "finished_at"):
        d[key] = d[key].isoformat() if d[key] is not None else None
    return d


def cancel_ingest_job(conn, job_id: int, *, actor: str) -> str:
    """Cancel a queued ingest (an uploaded file is removed); a running or finished one answers 409."""
    row = conn.execute(select(job.c.status, job.c.params).where(job.c.id == job_id, job.c.kind == INGEST_KIND)
                       .with_for_update()).first()
    if row is None:
        raise NotFound(f"no LiDAR ingest job {job_id}")
    if row.status != "queued":
        raise Conflict(f"job {job_id} is {row.status}; only a queued job can be cancelled")
    conn.execute(update(job).where(job.c.id == job_id).values(status="cancelled", message="cancelled",
                                                              finished_at=func.now()))
    audit.record(conn, actor=actor, action="lidar.ingest.cancel", target_type="job", target_id=job_id,
                 before={"status": "queued"}, after={"status": "cancelled"})
    if row.params.get("uploaded"):
        Path(row.params["path"]).unlink(missing_ok=True)
    return "cancelled"


def requeue_running(engine: Engine) -> int:
    """Put every ingest left 'running' back in the queue at once; returns how many.

    Only for a deployment with a single worker, when it starts: it does not wait for the jobs'
    heartbeats to go stale (:func:`claim_next` takes those by itself). Partial outputs are
    overwritten by the new run.
    """
    with engine.begin() as conn:
        return len(conn.execute(
            update(job).where(job.c.kind == INGEST_KIND, job.c.status == "running")
            .values(status="queued", progress=0, message="requeued after its worker stopped")
            .returning(job.c.id)
        ).all())


#: seconds between a worker's heartbeats on the job it runs
HEARTBEAT_SECONDS = 15.0
#: a running job whose last heartbeat is older than this (seconds) was left by a dead worker
STALE_AFTER_SECONDS = 120.0


def claim_next(engine: Engine, *, stale_after: float = STALE_AFTER_SECONDS) -> int | None:
    """Take the oldest queued ingest, or a running one whose worker stopped sending heartbeats for
    ``stale_after`` seconds (it died: crash, kill, machine restart); rows other workers hold are
    skipped. None if there is none."""
    stale = and_(job.c.status == "running",
                 job.c.heartbeat_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, stale_after))
    with engine.begin() as conn:
        pick = (select(job.c.id).where(job.c.kind == INGEST_KIND, or_(job.c.status == "queued", stale))
                .order_by(job.c.id).limit(1).with_for_update(skip_locked=True).scalar_subquery())
        return conn.execute(
            update(job).where(job.c.id == pick)
            .values(status="running", started_at=func.now(), heartbeat_at=func.now(), progress=0,
                    message="claimed")
            .returning(job.c.id)
        ).scalar()


class _Heartbeat:
    """``with _Heartbeat(engine, job_id):`` writes the job's heartbeat every ``interval`` seconds
    from a thread while the block runs (a job's stages can take minutes between progress writes)."""

    def __init__(self, engine: Engine, job_id: int, interval: float = HEARTBEAT_SECONDS):
        self.engine, self.job_id, self.interval = engine, job_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lidar-job-{job_id}-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.engine.begin() as conn:
                    conn.execute(update(job).where(job.c.id == self.job_id, job.c.status == "running")
                                 .values(heartbeat_at=func.now()))
            except Exception:  # a missed beat is retried at the next interval; the job goes on
                log.warning("heartbeat of LiDAR job %s failed", self.job_id, exc_info=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def work(engine: Engine, outdir, *, once: bool = False, poll_seconds: float = 2.0, scheduler: str | None = None,
         n_workers: int | None = None, processes: bool = True, stale_after: float = STALE_AFTER_SECONDS,
         heartbeat: float = HEARTBEAT_SECONDS) -> int:
    """Run queued ingests one after the other (and those left by a dead worker, see
    :func:`claim_next`), beating each one's heartbeat; with ``once`` return when the queue is empty."""
    done = 0
    while True:
        job_id = claim_next(engine, stale_after=stale_after)
        if job_id is None:
            if once:
                return done
            time.sleep(poll_seconds)
            continue
        try:
            with _Heartbeat(engine, job_id, heartbeat):
                run_ingest_job(engine, job_id, outdir, scheduler=scheduler, n_workers=n_workers,
                               processes=processes)
        except GISError as exc:  # recorded on the job; the worker goes on
            log.warning("LiDAR job %s failed: %s", job_id, exc.message)
        done += 1


def run_ingest_job(engine: Engine, job_id: int, outdir, *, scheduler: str | None = None,
                   n_workers: int | None = None, processes: bool = True, chunk_size: int = DEFAULT_CHUNK_SIZE,
                   on_progress=None) -> dict:
    """Validate, process and register one ingest (see the module doc); returns the job's result.

    ``on_progress(fraction, stage)`` is called after each progress write to the job row.
    """
    with engine.begin() as conn:
        row = conn.execute(select(job.c.params, job.c.owner).where(job.c.id == job_id, job.c.kind == INGEST_KIND)
                           ).one_or_none()
        if row is None:
            raise NotFound(f"no LiDAR ingest job {job_id}")
        conn.execute(update(job).where(job.c.id == job_id).values(
            status="running", message="running", started_at=func.coalesce(job.c.started_at, func.now())))
    p = row.params
    workdir = Path(outdir) / f"job_{job_id}"
    progress = _Progress(engine, job_id, also=on_progress)

    try:
        result = _ingest(engine, job_id, p, row.owner or "system", workdir, progress, chunk_size=chunk_size,
                         scheduler=scheduler, n_workers=n_workers, processes=processes)
    except Exception as exc:
        error = exc if isinstance(exc, GISError) else GISError(f"internal error: {type(exc).__name__}")
        if not isinstance(exc, GISError):
            log.exception("LiDAR job %s", job_id)
        _fail(engine, job_id, error, p["tile_size"])
        shutil.rmtree(workdir, ignore_errors=True)
        if p.get("uploaded"):
            Path(p["path"]).unlink(missing_ok=True)
        if error is exc:
            raise
        raise error from exc
    return result


def _ingest(engine: Engine, job_id: int, p: dict, owner: str, workdir: Path, progress, *, chunk_size: int,
            scheduler, n_workers, processes) -> dict:
    source = Source(p["path"], p.get("crs"), p.get("vertical_datum"))
    progress(0.0, "validate")
    summary = summarize(source.path, crs=source.crs, vertical_datum=source.vertical_datum, chunk_size=chunk_size)
    footprint = footprint_in_city_crs(summary.bounds, summary.srid)
    with engine.connect() as conn:
        check_not_indexed(conn, source.path)
    # buildings and roofs come from the same tile tasks as the rasters: no pass over the points
    # here, and only their polygons, heights and roof models come back
    run = run_tiled([source], workdir, tile_size=p["tile_size"], resolution=p["resolution"], target_srid=CITY_SRID,
                    scheduler=scheduler, n_workers=n_workers, processes=processes, chunk_size=chunk_size,
                    progress=lambda f, stage: progress(0.1 + 0.85 * f, "rasters" if stage == "done" else stage),
                    **_building_inputs(engine, footprint))
    lidar_date = dt.date.fromisoformat(summary.acquisition_date) if summary.acquisition_date else None
    progress(0.95, "register")
    with engine.begin() as conn:
        file_id = insert_file(conn, source.path, summary, name=p["name"])
        rasters, tiles = _register_run(conn, run, p, job_id)
        built = _store_buildings(conn, run, footprint, lidar_date)
        result = {"file_id": file_id, "rasters": rasters, "tiles": tiles, "points": summary.point_count,
                  "classes": {str(k): v for k, v in run.classes.items()}, "srid": run.srid, "buildings": built}
        audit.record(conn, actor=owner, action="lidar.ingest", target_type="lidar_file", target_id=file_id,
                     after={"job_id": job_id, "name": p["name"], "rasters": rasters, "tiles": tiles,
                            "buildings": len(built["ids"]), "cadastral_updated": built["cadastral_updated"]})
        conn.execute(update(job).where(job.c.id == job_id).values(
            status="succeeded", progress=100, message="done", result=result, finished_at=func.now()))
    return result


def _lod2_count(conn) -> int:
    """Buildings given an LoD2 roof in this transaction (detected and cadastral ones): PostgreSQL's
    now() is the transaction's start time, the ``created_at`` of every roof it wrote."""
    from lidar.tables import building_roof

    return int(conn.execute(select(func.count()).select_from(building_roof).where(
        building_roof.c.created_at == func.now(), building_roof.c.lod2)).scalar_one())
