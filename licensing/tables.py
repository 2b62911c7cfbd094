"""Tables of the licensing area, on the project's shared ``gisserver.schema.metadata``.

Migration 0004 creates exactly these. The parcel versions themselves live in ``parcel`` (one row
per version, begin/end lifespan); this module adds what LADM needs around them (parties, RRR,
sources, lineage), the versioned rule tables, the generated protection corridors and the permit
dossiers. History is never deleted: foreign keys to parcel versions and dossiers are RESTRICT.
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
    ForeignKeyConstraint,
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

from gisserver import schema
from gisserver.crs import CITY_SRID
from gisserver.schema import metadata
from licensing.workflow import DOSSIER_STATES


def _created_at():
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _jsonb(name: str):
    return Column(name, JSONB, nullable=False, server_default=text("'{}'::jsonb"))


def _in(values) -> str:
    # a CHECK constraint over a fixed, code-defined list (never user input)
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# --- parcel register (LADM: Party, RRR, Source, lineage of SpatialUnit versions) ---------------

# every version of a parcel number, current or retired: fresh numbers are max + 1 over all of them
# (numbers are never reused), and version histories are read by number. The partial unique index
# of schema.py covers current versions only.
Index("ix_parcel_ward_code_sheet_no_parcel_no", schema.parcel.c.ward_code, schema.parcel.c.sheet_no,
      schema.parcel.c.parcel_no)

party = Table(
    "party",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", String(16), nullable=False, server_default="person"),
    Column("name", Text, nullable=False),
    # personal data: never shown on public pages
    Column("id_number", Text),
    Column("address", Text),
    _jsonb("attributes"),
    _created_at(),
    CheckConstraint("kind IN ('person', 'organization', 'state')", name="kind"),
)

SOURCE_KINDS = ("decision", "survey", "contract", "certificate", "court_order", "other")

register_source = Table(
    "register_source",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("reference", Text, nullable=False),
    Column("issued_on", Date),
    Column("issuer", Text),
    Column("description", Text, nullable=False, server_default=""),
    _jsonb("attributes"),
    _created_at(),
    CheckConstraint("kind IN " + _in(SOURCE_KINDS), name="kind"),
)

CHANGE_OPERATIONS = ("create", "split", "merge", "adjust", "attributes")

parcel_change = Table(
    "parcel_change",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("operation", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("source_id", BigInteger, ForeignKey("register_source.id")),
    Column("note", Text, nullable=False, server_default=""),
    _jsonb("detail"),
    CheckConstraint("operation IN " + _in(CHANGE_OPERATIONS), name="operation"),
    Index("ix_parcel_change_at", "at"),
)

parcel_lineage = Table(
    "parcel_lineage",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("change_id", BigInteger, ForeignKey("parcel_change.id"), nullable=False),
    Column("parent_id", BigInteger, ForeignKey("parcel.id"), nullable=False),
    Column("child_id", BigInteger, ForeignKey("parcel.id"), nullable=False),
    # the part of the parent's area that went into the child, m2
    Column("area_carried", Float, nullable=False),
    UniqueConstraint("parent_id", "child_id"),
    Index("ix_parcel_lineage_child_id", "child_id"),
    CheckConstraint("parent_id <> child_id", name="not_self"),
)

RRR_KINDS = ("right", "restriction", "responsibility")

rrr = Table(
    "rrr",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("parcel_id", BigInteger, ForeignKey("parcel.id"), nullable=False),
    Column("party_id", BigInteger, ForeignKey("party.id")),
    Column("kind", String(16), nullable=False),
    Column("type", String(32), nullable=False),
    Column("share", Float),
    Column("description", Text, nullable=False, server_default=""),
    Column("source_id", BigInteger, ForeignKey("register_source.id")),
    Column("begin_lifespan", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("end_lifespan", DateTime(timezone=True)),
    CheckConstraint("kind IN " + _in(RRR_KINDS), name="kind"),
    CheckConstraint("share IS NULL OR (share > 0 AND share <= 1)", name="share"),
    Index("ix_rrr_parcel_id", "parcel_id"),
)

# --- rule tables: versioned data with legal basis ------------------------------------------

rule_table = Table(
    "rule_table",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("rule_id", String(48), nullable=False),
    Column("version", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("legal_basis", Text, nullable=False),
    # True while the values still need checking against the official text
    Column("verify", Boolean, nullable=False, server_default=text("false")),
    Column("effective_from", Date, nullable=False),
    Column("effective_to", Date),
    Column("data", JSONB, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("created_by", Text, nullable=False, server_default="migration"),
    _created_at(),
    UniqueConstraint("rule_id", "version"),
    CheckConstraint("effective_to IS NULL OR effective_to > effective_from", name="effective"),
)

# --- protection corridors generated from network features ----------------------------------

protection_corridor = Table(
    "protection_corridor",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("source_table", String(32), nullable=False),
    Column("source_id", BigInteger, nullable=False),
    Column("rule_table_id", Integer, ForeignKey("rule_table.id"), nullable=False),
    Column("half_width", Float, nullable=False),
    _jsonb("attributes"),
    Column("generated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("geom", Geometry("MULTIPOLYGON", srid=CITY_SRID, spatial_index=False), nullable=False),
    Index("ix_protection_corridor_geom", "geom", postgresql_using="gist"),
    Index("ix_protection_corridor_source_table_source_id", "source_table", "source_id"),
)

# --- permit dossiers -----------------------------------------------------------------------

dossier_transition = Table(
    "dossier_transition",
    metadata,
    Column("from_state", String(16), primary_key=True),
    Column("to_state", String(16), primary_key=True),
    Column("role", String(16), primary_key=True),
)

dossier = Table(
    "dossier",
    metadata,
    Column("id", BigInteger, primary_key=True),
    # public one-stop-shop code; random part so codes cannot be enumerated
    Column("code", String(32), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False, server_default="draft"),
    Column("title", Text, nullable=False, server_default=""),
    Column("parcel_id", BigInteger, ForeignKey("parcel.id")),
    Column("applicant_name", Text),
    Column("applicant_contact", Text),
    Column("owner_user_id", Integer, ForeignKey("app_user.id", ondelete="SET NULL")),
    _jsonb("data"),
    # optimistic locking: every edit increments it (ETag)
    Column("version", Integer, nullable=False, server_default="1"),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("submitted_at", DateTime(timezone=True)),
    Column("accepted_at", DateTime(timezone=True)),
    Column("due_date", Date),
    Column("decided_at", DateTime(timezone=True)),
    CheckConstraint("state IN " + _in(DOSSIER_STATES), name="state"),
    Index("ix_dossier_state_due_date", "state", "due_date"),
)

dossier_event = Table(
    "dossier_event",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("dossier_id", BigInteger, ForeignKey("dossier.id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("role", String(16), nullable=False),
    Column("actor", Text, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    # the role must be allowed to make this transition: enforced by the database
    ForeignKeyConstraint(
        ["from_state", "to_state", "role"],
        ["dossier_transition.from_state", "dossier_transition.to_state", "dossier_transition.role"],
    ),
    Index("ix_dossier_event_dossier_id", "dossier_id"),
)

dossier_attachment = Table(
    "dossier_attachment",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("dossier_id", BigInteger, ForeignKey("dossier.id"), nullable=False),
    Column("filename", Text, nullable=False),
    Column("mime_type", String(100), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("storage_path", Text, nullable=False),
    Column("uploaded_by", Text, nullable=False),
    Column("uploaded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("dossier_id", "sha256"),
)

LICENSING_TABLES = (
    party, register_source, parcel_change, parcel_lineage, rrr, rule_table, protection_corridor,
    dossier_transition, dossier, dossier_event, dossier_attachment,
)
