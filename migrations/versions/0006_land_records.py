"""land records: streets and house numbers, land allocation and lease, land-use right certificates

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SRID = 909210


def _geom(name, geometry_type):
    return sa.Column(name, Geometry(geometry_type=geometry_type, srid=SRID, dimension=2, spatial_index=False,
                                    from_text="ST_GeomFromEWKT", name="geometry", nullable=False), nullable=False)


def _created():
    return (
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )


# Rows that are records (decisions, numbers, certificates) are never edited: an UPDATE may change
# only the columns named as trigger arguments (status bookkeeping), a DELETE is refused.
GUARD_FUNCTION = """
CREATE FUNCTION records_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    col text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION '% rows are records and are never deleted', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (to_jsonb(NEW) - TG_ARGV) IS DISTINCT FROM (to_jsonb(OLD) - TG_ARGV) THEN
        RAISE EXCEPTION '% content is never edited: supersede or retire it instead', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- bookkeeping columns (retired_at, replaced_by_id ...) are set once and then kept
    FOREACH col IN ARRAY TG_ARGV LOOP
        IF col NOT IN ('status', 'area') AND (to_jsonb(OLD) -> col) <> 'null'::jsonb
           AND (to_jsonb(OLD) -> col) IS DISTINCT FROM (to_jsonb(NEW) -> col) THEN
            RAISE EXCEPTION '%.% is set already and is never changed', TG_TABLE_NAME, col
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END LOOP;
    IF TG_NARGS > 0 THEN
        -- only a live record changes status (a retired or superseded one is final)
        IF (to_jsonb(OLD) ->> 'status') NOT IN ('active', 'valid')
           AND (to_jsonb(OLD) ->> 'status') IS DISTINCT FROM (to_jsonb(NEW) ->> 'status') THEN
            RAISE EXCEPTION '% is % already', TG_TABLE_NAME, to_jsonb(OLD) ->> 'status'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
"""

# holders, parcels and rights of a certificate are part of its content: written only in the
# transaction that issues it
CHILD_GUARD_FUNCTION = """
CREATE FUNCTION certificate_child_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION '% rows are part of a certificate and are never changed', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM land_certificate c WHERE c.id = NEW.certificate_id AND c.created_at = now()) THEN
        RAISE EXCEPTION 'certificate % was issued earlier: its content is closed', NEW.certificate_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
"""

# checked at commit: a certificate has holders whose shares sum to 100 % and at least one parcel
SHARES_FUNCTION = """
CREATE FUNCTION certificate_complete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
BEGIN
    SELECT coalesce(sum(share), 0) INTO total FROM land_certificate_holder WHERE certificate_id = NEW.id;
    IF abs(total - 100) > 0.001 THEN
        RAISE EXCEPTION 'the holders'' shares of certificate % sum to %, not 100', NEW.id, total
            USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM land_certificate_parcel WHERE certificate_id = NEW.id) THEN
        RAISE EXCEPTION 'certificate % certifies no parcel', NEW.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""

GUARDED = {
    "house_number": ("status", "retired_at", "retired_reason", "replaced_by_id"),
    "house_number_certificate": (),
    # area is generated from geom (NULL in NEW during BEFORE triggers); geom itself is compared
    "land_allocation": ("status", "revoked_at", "revoked_reason", "area"),
    "land_certificate": ("status", "superseded_at"),
}
CHILDREN = ("land_certificate_holder", "land_certificate_parcel", "land_certificate_right")


def _create_tables() -> None:
    op.create_geospatial_table(
        "street",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("ward_code", sa.String(length=16), nullable=True),
        sa.Column("road_id", sa.BigInteger(), nullable=True),
        sa.Column("parent_street_id", sa.BigInteger(), nullable=True),
        sa.Column("prefix", sa.Text(), nullable=True),
        sa.Column("odd_side", sa.String(length=8), server_default="left", nullable=False),
        sa.Column("metres_per_number", sa.Float(), server_default="4", nullable=False),
        *_created(),
        _geom("geom", "LINESTRING"),
        sa.CheckConstraint("odd_side IN ('left', 'right')", name=op.f("ck_street_odd_side")),
        sa.CheckConstraint("metres_per_number > 0", name=op.f("ck_street_metres_per_number")),
        sa.CheckConstraint("(parent_street_id IS NULL) = (prefix IS NULL)", name=op.f("ck_street_alley_prefix")),
        sa.ForeignKeyConstraint(["parent_street_id"], ["street.id"], name=op.f("fk_street_parent_street_id_street")),
        sa.ForeignKeyConstraint(["road_id"], ["road.id"], name=op.f("fk_street_road_id_road"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_street")),
    )
    op.create_geospatial_index("ix_street_geom", "street", ["geom"], unique=False, postgresql_using="gist",
                               postgresql_ops={})
    op.create_geospatial_table(
        "house_number",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("street_id", sa.BigInteger(), nullable=False),
        sa.Column("building_id", sa.BigInteger(), nullable=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("suffix", sa.String(length=4), server_default="", nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("chainage", sa.Float(), nullable=False),
        sa.Column("lateral_offset", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("dossier_id", sa.BigInteger(), nullable=True),
        *_created(),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_reason", sa.Text(), nullable=True),
        sa.Column("replaced_by_id", sa.BigInteger(), nullable=True),
        _geom("geom", "POINT"),
        sa.CheckConstraint("number > 0", name=op.f("ck_house_number_number")),
        sa.CheckConstraint("side IN ('left', 'right')", name=op.f("ck_house_number_side")),
        sa.CheckConstraint("status IN ('active', 'retired')", name=op.f("ck_house_number_status")),
        sa.CheckConstraint("(status = 'retired') = (retired_at IS NOT NULL)", name=op.f("ck_house_number_retired")),
        sa.ForeignKeyConstraint(["dossier_id"], ["dossier.id"], name=op.f("fk_house_number_dossier_id_dossier")),
        sa.ForeignKeyConstraint(["replaced_by_id"], ["house_number.id"],
                                name=op.f("fk_house_number_replaced_by_id_house_number")),
        sa.ForeignKeyConstraint(["street_id"], ["street.id"], name=op.f("fk_house_number_street_id_street")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_house_number")),
    )
    op.create_geospatial_index("ix_house_number_geom", "house_number", ["geom"], unique=False,
                               postgresql_using="gist", postgresql_ops={})
    op.create_index("ix_house_number_street_id", "house_number", ["street_id"], unique=False)
    op.create_index("uq_house_number_active_label", "house_number", ["street_id", "label"], unique=True,
                    postgresql_where=sa.text("status = 'active'"))
    op.create_index("uq_house_number_active_building", "house_number", ["building_id"], unique=True,
                    postgresql_where=sa.text("status = 'active' AND building_id IS NOT NULL"))
    op.create_table(
        "house_number_certificate",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("house_number_id", sa.BigInteger(), nullable=False),
        sa.Column("certificate_no", sa.String(length=32), nullable=False),
        sa.Column("dossier_id", sa.BigInteger(), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        *_created(),
        sa.ForeignKeyConstraint(["dossier_id"], ["dossier.id"],
                                name=op.f("fk_house_number_certificate_dossier_id_dossier")),
        sa.ForeignKeyConstraint(["house_number_id"], ["house_number.id"],
                                name=op.f("fk_house_number_certificate_house_number_id_house_number")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_house_number_certificate")),
        sa.UniqueConstraint("certificate_no", name=op.f("uq_house_number_certificate_certificate_no")),
    )
    op.create_geospatial_table(
        "land_allocation",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("decision_no", sa.Text(), nullable=False),
        sa.Column("decision_date", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payment", sa.String(length=16), nullable=False),
        sa.Column("party_id", sa.BigInteger(), nullable=False),
        sa.Column("land_use", sa.String(length=8), nullable=False),
        sa.Column("purpose", sa.Text(), server_default="", nullable=False),
        sa.Column("term_start", sa.Date(), nullable=False),
        sa.Column("term_end", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        *_created(),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.Column("area", sa.Float(), sa.Computed("ST_Area(geom)", persisted=True), nullable=True),
        _geom("geom", "MULTIPOLYGON"),
        sa.CheckConstraint("kind IN ('allocation', 'lease')", name=op.f("ck_land_allocation_kind")),
        sa.CheckConstraint("payment IN ('none', 'one_off', 'annual')", name=op.f("ck_land_allocation_payment")),
        sa.CheckConstraint("status IN ('active', 'revoked')", name=op.f("ck_land_allocation_status")),
        sa.CheckConstraint("term_end IS NULL OR term_end > term_start", name=op.f("ck_land_allocation_term")),
        sa.CheckConstraint("kind = 'allocation' OR (term_end IS NOT NULL AND payment <> 'none')",
                           name=op.f("ck_land_allocation_lease_terms")),
        sa.ForeignKeyConstraint(["land_use"], ["land_use_code.code"],
                                name=op.f("fk_land_allocation_land_use_land_use_code")),
        sa.ForeignKeyConstraint(["party_id"], ["party.id"], name=op.f("fk_land_allocation_party_id_party")),
        sa.ForeignKeyConstraint(["source_id"], ["register_source.id"],
                                name=op.f("fk_land_allocation_source_id_register_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_land_allocation")),
        sa.UniqueConstraint("decision_no", name=op.f("uq_land_allocation_decision_no")),
    )
    op.create_geospatial_index("ix_land_allocation_geom", "land_allocation", ["geom"], unique=False,
                               postgresql_using="gist", postgresql_ops={})
    op.create_index("ix_land_allocation_status_term_end", "land_allocation", ["status", "term_end"], unique=False)
    op.create_table(
        "land_allocation_parcel",
        sa.Column("allocation_id", sa.BigInteger(), nullable=False),
        sa.Column("parcel_id", sa.BigInteger(), nullable=False),
        sa.Column("rrr_id", sa.BigInteger(), nullable=True),
        sa.Column("covered_area", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["allocation_id"], ["land_allocation.id"],
                                name=op.f("fk_land_allocation_parcel_allocation_id_land_allocation")),
        sa.ForeignKeyConstraint(["parcel_id"], ["parcel.id"], name=op.f("fk_land_allocation_parcel_parcel_id_parcel")),
        sa.ForeignKeyConstraint(["rrr_id"], ["rrr.id"], name=op.f("fk_land_allocation_parcel_rrr_id_rrr")),
        sa.PrimaryKeyConstraint("allocation_id", "parcel_id", name=op.f("pk_land_allocation_parcel")),
    )
    op.create_table(
        "land_certificate",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("certificate_no", sa.String(length=32), nullable=False),
        sa.Column("serial", sa.String(length=16), nullable=False),
        sa.Column("barcode", sa.String(length=32), nullable=False),
        sa.Column("register_entry_no", sa.String(length=32), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("issuing_authority", sa.Text(), nullable=False),
        sa.Column("procedure", sa.String(length=24), nullable=False),
        sa.Column("dossier_id", sa.BigInteger(), nullable=False),
        sa.Column("supersedes_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="valid", nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assets", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        *_created(),
        sa.CheckConstraint("procedure IN ('first_issue', 'reissue', 'change_registration')",
                           name=op.f("ck_land_certificate_procedure")),
        sa.CheckConstraint("status IN ('valid', 'superseded', 'cancelled')", name=op.f("ck_land_certificate_status")),
        sa.CheckConstraint("(procedure = 'first_issue') = (supersedes_id IS NULL)",
                           name=op.f("ck_land_certificate_supersedes")),
        sa.CheckConstraint("supersedes_id IS NULL OR supersedes_id <> id", name=op.f("ck_land_certificate_not_self")),
        sa.ForeignKeyConstraint(["dossier_id"], ["dossier.id"], name=op.f("fk_land_certificate_dossier_id_dossier")),
        sa.ForeignKeyConstraint(["supersedes_id"], ["land_certificate.id"],
                                name=op.f("fk_land_certificate_supersedes_id_land_certificate")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_land_certificate")),
        sa.UniqueConstraint("barcode", name=op.f("uq_land_certificate_barcode")),
        sa.UniqueConstraint("certificate_no", name=op.f("uq_land_certificate_certificate_no")),
        sa.UniqueConstraint("register_entry_no", name=op.f("uq_land_certificate_register_entry_no")),
        sa.UniqueConstraint("serial", name=op.f("uq_land_certificate_serial")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_land_certificate_supersedes_id")),
    )
    op.create_table(
        "land_certificate_holder",
        sa.Column("certificate_id", sa.BigInteger(), nullable=False),
        sa.Column("party_id", sa.BigInteger(), nullable=False),
        sa.Column("share", sa.Numeric(precision=7, scale=4), nullable=False),
        sa.CheckConstraint("share > 0 AND share <= 100", name=op.f("ck_land_certificate_holder_share")),
        sa.ForeignKeyConstraint(["certificate_id"], ["land_certificate.id"],
                                name=op.f("fk_land_certificate_holder_certificate_id_land_certificate")),
        sa.ForeignKeyConstraint(["party_id"], ["party.id"], name=op.f("fk_land_certificate_holder_party_id_party")),
        sa.PrimaryKeyConstraint("certificate_id", "party_id", name=op.f("pk_land_certificate_holder")),
    )
    op.create_table(
        "land_certificate_parcel",
        sa.Column("certificate_id", sa.BigInteger(), nullable=False),
        sa.Column("parcel_id", sa.BigInteger(), nullable=False),
        sa.Column("land_use", sa.String(length=8), nullable=False),
        sa.Column("purpose", sa.Text(), server_default="", nullable=False),
        sa.Column("area", sa.Float(), nullable=False),
        sa.Column("term_end", sa.Date(), nullable=True),
        sa.Column("use_form", sa.String(length=16), server_default="private", nullable=False),
        sa.Column("origin", sa.Text(), server_default="", nullable=False),
        sa.CheckConstraint("use_form IN ('private', 'joint')", name=op.f("ck_land_certificate_parcel_use_form")),
        sa.CheckConstraint("area > 0", name=op.f("ck_land_certificate_parcel_area")),
        sa.ForeignKeyConstraint(["certificate_id"], ["land_certificate.id"],
                                name=op.f("fk_land_certificate_parcel_certificate_id_land_certificate")),
        sa.ForeignKeyConstraint(["land_use"], ["land_use_code.code"],
                                name=op.f("fk_land_certificate_parcel_land_use_land_use_code")),
        sa.ForeignKeyConstraint(["parcel_id"], ["parcel.id"], name=op.f("fk_land_certificate_parcel_parcel_id_parcel")),
        sa.PrimaryKeyConstraint("certificate_id", "parcel_id", name=op.f("pk_land_certificate_parcel")),
    )
    op.create_table(
        "land_certificate_right",
        sa.Column("certificate_id", sa.BigInteger(), nullable=False),
        sa.Column("rrr_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["certificate_id"], ["land_certificate.id"],
                                name=op.f("fk_land_certificate_right_certificate_id_land_certificate")),
        sa.ForeignKeyConstraint(["rrr_id"], ["rrr.id"], name=op.f("fk_land_certificate_right_rrr_id_rrr")),
        sa.PrimaryKeyConstraint("certificate_id", "rrr_id", name=op.f("pk_land_certificate_right")),
    )


def _literal(name: str) -> str:
    """A fixed column name as an SQL string literal (names are [a-z_] only)."""
    if not name.replace("_", "").isalpha() or not name.islower():
        raise ValueError(f"unexpected column name {name!r}")
    return "'" + name + "'"


def _create_triggers() -> None:
    op.execute(GUARD_FUNCTION)
    op.execute(CHILD_GUARD_FUNCTION)
    op.execute(SHARES_FUNCTION)
    quote = op.get_bind().dialect.identifier_preparer.quote
    for table, allowed in GUARDED.items():
        # identifiers and trigger arguments are fixed, code-defined names, quoted by the dialect
        args = ", ".join(_literal(column) for column in allowed)
        op.execute("CREATE TRIGGER records_guard BEFORE UPDATE OR DELETE ON " + quote(table)
                   + " FOR EACH ROW EXECUTE FUNCTION records_guard(" + args + ")")
    for table in CHILDREN:
        op.execute("CREATE TRIGGER certificate_child_guard BEFORE INSERT OR UPDATE OR DELETE ON " + quote(table)
                   + " FOR EACH ROW EXECUTE FUNCTION certificate_child_guard()")
    op.execute("CREATE CONSTRAINT TRIGGER certificate_complete AFTER INSERT ON land_certificate "
               "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION certificate_complete()")


def upgrade() -> None:
    _create_tables()
    _create_triggers()


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS certificate_complete ON land_certificate")
    quote = op.get_bind().dialect.identifier_preparer.quote
    for table in CHILDREN:
        op.execute("DROP TRIGGER IF EXISTS certificate_child_guard ON " + quote(table))
    for table in GUARDED:
        op.execute("DROP TRIGGER IF EXISTS records_guard ON " + quote(table))
    op.execute("DROP FUNCTION IF EXISTS certificate_complete()")
    op.execute("DROP FUNCTION IF EXISTS certificate_child_guard()")
    op.execute("DROP FUNCTION IF EXISTS records_guard()")
    op.drop_table("land_certificate_right")
    op.drop_table("land_certificate_parcel")
    op.drop_table("land_certificate_holder")
    op.drop_table("land_certificate")
    op.drop_table("land_allocation_parcel")
    op.drop_index("ix_land_allocation_status_term_end", table_name="land_allocation")
    op.drop_geospatial_index("ix_land_allocation_geom", table_name="land_allocation", postgresql_using="gist",
                             column_name="geom")
    op.drop_geospatial_table("land_allocation")
    op.drop_table("house_number_certificate")
    op.drop_index("uq_house_number_active_building", table_name="house_number",
                  postgresql_where=sa.text("status = 'active' AND building_id IS NOT NULL"))
    op.drop_index("uq_house_number_active_label", table_name="house_number",
                  postgresql_where=sa.text("status = 'active'"))
    op.drop_index("ix_house_number_street_id", table_name="house_number")
    op.drop_geospatial_index("ix_house_number_geom", table_name="house_number", postgresql_using="gist",
                             column_name="geom")
    op.drop_geospatial_table("house_number")
    op.drop_geospatial_index("ix_street_geom", table_name="street", postgresql_using="gist", column_name="geom")
    op.drop_geospatial_table("street")
