"""Flood scenarios and runs for planners (runs execute in the flood worker: python -m flood.worker)."""

from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, jsonify, request, url_for

from flood import service
from gisserver.api import services
from gisserver.errors import InvalidInput
from gisserver.openapi import declare, json_response
from gisserver.web_auth import principal, require_roles

bp = Blueprint("flood", __name__, url_prefix="/api/flood")
STAFF = ("planner", "officer", "admin")


def _with_links(run: dict) -> dict:
    run["links"] = [
        {"rel": "self", "href": url_for("flood.run", run_id=run["id"])},
        {"rel": "affected", "href": url_for("flood.affected", run_id=run["id"])},
    ]
    return run


@declare("Flood scenarios (stored, versioned)", tags=["flood"],
         responses={"200": json_response("Scenarios with their rain and tide")})
@bp.get("/scenarios")
@require_roles(*STAFF)
def scenarios():
    with services().engine.begin() as conn:
        return jsonify(scenarios=service.list_scenarios(conn))


@declare("Start a flood run", tags=["flood"],
         description="Body: {scenario} or {rain: {return_period_years: 2|5|10} | {event: 'stress'}, "
                     "tide_level_m, duration_hours}; optional raster_id (default: the newest DTM).",
         responses={"202": json_response("The queued run with its links")})
@bp.post("/runs")
@require_roles("planner", "admin")
def start():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object describing the scenario")
    with services().engine.begin() as conn:
        run = service.start_run(conn, body, owner=principal().username)
    return jsonify(_with_links(run)), 202


@declare("A flood run's status, progress and results", tags=["flood"],
         responses={"200": json_response("The run")})
@bp.get("/runs/<int:run_id>")
@require_roles(*STAFF)
def run(run_id: int):
    with services().engine.connect() as conn:
        return jsonify(_with_links(service.status(conn, run_id)))


@declare("Cancel a flood run", tags=["flood"], responses={"200": json_response("The new state")})
@bp.post("/runs/<int:run_id>/cancel")
@require_roles("planner", "admin")
def cancel(run_id: int):
    with services().engine.begin() as conn:
        return jsonify(id=run_id, status=service.cancel(conn, run_id))


@declare("Assets a run's flood reached (JSON, or CSV with f=csv)", tags=["flood"],
         responses={"200": json_response("Buildings, roads and parcels with depth statistics")})
@bp.get("/runs/<int:run_id>/affected")
@require_roles(*STAFF)
def affected(run_id: int):
    with services().engine.connect() as conn:
        items = service.affected(conn, run_id)
    if request.args.get("f") == "csv":
        out = io.StringIO()
        fields = ["kind", "id", "name", "max_depth", "mean_depth", "wet_fraction"]
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(items)
        return Response("\ufeff" + out.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": f"attachment; filename=flood-run-{run_id}-affected.csv"})
    return jsonify(items=items, numberReturned=len(items))
