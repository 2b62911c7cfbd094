"""Flood scenarios and runs for planners (runs execute in the flood worker: python -m flood.worker)."""

from __future__ import annotations

import csv
import io

from flask import Blueprint, Response, jsonify, request, url_for

from flood import service
from flood.tables import FLOOD_LAYER
from gisserver.api import services
from gisserver.errors import InvalidInput
from gisserver.openapi import declare, json_response
from gisserver.params import parse_int
from gisserver.web_auth import principal, require_roles
from tiles.wms import register_time_dimension

bp = Blueprint("flood", __name__, url_prefix="/api/flood")
STAFF = ("planner", "officer", "admin")

# the flood_steps layer varies in time (valid_time) and by run (WMS DIM_RUN, default the latest run)
register_time_dimension(FLOOD_LAYER, "valid_time", extra={"run": "run_id"})


def _with_links(run: dict) -> dict:
    self_url = url_for("flood.run", run_id=run["id"])
    run["links"] = [
        {"rel": "self", "href": self_url},
        {"rel": "affected", "href": url_for("flood.affected", run_id=run["id"])},
        {"rel": "tiles", "href": self_url + "/tiles/{t}/{z}/{x}/{y}.png", "templated": True},
        {"rel": "legend", "href": url_for("flood.legend")},
        {"rel": "wms", "href": url_for("maps.wms", SERVICE="WMS", REQUEST="GetCapabilities"),
         "layer": FLOOD_LAYER, "dimensions": {"DIM_RUN": run["id"]}},
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


@declare("Depth of a flood run at a saved time step, as XYZ raster tiles", tags=["flood"],
         description="t: simulated second of a saved step (the run's result.times); blues 0-2 m, "
                     "under 1 cm transparent. Readable like the flood_steps map layer (staff).",
         responses={"200": {"description": "PNG / WebP / JPEG tile"}})
@bp.get("/runs/<int:run_id>/tiles/<t>/<z>/<x>/<y>.<ext>")
def step_tile(run_id: int, t: str, z: str, x: str, y: str, ext: str):
    from gisserver.api.maps import tile_cache, tile_response
    from tiles import xyz

    t_ = parse_int("t", t, minimum=0)
    z_, x_, y_ = (parse_int("z", z, minimum=0), parse_int("x", x, minimum=0), parse_int("y", y, minimum=0))
    with services().engine.connect() as conn:
        tile, mimetype = xyz.flood_step_tile(conn, tile_cache(), principal(), run_id, t_, z_, x_, y_, ext.lower())
    return tile_response(tile, mimetype, public=False)


@declare("Colour ramp of flood depth tiles (JSON)", tags=["flood"], responses={"200": json_response("Ramp")})
@bp.get("/legend.json")
def legend():
    from tiles import xyz

    return xyz.ramp_legend(xyz.RAMPS["flood_depth"])


@declare("Colour bar of flood depth tiles (PNG)", tags=["flood"], responses={"200": {"description": "PNG"}})
@bp.get("/legend.png")
def legend_image():
    from tiles import xyz

    return Response(xyz.ramp_image(xyz.RAMPS["flood_depth"]), mimetype="image/png")
