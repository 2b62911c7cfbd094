"""Tables of the flood area, on the project's shared ``gisserver.schema.metadata``.

Migration 0003 creates exactly these. Scenarios are versioned (key + version, with the digest of
their canonical JSON); a run points at its scenario version, the DTM raster (and its data version)
and the ``job`` row that executes it; extents are the run's flood polygons per depth band.
"""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from gisserver.crs import CITY_SRID
from gisserver.schema import metadata

#: the catalogue layer of ``flood_step`` (WMS TIME = valid_time, DIM_RUN = run id)
FLOOD_LAYER = "flood_steps"
RUN_STATES = ("queued", "running", "succeeded", "failed", "cancelled")

flood_scenario = Table(
    "flood_scenario",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(63), nullable=False),
    Column("version", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("definition", JSONB, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("data_version", String(32), nullable=False),
    Column("created_by", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("key", "version"),
)

flood_run = Table(
    "flood_run",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("scenario_id", Integer, ForeignKey("flood_scenario.id", ondelete="RESTRICT"), nullable=False),
    Column("job_id", BigInteger, ForeignKey("job.id", ondelete="SET NULL")),
    Column("raster_id", Integer, ForeignKey("raster.id", ondelete="RESTRICT"), nullable=False),
    # the DTM's data_version when the run was submitted: the same inputs give the same run
    Column("raster_version", Integer, nullable=False),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("worker", Text),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("result", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"),
    Index("ix_flood_run_status", "status"),
)

flood_extent = Table(
    "flood_extent",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("run_id", BigInteger, ForeignKey("flood_run.id", ondelete="CASCADE"), nullable=False),
    Column("min_depth", Float, nullable=False),
    Column("max_depth", Float),
    Column("area_m2", Float, nullable=False),
    Column("geom", Geometry("MULTIPOLYGON", srid=CITY_SRID, spatial_index=False), nullable=False),
    Index("ix_flood_extent_geom", "geom", postgresql_using="gist"),
    Index("ix_flood_extent_run_id", "run_id"),
)

# The flood over time: per run and saved time step, one MultiPolygon per depth band. ``time_s`` is
# the simulated second, ``valid_time`` the absolute instant (the run's start time + time_s): the
# WMS TIME dimension of the ``flood_steps`` catalogue layer. ``geom_3857`` feeds tiles and maps.
flood_step = Table(
    "flood_step",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("run_id", BigInteger, ForeignKey("flood_run.id", ondelete="CASCADE"), nullable=False),
    Column("time_s", Float, nullable=False),
    Column("valid_time", DateTime(timezone=True), nullable=False),
    Column("min_depth", Float, nullable=False),
    Column("max_depth", Float),
    Column("area_m2", Float, nullable=False),
    Column("geom", Geometry("MULTIPOLYGON", srid=CITY_SRID, spatial_index=False), nullable=False),
    Column("geom_3857", Geometry("MULTIPOLYGON", srid=3857, spatial_index=False),
           Computed("ST_Transform(geom, 3857)", persisted=True)),
    Index("ix_flood_step_geom", "geom", postgresql_using="gist"),
    Index("ix_flood_step_geom_3857", "geom_3857", postgresql_using="gist"),
    Index("ix_flood_step_run_id_valid_time", "run_id", "valid_time"),
)

FLOOD_TABLES = (flood_scenario, flood_run, flood_extent, flood_step)
