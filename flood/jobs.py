"""Flood runs as persistent jobs in PostgreSQL (the project's ``job`` table plus ``flood_run``).

A run is submitted as a row (status ``queued``); workers claim rows with ``FOR UPDATE SKIP
LOCKED``, so any number of worker processes can share the queue, and nothing lives only in
memory: a restarted server or worker finds queued runs where they were. A running run sends a
heartbeat with its progress; a run whose worker died (no heartbeat for ``stale_after`` s) is put
back in the queue by :func:`recover_stale`. Cancel is a flag the running solver polls.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from geoalchemy2.shape import from_shape
from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from flood import outputs, terrain
from flood.errors import InvalidScenario, RunCancelled
from flood.scenarios import DEFAULT_SCENARIOS, Scenario
from flood.solver import Domain, GaugeRecord, Simulation, SolverParams
from flood.tables import FLOOD_LAYER, flood_extent, flood_run, flood_scenario, flood_step
from gisserver.crs import CITY_SRID, pyproj_crs
from gisserver.errors import Conflict, NotFound
from gisserver.schema import job, layer, raster
from layers.catalogue import bump_version

JOB_KIND = "flood-run"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- scenarios ---------------------------------------------------------------------------------


def register_scenario(conn: Connection, scenario: Scenario, created_by: str | None = None) -> int:
    """Store a scenario version; the same (key, version) may only be stored with the same content."""
    row = conn.execute(
        select(flood_scenario.c.id, flood_scenario.c.digest).where(
            flood_scenario.c.key == scenario.key, flood_scenario.c.version == scenario.version
        )
    ).first()
    if row is not None:
        if row.digest != scenario.digest:
            raise Conflict(f"scenario {scenario.key} v{scenario.version} exists with other content; "
                           "publish a new version instead")
        return row.id
    d = scenario.as_dict()
    return conn.execute(
        insert(flood_scenario).values(key=scenario.key, version=scenario.version, title=scenario.title,
                                      definition=d, digest=scenario.digest, data_version=d["data_version"],
                                      created_by=created_by).returning(flood_scenario.c.id)
    ).scalar_one()


def register_default_scenarios(conn: Connection) -> dict[str, int]:
    return {key: register_scenario(conn, s, "system") for key, s in DEFAULT_SCENARIOS.items()}


def load_scenario(conn: Connection, scenario_id: int) -> Scenario:
    d = conn.execute(select(flood_scenario.c.definition).where(flood_scenario.c.id == scenario_id)).scalar_one()
    return Scenario.from_dict(d)


# --- submit, status, cancel ---------------------------------------------------------------------


def submit_run(conn: Connection, *, scenario_key: str, raster_id: int, params: dict | None = None,
               scenario_version: int | None = None, owner: str | None = None) -> int:
    """Queue a run of a stored scenario on a stored DTM raster; returns the run id."""
    q = select(flood_scenario.c.id).where(flood_scenario.c.key == scenario_key)
    if scenario_version is not None:
        q = q.where(flood_scenario.c.version == scenario_version)
    scenario_id = conn.execute(q.order_by(flood_scenario.c.version.desc()).limit(1)).scalar()
    if scenario_id is None:
        raise NotFound(f"no flood scenario {scenario_key!r}")
    dtm_version = conn.execute(select(raster.c.data_version).where(raster.c.id == raster_id)).scalar()
    if dtm_version is None:
        raise NotFound(f"no raster {raster_id}")
    params = dict(params or {})
    job_id = conn.execute(
        insert(job).values(kind=JOB_KIND, status="queued", params={"scenario_id": scenario_id, **params},
                           owner=owner, message="queued").returning(job.c.id)
    ).scalar_one()
    return conn.execute(
        insert(flood_run).values(scenario_id=scenario_id, job_id=job_id, raster_id=raster_id,
                                 raster_version=dtm_version, params=params).returning(flood_run.c.id)
    ).scalar_one()


def run_status(conn: Connection, run_id: int) -> dict:
    row = conn.execute(
        select(flood_run.c.id, flood_run.c.status, flood_run.c.result, flood_run.c.attempts,
               flood_run.c.cancel_requested, job.c.progress, job.c.message, job.c.error)
        .select_from(flood_run.outerjoin(job, job.c.id == flood_run.c.job_id))
        .where(flood_run.c.id == run_id)
    ).first()
    if row is None:
        raise NotFound(f"no flood run {run_id}")
    d = dict(row._mapping)
    d["progress"] = float(d["progress"] or 0)
    return d


def request_cancel(conn: Connection, run_id: int) -> str:
    """Cancel a queued run at once; ask a running one to stop (it stops within a second or so)."""
    status = conn.execute(
        select(flood_run.c.status).where(flood_run.c.id == run_id).with_for_update()
    ).scalar()
    if status is None:
        raise NotFound(f"no flood run {run_id}")
    if status == "queued":
        _finish(conn, run_id, "cancelled", message="cancelled before it started")
        return "cancelled"
    if status == "running":
        conn.execute(update(flood_run).where(flood_run.c.id == run_id).values(cancel_requested=True))
        return "cancelling"
    return status


# --- workers -------------------------------------------------------------------------------------


def claim_next(engine: Engine, worker: str) -> int | None:
    """Take the oldest queued run (skipping rows other workers hold); None if the queue is empty."""
    with engine.begin() as conn:
        pick = (
            select(flood_run.c.id).where(flood_run.c.status == "queued", ~flood_run.c.cancel_requested)
            .order_by(flood_run.c.id).limit(1).with_for_update(skip_locked=True).scalar_subquery()
        )
        row = conn.execute(
            update(flood_run).where(flood_run.c.id == pick)
            .values(status="running", worker=worker, heartbeat_at=func.now(), attempts=flood_run.c.attempts + 1)
            .returning(flood_run.c.id, flood_run.c.job_id)
        ).first()
        if row is None:
            return None
        conn.execute(update(job).where(job.c.id == row.job_id).values(
            status="running", started_at=func.now(), progress=0, message=f"running on {worker}"))
        return row.id


def recover_stale(engine: Engine, stale_after_s: float) -> int:
    """Requeue runs whose worker stopped sending heartbeats (crash, restart); returns how many."""
    with engine.begin() as conn:
        rows = conn.execute(
            update(flood_run)
            .where(flood_run.c.status == "running",
                   flood_run.c.heartbeat_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, stale_after_s))
            .values(status="queued", worker=None)
            .returning(flood_run.c.job_id)
        ).scalars().all()
        if rows:
            conn.execute(update(job).where(job.c.id.in_(rows)).values(
                status="queued", message="requeued after its worker stopped", progress=0))
        return len(rows)


def _finish(conn: Connection, run_id: int, status: str, *, result: dict | None = None, message: str = "",
            error: str | None = None) -> None:
    job_id = conn.execute(
        update(flood_run).where(flood_run.c.id == run_id)
        .values(status=status, result=result, finished_at=func.now()).returning(flood_run.c.job_id)
    ).scalar()
    conn.execute(update(job).where(job.c.id == job_id).values(
        status=status, result=result, message=message, error=error, finished_at=func.now(),
        progress=100 if status == "succeeded" else job.c.progress))


def _heartbeat(engine: Engine, run_id: int, fraction: float, t: float) -> bool:
    """Store progress; returns True if a cancel was requested."""
    with engine.begin() as conn:
        cancel = conn.execute(
            update(flood_run).where(flood_run.c.id == run_id).values(heartbeat_at=func.now())
            .returning(flood_run.c.cancel_requested, flood_run.c.job_id)
        ).first()
        conn.execute(update(job).where(job.c.id == cancel.job_id).values(
            progress=round(min(max(fraction, 0.0), 1.0) * 100, 2), message=f"simulated {t:.0f} s"))
    return bool(cancel.cancel_requested)


def _load_dtm(conn: Connection, raster_id: int) -> tuple[np.ndarray, np.ndarray, float, object, object]:
    path = conn.execute(select(raster.c.path).where(raster.c.id == raster_id)).scalar_one()
    with rasterio.open(path) as src:
        z = src.read(1, masked=True)
        if abs(src.transform.a) != abs(src.transform.e):
            raise InvalidScenario("the DTM must have square cells")
        return (np.asarray(z.filled(np.nan), dtype=np.float64), np.ma.getmaskarray(z), abs(src.transform.a),
                src.transform, src.crs)


def execute_run(engine: Engine, run_id: int, output_dir: str | Path, *, report_every: float = 1.0) -> dict:
    """Run one claimed run to the end and store its results; cancel and failure are recorded too."""
    with engine.connect() as conn:
        run = conn.execute(select(flood_run).where(flood_run.c.id == run_id)).mappings().one()
        scenario = load_scenario(conn, run["scenario_id"])
        z, nodata, dx, transform, crs = _load_dtm(conn, run["raster_id"])
    p = run["params"]
    duration = float(p.get("duration_s", scenario.duration_s))
    z = np.where(nodata, 0.0, z)
    blocked = nodata  # no-data cells are holes in the DTM: blocked, never flooded
    if p.get("buildings") in ("blocked", "raised"):
        with engine.connect() as conn:
            footprints = terrain.buildings_in(conn, transform, z.shape)
        if p["buildings"] == "blocked":
            blocked = blocked | terrain.footprint_mask([g for g, _ in footprints], transform, z.shape)
        else:
            z = terrain.raise_buildings(z, footprints, transform)
    domain = Domain(z, dx, manning=p.get("manning", 0.03), blocked=blocked)
    forcing = scenario.forcing(tide_side=p.get("tide_side", "west"), open_sides=tuple(p.get("open_sides", ())))
    sim = Simulation(domain, forcing, SolverParams(), water_level=p.get("initial_level"))
    gauges = GaugeRecord([tuple(g) for g in p.get("gauges", [])])
    step = float(p.get("snapshot_interval_s", 0) or 0)
    snapshot_times = list(np.arange(step, duration + 1e-9, step)) if step else []
    try:
        snapshots = sim.run(duration, snapshot_times=snapshot_times, gauges=gauges if gauges.cells else None,
                            gauge_interval=float(p.get("gauge_interval_s", 300)),
                            report_every=report_every,
                            should_cancel=lambda: _heartbeat(engine, run_id, (sim.t / duration), sim.t))
    except RunCancelled as exc:
        with engine.begin() as conn:
            _finish(conn, run_id, "cancelled", message=exc.message)
        return {"status": "cancelled"}
    except Exception as exc:  # recorded on the run, then re-raised for the worker's log
        with engine.begin() as conn:
            _finish(conn, run_id, "failed", error=f"{type(exc).__name__}: {exc}", message="failed")
        raise
    folder = Path(output_dir) / f"run_{run_id}"
    maps = outputs.flood_maps(sim)
    files = outputs.write_maps(folder, maps, transform, crs or pyproj_crs(CITY_SRID))
    steps = outputs.write_depth_steps(folder / "steps", snapshots, transform, crs or pyproj_crs(CITY_SRID),
                                      domain.blocked)
    extents = outputs.extent_polygons(maps.max_depth, transform)
    start = run_start_time(p, run["created_at"])
    step_items = outputs.step_extents(snapshots, transform)
    result = {
        "status": "succeeded",
        "scenario": scenario.key, "scenario_digest": scenario.digest,
        "raster_version": run["raster_version"],
        "simulated_s": sim.t, "steps": sim.steps, "wall_s": round(sim.wall_seconds, 3),
        "cell_updates": sim.cell_updates,
        # the solver's parameters as run (their defaults may change between versions)
        "solver": dataclasses.asdict(sim.params),
        "mass_balance": sim.mass.as_dict(),
        "max_depth_m": float(np.nanmax(maps.max_depth)) if np.isfinite(maps.max_depth).any() else 0.0,
        "flooded_area_m2": float(sum(e["area_m2"] for e in extents)),
        "files": {k: str(v) for k, v in files.items()},
        "time_steps": {str(int(t)): str(v) for t, v in steps.items()},
        "start_time": start.isoformat(), "layer": FLOOD_LAYER,
        "gauges": outputs.gauge_table(*gauges.as_arrays(), [f"g{i}" for i in range(len(gauges.cells))],
                                      np.array([domain.z[r, c] for r, c in gauges.cells])) if gauges.cells else [],
        "finished_at": datetime.now(UTC).isoformat(),
    }
    with engine.begin() as conn:
        conn.execute(flood_extent.delete().where(flood_extent.c.run_id == run_id))
        if extents:
            conn.execute(insert(flood_extent), [
                {"run_id": run_id, "min_depth": e["min_depth"], "max_depth": e["max_depth"], "area_m2": e["area_m2"],
                 "geom": from_shape(e["geometry"], srid=CITY_SRID)} for e in extents
            ])
        store_steps(conn, run_id, start, step_items)
        _finish(conn, run_id, "succeeded", result=result, message="done")
    return result


def run_start_time(params: dict, submitted: datetime) -> datetime:
    """The instant the simulation starts at (t = 0): the run's ``start_time`` parameter, else its
    submission time. Map layers give each step ``start + t``."""
    given = params.get("start_time")
    start = datetime.fromisoformat(given) if given else submitted
    return start if start.tzinfo else start.replace(tzinfo=UTC)


def ensure_flood_layer(conn: Connection) -> None:
    """The ``flood_steps`` catalogue layer (internal: staff read it, like the flood API)."""
    props = [{"name": c.name, "type": "number" if c.name in ("time_s", "min_depth", "max_depth", "area_m2")
              else "integer" if c.name in ("id", "run_id") else "string"}
             for c in flood_step.columns if c.name not in ("geom", "geom_3857")]
    conn.execute(pg_insert(layer).values(
        name=FLOOD_LAYER, title="Flood extent over time (depth bands per saved time step)",
        title_vi="Phạm vi ngập theo thời gian", kind="canonical", table_schema="public",
        table_name=flood_step.name, geometry_type="MultiPolygon", srid=CITY_SRID, access_level="internal",
        properties=props,
        description="One row per run, saved time step and depth band; WMS TIME = valid_time, DIM_RUN = run_id",
    ).on_conflict_do_nothing(index_elements=["name"]))


def store_steps(conn: Connection, run_id: int, start: datetime, items: list[dict]) -> None:
    """A run's extents per time step into ``flood_step`` (replacing earlier ones) and a new version
    of the ``flood_steps`` layer (its tiles and WMS maps are rebuilt)."""
    conn.execute(flood_step.delete().where(flood_step.c.run_id == run_id))
    if items:
        conn.execute(insert(flood_step), [
            {"run_id": run_id, "time_s": i["time_s"], "valid_time": start + timedelta(seconds=i["time_s"]),
             "min_depth": i["min_depth"], "max_depth": i["max_depth"], "area_m2": i["area_m2"],
             "geom": from_shape(i["geometry"], srid=CITY_SRID)} for i in items
        ])
    ensure_flood_layer(conn)
    bump_version(conn, FLOOD_LAYER)


def work(engine: Engine, output_dir: str | Path, *, once: bool = False, poll_s: float = 1.0,
         stale_after_s: float = 60.0, worker: str | None = None) -> int:
    """Worker loop: recover stale runs, claim, execute; ``once`` stops when the queue is empty."""
    import time

    worker = worker or worker_name()
    done = 0
    while True:
        recover_stale(engine, stale_after_s)
        run_id = claim_next(engine, worker)
        if run_id is None:
            if once:
                return done
            time.sleep(poll_s)
            continue
        execute_run(engine, run_id, output_dir)
        done += 1
