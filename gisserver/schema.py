"""The database schema: one SQLAlchemy ``MetaData`` for every table the project owns.

Alembic revisions in ``migrations/`` create exactly this (a test checks that autogenerate finds
no difference). Geometry columns are typed with an SRID and GiST-indexed; layers that are
tiled also keep a Web-Mercator copy of their geometry as a generated column, so tiles filter
on an indexed column without reprojecting per request.

Generic (user-loaded) layers live in the ``layerdata`` schema as tables created at load time
and listed in the ``layer`` catalogue; they are not part of this metadata.
"""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from gisserver.crs import CITY_SRID

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

GENERIC_LAYER_SCHEMA = "layerdata"
ACCESS_LEVELS = ("public", "internal", "restricted")
ROLES = ("public", "officer", "planner", "admin")


def _created_at():
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _geom(geometry_type: str, srid: int = CITY_SRID, name: str = "geom", nullable: bool = False):
    # spatial_index=False: indexes are declared explicitly below with the naming convention
    return Column(name, Geometry(geometry_type, srid=srid, spatial_index=False), nullable=nullable)


def _geom_3857(geometry_type: str):
    return Column(
        "geom_3857",
        Geometry(geometry_type, srid=3857, spatial_index=False),
        Computed("ST_Transform(geom, 3857)", persisted=True),
    )


def _spatial_indexes(table_name: str, *columns: str) -> list[Index]:
    return [
        Index(f"ix_{table_name}_{col}", col, postgresql_using="gist") for col in columns
    ]


# --- users, tokens, audit -----------------------------------------------------------------

agency = Table(
    "agency",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("kind", String(16), nullable=False, server_default="department"),
    CheckConstraint("kind IN ('district', 'department', 'city')", name="kind"),
)

app_user = Table(
    "app_user",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", Text, nullable=False, server_default=""),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text),
    Column("agency_id", Integer, ForeignKey("agency.id")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    _created_at(),
    CheckConstraint("role IN ('public', 'officer', 'planner', 'admin')", name="role"),
)

api_token = Table(
    "api_token",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False),
    # the public part of the token, used to find the row; the secret is only stored hashed
    Column("token_id", String(24), nullable=False, unique=True),
    Column("secret_hash", Text, nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    _created_at(),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(64), nullable=False),
    Column("target_id", Text),
    Column("before", JSONB),
    Column("after", JSONB),
    Column("detail", JSONB),
    Index("ix_audit_log_target_type_target_id", "target_type", "target_id"),
    Index("ix_audit_log_at", "at"),
)

# --- layer catalogue ----------------------------------------------------------------------

layer = Table(
    "layer",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("title_vi", Text),
    Column("description", Text, nullable=False, server_default=""),
    # canonical: one of the tables below; generic: a table in the layerdata schema
    Column("kind", String(16), nullable=False),
    Column("table_schema", String(63), nullable=False, server_default="public"),
    Column("table_name", String(63), nullable=False),
    Column("geometry_type", String(32), nullable=False),
    Column("srid", Integer, nullable=False, server_default=str(CITY_SRID)),
    Column("access_level", String(16), nullable=False, server_default="public"),
    Column("owner_agency_id", Integer, ForeignKey("agency.id")),
    # bumped by every load or edit: keys tile caches and ETags
    Column("data_version", Integer, nullable=False, server_default="1"),
    Column("feature_count", BigInteger, nullable=False, server_default="0"),
    Column("extent", Geometry("POLYGON", srid=4326, spatial_index=False)),
    Column("properties", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("style", JSONB),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("kind IN ('canonical', 'generic')", name="kind"),
    CheckConstraint("access_level IN ('public', 'internal', 'restricted')", name="access_level"),
)

layer_grant = Table(
    "layer_grant",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("layer_id", Integer, ForeignKey("layer.id", ondelete="CASCADE"), nullable=False),
    Column("agency_id", Integer, ForeignKey("agency.id", ondelete="CASCADE"), nullable=False),
    Column("permission", String(8), nullable=False),
    # optional: the grant covers only this area (e.g. a district boundary)
    Column("area", Geometry("MULTIPOLYGON", srid=CITY_SRID, spatial_index=False)),
    Column("granted_by", Text, nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    CheckConstraint("permission IN ('read', 'edit')", name="permission"),
    Index("ix_layer_grant_layer_id_agency_id", "layer_id", "agency_id"),
    Index("ix_layer_grant_area", "area", postgresql_using="gist"),
    Index(
        "uq_layer_grant_active",
        "layer_id",
        "agency_id",
        "permission",
        unique=True,
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

land_use_code = Table(
    "land_use_code",
    metadata,
    Column("code", String(8), primary_key=True),
    Column("name_vi", Text, nullable=False),
    Column("name_en", Text, nullable=False),
    Column("category", String(32), nullable=False),
    Column("legal_basis", Text, nullable=False, server_default=""),
)

# --- cadastre ------------------------------------------------------------------------------

parcel = Table(
    "parcel",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("ward_code", String(16), nullable=False),
    Column("sheet_no", Integer, nullable=False),
    Column("parcel_no", Integer, nullable=False),
    Column("area", Float, Computed("ST_Area(geom)", persisted=True)),
    Column("legal_area", Float),
    Column("address", Text),
    Column("land_use", String(32)),
    Column("owner_name", Text),
    Column("status", String(16), nullable=False, server_default="current"),
    Column("begin_lifespan", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("end_lifespan", DateTime(timezone=True)),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _geom("MULTIPOLYGON"),
    _geom_3857("MULTIPOLYGON"),
    CheckConstraint("end_lifespan IS NULL OR end_lifespan >= begin_lifespan", name="lifespan"),
    Index(
        "uq_parcel_current_number",
        "ward_code",
        "sheet_no",
        "parcel_no",
        unique=True,
        postgresql_where=text("end_lifespan IS NULL"),
    ),
    *_spatial_indexes("parcel", "geom", "geom_3857"),
)

building = Table(
    "building",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("parcel_id", BigInteger),
    Column("floors", Integer),
    Column("height", Float),
    Column("ground_z", Float),
    Column("roof_p50", Float),
    Column("roof_p70", Float),
    Column("roof_p90", Float),
    Column("source", String(32), nullable=False, server_default="cadastre"),
    Column("lidar_date", Date),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _geom("MULTIPOLYGON"),
    _geom_3857("MULTIPOLYGON"),
    *_spatial_indexes("building", "geom", "geom_3857"),
)


def _network_table(name: str, geometry_type: str, *columns) -> Table:
    return Table(
        name,
        metadata,
        Column("id", BigInteger, primary_key=True),
        *columns,
        Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        _geom(geometry_type),
        _geom_3857(geometry_type),
        *_spatial_indexes(name, "geom", "geom_3857"),
    )


road = _network_table(
    "road",
    "MULTILINESTRING",
    Column("name", Text),
    Column("road_class", String(32)),
    # width between the red lines (chỉ giới đường đỏ), metres
    Column("row_width", Float),
    Column("carriageway_width", Float),
    Column("surface", String(32)),
)

red_line = _network_table(
    "red_line",
    "MULTILINESTRING",
    Column("road_id", BigInteger, ForeignKey("road.id", ondelete="SET NULL")),
    Column("decision", Text),
)

drainage = _network_table(
    "drainage",
    "MULTILINESTRING",
    Column("kind", String(32)),
    Column("diameter_mm", Integer),
    Column("material", String(32)),
    Column("invert_up", Float),
    Column("invert_down", Float),
)

water_supply = _network_table(
    "water_supply",
    "MULTILINESTRING",
    Column("diameter_mm", Integer),
    Column("material", String(32)),
    Column("pressure_class", String(16)),
)

power_line = _network_table(
    "power_line",
    "MULTILINESTRING",
    Column("name", Text),
    Column("voltage_kv", Float, nullable=False),
    Column("conductor", String(16), nullable=False, server_default="bare"),
    Column("placement", String(16), nullable=False, server_default="overhead"),
    CheckConstraint("conductor IN ('bare', 'covered')", name="conductor"),
    CheckConstraint("placement IN ('overhead', 'underground')", name="placement"),
)

telecom = _network_table(
    "telecom",
    "MULTILINESTRING",
    Column("kind", String(32)),
    Column("operator", Text),
    Column("placement", String(16), nullable=False, server_default="underground"),
)

tree = _network_table(
    "tree",
    "POINT",
    Column("species", Text),
    Column("height", Float),
    Column("crown_diameter", Float),
)

park = _network_table(
    "park",
    "MULTIPOLYGON",
    Column("name", Text),
    Column("kind", String(32)),
)

water_body = _network_table(
    "water_body",
    "MULTIPOLYGON",
    Column("name", Text),
    Column("kind", String(32)),
    Column("bed_level", Float),
)

underground_work = _network_table(
    "underground_work",
    "MULTIPOLYGON",
    Column("name", Text),
    Column("kind", String(32)),
    Column("depth_top", Float),
    Column("depth_bottom", Float),
)

zoning_zone = _network_table(
    "zoning_zone",
    "MULTIPOLYGON",
    Column("zone_code", String(32), nullable=False),
    Column("name", Text),
    Column("land_use", String(32)),
    Column("max_density", Float),
    Column("max_far", Float),
    Column("max_floors", Integer),
    Column("max_height", Float),
    Column("min_setback", Float),
    Column("min_ground_elevation", Float),
    Column("plan_decision", Text),
    Column("subdivision_zone", Integer),
)

# --- rasters and jobs ----------------------------------------------------------------------

raster = Table(
    "raster",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("path", Text, nullable=False),
    Column("resolution", Float, nullable=False),
    Column("srid", Integer, nullable=False),
    Column("vertical_datum", Text),
    Column("nodata", Float),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("access_level", String(16), nullable=False, server_default="public"),
    Column("sources", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("data_version", Integer, nullable=False, server_default="1"),
    _created_at(),
    _geom("POLYGON", name="footprint"),
    Index("ix_raster_footprint", "footprint", postgresql_using="gist"),
    CheckConstraint("access_level IN ('public', 'internal', 'restricted')", name="access_level"),
)

job = Table(
    "job",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("progress", Numeric(5, 2), nullable=False, server_default="0"),
    Column("message", Text),
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("result", JSONB),
    Column("error", Text),
    Column("owner", Text),
    _created_at(),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    # written every few seconds by the worker running the job: a running job without a recent
    # heartbeat was left by a worker that died, and another worker takes it again
    Column("heartbeat_at", DateTime(timezone=True)),
    CheckConstraint(
        "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
    ),
    Index("ix_job_status", "status"),
)

#: canonical layers: catalogue name -> (table, geometry type, title, Vietnamese title, access)
CANONICAL_LAYERS = {
    "parcels": (parcel, "MultiPolygon", "Cadastral parcels", "Thửa đất", "public"),
    "buildings": (building, "MultiPolygon", "Buildings", "Công trình xây dựng", "public"),
    "roads": (road, "MultiLineString", "Roads", "Đường giao thông", "public"),
    "red_lines": (red_line, "MultiLineString", "Red lines", "Chỉ giới đường đỏ", "public"),
    "drainage": (drainage, "MultiLineString", "Drainage network", "Thoát nước", "internal"),
    "water_supply": (water_supply, "MultiLineString", "Water supply", "Cấp nước", "internal"),
    "power_lines": (power_line, "MultiLineString", "Power lines", "Lưới điện", "internal"),
    "telecom": (telecom, "MultiLineString", "Telecom", "Viễn thông", "restricted"),
    "trees": (tree, "Point", "Trees", "Cây xanh", "public"),
    "parks": (park, "MultiPolygon", "Parks and green space", "Công viên, cây xanh", "public"),
    "water_bodies": (water_body, "MultiPolygon", "Rivers and canals", "Sông, kênh rạch", "public"),
    "underground_works": (
        underground_work, "MultiPolygon", "Underground works", "Công trình ngầm", "restricted",
    ),
    "zoning": (zoning_zone, "MultiPolygon", "Zoning zones", "Quy hoạch phân khu", "public"),
}

# Tables of the domain areas live beside their code, on this same metadata; importing them here
# makes ``schema.metadata`` complete (Alembic's autogenerate compares against all of it).
DOMAIN_TABLE_MODULES = ("lidar.tables", "flood.tables", "licensing.tables", "licensing.records_tables")


def _import_domain_tables() -> None:
    import importlib

    for module_name in DOMAIN_TABLE_MODULES:
        importlib.import_module(module_name)


_import_domain_tables()
