"""Tables of the LiDAR file and tile index, on the project's shared ``gisserver.schema.metadata``.

``lidar_file``: one row per ingested LAS/LAZ/COPC file (footprint in the city CRS, point count,
density, classes, z range, CRS and where it came from, vertical datum, acquisition date).
``lidar_tile``: one row per processed grid tile of a run (status, counts, error if it failed).
``building_roof``: the LoD2 roof model a survey fitted to a ``building`` row (or why it keeps
LoD1), replaced with the row's heights by every ingest of its area (``lidar.store``).
Migration 0002 creates the first two, 0008 the third; ``gisserver.schema`` must import this module so that
Alembic's autogenerate comparison sees them.
"""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
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

lidar_file = Table(
    "lidar_file",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("path", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("file_size", BigInteger, nullable=False),
    Column("las_version", String(8), nullable=False),
    Column("point_format", Integer, nullable=False),
    Column("copc", Boolean, nullable=False, server_default=text("false")),
    Column("point_count", BigInteger, nullable=False),
    Column("density", Float, nullable=False),
    Column("classes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("z_min", Float, nullable=False),
    Column("z_max", Float, nullable=False),
    # the file's own CRS (EPSG code or the city SRID) and whether the file or the user gave it
    Column("source_srid", Integer, nullable=False),
    Column("crs_name", Text, nullable=False),
    Column("crs_source", String(16), nullable=False),
    Column("vertical_datum", Text),
    Column("acquisition_date", Date),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("footprint", Geometry("POLYGON", srid=CITY_SRID, spatial_index=False), nullable=False),
    CheckConstraint("crs_source IN ('wkt', 'geotiff', 'declared')", name="crs_source"),
    Index("ix_lidar_file_footprint", "footprint", postgresql_using="gist"),
)

lidar_tile = Table(
    "lidar_tile",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("job_id", BigInteger, ForeignKey("job.id", ondelete="CASCADE")),
    Column("tile_size", Float, nullable=False),
    Column("tile_x", Integer, nullable=False),
    Column("tile_y", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("point_count", BigInteger, nullable=False, server_default="0"),
    Column("ground_count", BigInteger, nullable=False, server_default="0"),
    Column("classes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("geom", Geometry("POLYGON", srid=CITY_SRID, spatial_index=False), nullable=False),
    CheckConstraint("status IN ('done', 'failed')", name="status"),
    UniqueConstraint("job_id", "tile_size", "tile_x", "tile_y"),
    Index("ix_lidar_tile_geom", "geom", postgresql_using="gist"),
)

building_roof = Table(
    "building_roof",
    metadata,
    Column("building_id", BigInteger, ForeignKey("building.id", ondelete="CASCADE"), primary_key=True),
    # True: ``model`` rebuilds the LoD2 Solid (or BuildingParts); False: LoD1, ``status`` says why
    Column("lod2", Boolean, nullable=False),
    Column("status", Text, nullable=False),
    Column("roof_type", String(16)),
    Column("lidar_date", Date),
    # one roof model per polygon of the building's MultiPolygon, in its order (``lidar.store.roof_record``)
    Column("model", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

LIDAR_TABLES = (lidar_file, lidar_tile, building_roof)
