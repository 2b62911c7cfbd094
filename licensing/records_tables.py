"""Tables of the land-records applications (issue 8), on the shared ``gisserver.schema.metadata``.

Migration 0006 creates exactly these: streets and house numbers (cấp số nhà) with their number
certificates, land allocation and lease decisions (giao đất, cho thuê đất) and land-use right
certificates (giấy chứng nhận) with holders, parcels and the rights they certify. Geometry is in
the city CRS (SRID 909210) and GiST-indexed. Nothing here is ever deleted: a house number is
retired and replaced, a certificate is superseded; the database refuses edits of their content
(triggers in migration 0006).
"""

from __future__ import annotations

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from gisserver.crs import CITY_SRID
from gisserver.schema import metadata
from licensing import tables as _licensing_tables  # noqa: F401  (party, rrr, dossier on the metadata first)

SIDES = ("left", "right")
ALLOCATION_KINDS = ("allocation", "lease")
PAYMENTS = ("none", "one_off", "annual")
CERTIFICATE_PROCEDURES = ("first_issue", "reissue", "change_registration")
CERTIFICATE_STATUSES = ("valid", "superseded", "cancelled")
USE_FORMS = ("private", "joint")


def _created():
    return (
        Column("created_by", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def _in(values) -> str:
    # a CHECK constraint over a fixed, code-defined list (never user input)
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# --- house numbering ---------------------------------------------------------------------------

street = Table(
    "street",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("name", Text, nullable=False),
    Column("ward_code", String(16)),
    # the road centreline it was taken from, if any
    Column("road_id", BigInteger, ForeignKey("road.id", ondelete="SET NULL")),
    # an alley (hẻm) is a street off a parent street; its houses are numbered "<prefix>/<n>"
    Column("parent_street_id", BigInteger, ForeignKey("street.id")),
    Column("prefix", Text),
    Column("odd_side", String(8), nullable=False, server_default="left"),
    # frontage per number when a street is first numbered (numbers proportional to chainage)
    Column("metres_per_number", Float, nullable=False, server_default="4"),
    *_created(),
    # the centreline, digitised from the start of the street (its first vertex)
    Column("geom", Geometry("LINESTRING", srid=CITY_SRID, spatial_index=False), nullable=False),
    CheckConstraint("odd_side IN " + _in(SIDES), name="odd_side"),
    CheckConstraint("metres_per_number > 0", name="metres_per_number"),
    CheckConstraint("(parent_street_id IS NULL) = (prefix IS NULL)", name="alley_prefix"),
    Index("ix_street_geom", "geom", postgresql_using="gist"),
)

house_number = Table(
    "house_number",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("street_id", BigInteger, ForeignKey("street.id"), nullable=False),
    # the building numbered (buildings are reloaded from surveys: the number keeps its own point)
    Column("building_id", BigInteger),
    Column("number", Integer, nullable=False),
    Column("suffix", String(4), nullable=False, server_default=""),
    Column("label", Text, nullable=False),
    Column("side", String(8), nullable=False),
    Column("chainage", Float, nullable=False),
    Column("lateral_offset", Float, nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("dossier_id", BigInteger, ForeignKey("dossier.id")),
    *_created(),
    Column("retired_at", DateTime(timezone=True)),
    Column("retired_reason", Text),
    Column("replaced_by_id", BigInteger, ForeignKey("house_number.id")),
    # the access point (điểm tiếp cận) on which the chainage was measured
    Column("geom", Geometry("POINT", srid=CITY_SRID, spatial_index=False), nullable=False),
    CheckConstraint("number > 0", name="number"),
    CheckConstraint("side IN " + _in(SIDES), name="side"),
    CheckConstraint("status IN ('active', 'retired')", name="status"),
    CheckConstraint("(status = 'retired') = (retired_at IS NOT NULL)", name="retired"),
    Index("ix_house_number_geom", "geom", postgresql_using="gist"),
    Index("ix_house_number_street_id", "street_id"),
    Index("uq_house_number_active_label", "street_id", "label", unique=True,
          postgresql_where=text("status = 'active'")),
    Index("uq_house_number_active_building", "building_id", unique=True,
          postgresql_where=text("status = 'active' AND building_id IS NOT NULL")),
)

house_number_certificate = Table(
    "house_number_certificate",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("house_number_id", BigInteger, ForeignKey("house_number.id"), nullable=False),
    Column("certificate_no", String(32), nullable=False, unique=True),
    Column("dossier_id", BigInteger, ForeignKey("dossier.id"), nullable=False),
    Column("issued_on", Date, nullable=False),
    *_created(),
)

# --- land allocation and lease -------------------------------------------------------------------

land_allocation = Table(
    "land_allocation",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("decision_no", Text, nullable=False, unique=True),
    Column("decision_date", Date, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("payment", String(16), nullable=False),
    Column("party_id", BigInteger, ForeignKey("party.id"), nullable=False),
    Column("land_use", String(8), ForeignKey("land_use_code.code"), nullable=False),
    Column("purpose", Text, nullable=False, server_default=""),
    Column("term_start", Date, nullable=False),
    # NULL: stable long-term use (sử dụng ổn định lâu dài), allocations only
    Column("term_end", Date),
    Column("status", String(16), nullable=False, server_default="active"),
    # the decision as a register source: rights created by it (and their copies after parcel
    # changes) point at it, which is how a right finds its terms
    Column("source_id", BigInteger, ForeignKey("register_source.id"), nullable=False),
    *_created(),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_reason", Text),
    Column("area", Float, Computed("ST_Area(geom)", persisted=True)),
    Column("geom", Geometry("MULTIPOLYGON", srid=CITY_SRID, spatial_index=False), nullable=False),
    CheckConstraint("kind IN " + _in(ALLOCATION_KINDS), name="kind"),
    CheckConstraint("payment IN " + _in(PAYMENTS), name="payment"),
    CheckConstraint("status IN ('active', 'revoked')", name="status"),
    CheckConstraint("term_end IS NULL OR term_end > term_start", name="term"),
    CheckConstraint("kind = 'allocation' OR (term_end IS NOT NULL AND payment <> 'none')", name="lease_terms"),
    Index("ix_land_allocation_geom", "geom", postgresql_using="gist"),
    Index("ix_land_allocation_status_term_end", "status", "term_end"),
)

land_allocation_parcel = Table(
    "land_allocation_parcel",
    metadata,
    Column("allocation_id", BigInteger, ForeignKey("land_allocation.id"), primary_key=True),
    Column("parcel_id", BigInteger, ForeignKey("parcel.id"), primary_key=True),
    Column("rrr_id", BigInteger, ForeignKey("rrr.id")),
    Column("covered_area", Float, nullable=False),
)

# --- land-use right certificates -----------------------------------------------------------------

land_certificate = Table(
    "land_certificate",
    metadata,
    Column("id", BigInteger, primary_key=True),
    # issue number of the system; serial (số phát hành) printed on the blank; barcode (mã vạch);
    # register entry number (số vào sổ cấp GCN)
    Column("certificate_no", String(32), nullable=False, unique=True),
    Column("serial", String(16), nullable=False, unique=True),
    Column("barcode", String(32), nullable=False, unique=True),
    Column("register_entry_no", String(32), nullable=False, unique=True),
    Column("issue_date", Date, nullable=False),
    Column("issuing_authority", Text, nullable=False),
    Column("procedure", String(24), nullable=False),
    Column("dossier_id", BigInteger, ForeignKey("dossier.id"), nullable=False),
    Column("supersedes_id", BigInteger, ForeignKey("land_certificate.id"), unique=True),
    Column("status", String(16), nullable=False, server_default="valid"),
    Column("superseded_at", DateTime(timezone=True)),
    # assets attached to land (tài sản gắn liền với đất): houses, other works, forests, crops
    Column("assets", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("notes", Text, nullable=False, server_default=""),
    *_created(),
    CheckConstraint("procedure IN " + _in(CERTIFICATE_PROCEDURES), name="procedure"),
    CheckConstraint("status IN " + _in(CERTIFICATE_STATUSES), name="status"),
    CheckConstraint("(procedure = 'first_issue') = (supersedes_id IS NULL)", name="supersedes"),
    CheckConstraint("supersedes_id IS NULL OR supersedes_id <> id", name="not_self"),
)

land_certificate_holder = Table(
    "land_certificate_holder",
    metadata,
    Column("certificate_id", BigInteger, ForeignKey("land_certificate.id"), primary_key=True),
    Column("party_id", BigInteger, ForeignKey("party.id"), primary_key=True),
    # percent; the shares of a certificate sum to 100 (deferred constraint trigger)
    Column("share", Numeric(7, 4), nullable=False),
    CheckConstraint("share > 0 AND share <= 100", name="share"),
)

land_certificate_parcel = Table(
    "land_certificate_parcel",
    metadata,
    Column("certificate_id", BigInteger, ForeignKey("land_certificate.id"), primary_key=True),
    # the parcel version certified (its geometry is the plan printed on the certificate)
    Column("parcel_id", BigInteger, ForeignKey("parcel.id"), primary_key=True),
    Column("land_use", String(8), ForeignKey("land_use_code.code"), nullable=False),
    Column("purpose", Text, nullable=False, server_default=""),
    Column("area", Float, nullable=False),
    # NULL: long-term (lâu dài)
    Column("term_end", Date),
    Column("use_form", String(16), nullable=False, server_default="private"),
    Column("origin", Text, nullable=False, server_default=""),
    CheckConstraint("use_form IN " + _in(USE_FORMS), name="use_form"),
    CheckConstraint("area > 0", name="area"),
)

land_certificate_right = Table(
    "land_certificate_right",
    metadata,
    Column("certificate_id", BigInteger, ForeignKey("land_certificate.id"), primary_key=True),
    Column("rrr_id", BigInteger, ForeignKey("rrr.id"), primary_key=True),
)

RECORDS_TABLES = (
    street, house_number, house_number_certificate, land_allocation, land_allocation_parcel, land_certificate,
    land_certificate_holder, land_certificate_parcel, land_certificate_right,
)
