"""What planners ask of the flood model: scenarios, starting a run, its status and what it reached.

Plain arguments in, plain results out (the HTTP blueprint adapts them). A planner's choice (rain
return period or the 2018 stress event, the Phú An tide peak, the duration) becomes a stored,
versioned scenario: a default scenario as it is, or a derived one whose key names the changes, so
every run can be reproduced from what is stored.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from sqlalchemy import select
from sqlalchemy.engine import Connection

from flood import impacts
from flood.errors import InvalidScenario
from flood.jobs import register_default_scenarios, register_scenario, request_cancel, run_status, submit_run
from flood.scenarios import DEFAULT_SCENARIOS, Scenario
from flood.tables import FLOOD_LAYER, flood_run, flood_scenario
from gisserver.errors import Conflict, NotFound
from gisserver.params import parse_datetime
from gisserver.schema import raster
from gisserver.security import Principal
from layers.catalogue import get_layer

RETURN_PERIODS = (2, 5, 10)
MAX_DURATION_HOURS = 72.0
TIDE_RANGE_M = (-1.0, 3.0)


def list_scenarios(conn: Connection) -> list[dict]:
    register_default_scenarios(conn)
    s = flood_scenario
    rows = conn.execute(select(s.c.id, s.c.key, s.c.version, s.c.title, s.c.definition).order_by(s.c.key, s.c.version))
    return [{"id": r.id, "key": r.key, "version": r.version, "title": r.title,
             "duration_hours": r.definition["duration_s"] / 3600, "rain": r.definition["rain"],
             "tide": r.definition["tide"]} for r in rows]


def scenario_from_choice(choice: dict) -> Scenario:
    """The scenario of a planner's form: {scenario} or {rain: {...}, tide_level_m, duration_hours}."""
    if not isinstance(choice, dict):
        raise InvalidScenario("send a JSON object")
    if "scenario" in choice:
        key = choice["scenario"]
        if key not in DEFAULT_SCENARIOS:
            raise InvalidScenario(f"unknown scenario {key!r}; one of {sorted(DEFAULT_SCENARIOS)}")
        base = DEFAULT_SCENARIOS[key]
    else:
        base = DEFAULT_SCENARIOS[_rain_key(choice.get("rain"))]
    scenario = base
    tide = choice.get("tide_level_m")
    if tide is not None:
        tide = _number("tide_level_m", tide, *TIDE_RANGE_M)
        if not base.tide or abs(base.tide.get("peak_m", math.nan) - tide) > 1e-9:
            scenario = replace(scenario, key=f"{scenario.key}-tide{tide:.2f}",
                               title=f"{scenario.title}; tide peak {tide:.2f} m",
                               tide={**(base.tide or {"peak_at_s": 5400.0}), "peak_m": tide})
    hours = choice.get("duration_hours")
    if hours is not None:
        hours = _number("duration_hours", hours, 0.25, MAX_DURATION_HOURS)
        if abs(hours * 3600 - base.duration_s) > 1e-6:
            scenario = replace(scenario, key=f"{scenario.key}-{hours:g}h", duration_s=hours * 3600,
                               title=f"{scenario.title}; {hours:g} h simulated")
    return scenario


def _rain_key(rain) -> str:
    if not isinstance(rain, dict):
        raise InvalidScenario("rain must be {return_period_years: 2|5|10} or {event: 'stress'}")
    if rain.get("event") in ("stress", "stress-2018"):
        return "stress-2018"
    years = rain.get("return_period_years")
    if years not in RETURN_PERIODS:
        raise InvalidScenario(f"return_period_years must be one of {RETURN_PERIODS}")
    return f"design-{years}y"


def _number(name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidScenario(f"{name} must be a number")
    if not low <= value <= high:
        raise InvalidScenario(f"{name} must be between {low:g} and {high:g}")
    return float(value)


def default_dtm(conn: Connection) -> int:
    """The newest DTM in the raster catalogue."""
    raster_id = conn.execute(
        select(raster.c.id).where(raster.c.kind == "dtm").order_by(raster.c.created_at.desc(), raster.c.id.desc())
    ).scalar()
    if raster_id is None:
        raise Conflict("no DTM is registered: process LiDAR first (gisserver lidar process, or gisserver demo terrain)")
    return raster_id


def start_run(conn: Connection, choice: dict, *, owner: str) -> dict:
    scenario = scenario_from_choice(choice)
    register_scenario(conn, scenario, owner)
    raster_id = choice.get("raster_id")
    if raster_id is None:
        raster_id = default_dtm(conn)
    elif isinstance(raster_id, bool) or not isinstance(raster_id, int) or not 0 < raster_id < 2**31:
        raise InvalidScenario("raster_id must be a raster's id")
    start = choice.get("start_time")  # t = 0 of the run's map layer; default: now
    if start is not None and not isinstance(start, str):
        raise InvalidScenario("start_time must be an ISO 8601 date-time")
    start = parse_datetime("start_time", start) or datetime.now(UTC).replace(microsecond=0)
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    params = {"buildings": "blocked", "snapshot_interval_s": snapshot_interval(scenario.duration_s),
              "open_sides": ["east", "north", "south"], "start_time": start.isoformat()}
    run_id = submit_run(conn, scenario_key=scenario.key, raster_id=raster_id, params=params,
                        scenario_version=scenario.version, owner=owner)
    return status(conn, run_id)


def snapshot_interval(duration_s: float) -> int:
    """Seconds between saved depth maps: about twelve per run, in whole minutes (at least one)."""
    return max(60, round(duration_s / 12 / 60) * 60)


def status(conn: Connection, run_id: int) -> dict:
    st = run_status(conn, run_id)
    result = st.get("result") or {}
    times = sorted(int(t) for t in (result.get("time_steps") or {}))
    out = {"id": st["id"], "status": st["status"], "progress": round(st["progress"], 1),  # percent
           "message": st.get("message"), "error": st.get("error"), "result": None}
    if result:
        out["result"] = {**{k: v for k, v in result.items() if k not in ("files", "time_steps")}, "times": times}
        if result.get("start_time"):  # the WMS TIME values of the run's steps (flood_steps layer)
            start = datetime.fromisoformat(result["start_time"])
            out["result"]["valid_times"] = [(start + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")
                                            for t in times]
    return out


def step_raster(conn: Connection, run_id: int, t: int, principal: Principal | None) -> tuple[Path, int]:
    """The depth COG of a run at simulated second ``t`` and a version for tile caches.

    Readable by whoever may read the ``flood_steps`` layer (the same rule as the WMS layer);
    for others, and for unknown runs or steps, NotFound."""
    get_layer(conn, FLOOD_LAYER, principal)
    row = conn.execute(select(flood_run.c.status, flood_run.c.result, flood_run.c.finished_at)
                       .where(flood_run.c.id == run_id)).first()
    if row is None or row.status != "succeeded":
        raise NotFound(f"flood run {run_id} has no results")
    steps = (row.result or {}).get("time_steps") or {}
    path = steps.get(str(t))
    if path is None:
        raise NotFound(f"flood run {run_id} saved no depth at t = {t} s; saved: {sorted(int(k) for k in steps)}")
    if not Path(path).exists():
        raise NotFound(f"the depth raster of run {run_id} at t = {t} s is missing")
    return Path(path), int(row.finished_at.timestamp() * 1e6)


def cancel(conn: Connection, run_id: int) -> str:
    return request_cancel(conn, run_id)


def affected(conn: Connection, run_id: int, layers=("buildings", "roads", "parcels")) -> list[dict]:
    """Assets the run's flood reached, deepest first: layer, id, name, max/mean depth, wet share."""
    st = run_status(conn, run_id)
    if st["status"] != "succeeded":
        raise Conflict(f"flood run {run_id} is {st['status']}; affected assets exist once it succeeded")
    path = (st["result"] or {}).get("files", {}).get("max_depth")
    if not path or not Path(path).exists():
        raise NotFound(f"the depth raster of run {run_id} is missing")
    with rasterio.open(path) as src:
        depth = src.read(1, masked=True).filled(np.nan).astype(np.float64)
        transform = src.transform
    items = []
    for layer in layers:
        frame = impacts.affected_features(conn, run_id, layer, depth, transform)
        for rec in frame.drop(columns="geometry").to_dict("records"):
            items.append({"kind": layer, "id": int(rec["feature_id"]), "name": f"{layer}/{rec['feature_id']}",
                          "max_depth": rec["max_depth_m"], "mean_depth": rec["mean_depth_m"],
                          "wet_fraction": rec["wet_fraction"]})
    items.sort(key=lambda r: -r["max_depth"])
    return items
