"""licensing: parcel register (party, RRR, sources, lineage), rule tables, corridors, dossiers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

from licensing.ruledata import seed_rule_tables
from licensing.workflow import transition_rows

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SRID = 909210
STATES = ("('draft', 'submitted', 'accepted', 'need_info', 'under_review', 'approved', 'rejected', 'issued', "
          "'withdrawn')")


def _jsonb(name):
    return sa.Column(name, postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                     nullable=False)


def _created_at():
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    # all versions of a parcel number (licensing/tables.py): fresh numbers and histories by number
    op.create_index("ix_parcel_ward_code_sheet_no_parcel_no", "parcel", ["ward_code", "sheet_no", "parcel_no"],
                    unique=False)
    op.create_table(
        "party",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="person", nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("id_number", sa.Text(), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        _jsonb("attributes"),
        _created_at(),
        sa.CheckConstraint("kind IN ('person', 'organization', 'state')", name=op.f("ck_party_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_party")),
    )
    op.create_table(
        "register_source",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=True),
        sa.Column("issuer", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        _jsonb("attributes"),
        _created_at(),
        sa.CheckConstraint(
            "kind IN ('decision', 'survey', 'contract', 'certificate', 'court_order', 'other')",
            name=op.f("ck_register_source_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_register_source")),
    )
    op.create_table(
        "parcel_change",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        _jsonb("detail"),
        sa.CheckConstraint(
            "operation IN ('create', 'split', 'merge', 'adjust', 'attributes')", name=op.f("ck_parcel_change_operation")
        ),
        sa.ForeignKeyConstraint(["source_id"], ["register_source.id"],
                                name=op.f("fk_parcel_change_source_id_register_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parcel_change")),
    )
    op.create_index("ix_parcel_change_at", "parcel_change", ["at"], unique=False)
    op.create_table(
        "parcel_lineage",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=False),
        sa.Column("child_id", sa.BigInteger(), nullable=False),
        sa.Column("area_carried", sa.Float(), nullable=False),
        sa.CheckConstraint("parent_id <> child_id", name=op.f("ck_parcel_lineage_not_self")),
        sa.ForeignKeyConstraint(["change_id"], ["parcel_change.id"],
                                name=op.f("fk_parcel_lineage_change_id_parcel_change")),
        sa.ForeignKeyConstraint(["parent_id"], ["parcel.id"], name=op.f("fk_parcel_lineage_parent_id_parcel")),
        sa.ForeignKeyConstraint(["child_id"], ["parcel.id"], name=op.f("fk_parcel_lineage_child_id_parcel")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parcel_lineage")),
        sa.UniqueConstraint("parent_id", "child_id", name=op.f("uq_parcel_lineage_parent_id_child_id")),
    )
    op.create_index("ix_parcel_lineage_child_id", "parcel_lineage", ["child_id"], unique=False)
    op.create_table(
        "rrr",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("parcel_id", sa.BigInteger(), nullable=False),
        sa.Column("party_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("share", sa.Float(), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=True),
        sa.Column("begin_lifespan", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("end_lifespan", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('right', 'restriction', 'responsibility')", name=op.f("ck_rrr_kind")),
        sa.CheckConstraint("share IS NULL OR (share > 0 AND share <= 1)", name=op.f("ck_rrr_share")),
        sa.ForeignKeyConstraint(["parcel_id"], ["parcel.id"], name=op.f("fk_rrr_parcel_id_parcel")),
        sa.ForeignKeyConstraint(["party_id"], ["party.id"], name=op.f("fk_rrr_party_id_party")),
        sa.ForeignKeyConstraint(["source_id"], ["register_source.id"], name=op.f("fk_rrr_source_id_register_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rrr")),
    )
    op.create_index("ix_rrr_parcel_id", "rrr", ["parcel_id"], unique=False)
    op.create_table(
        "rule_table",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=48), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("verify", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("created_by", sa.Text(), server_default="migration", nullable=False),
        _created_at(),
        sa.CheckConstraint("effective_to IS NULL OR effective_to > effective_from",
                           name=op.f("ck_rule_table_effective")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_table")),
        sa.UniqueConstraint("rule_id", "version", name=op.f("uq_rule_table_rule_id_version")),
    )
    op.create_geospatial_table(
        "protection_corridor",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source_table", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("rule_table_id", sa.Integer(), nullable=False),
        sa.Column("half_width", sa.Float(), nullable=False),
        _jsonb("attributes"),
        sa.Column("generated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "geom",
            Geometry(geometry_type="MULTIPOLYGON", srid=SRID, dimension=2, spatial_index=False,
                     from_text="ST_GeomFromEWKT", name="geometry", nullable=False),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["rule_table_id"], ["rule_table.id"],
                                name=op.f("fk_protection_corridor_rule_table_id_rule_table")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_protection_corridor")),
    )
    op.create_geospatial_index(
        "ix_protection_corridor_geom", "protection_corridor", ["geom"], unique=False, postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(
        "ix_protection_corridor_source_table_source_id", "protection_corridor", ["source_table", "source_id"],
        unique=False,
    )
    op.create_table(
        "dossier_transition",
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("from_state", "to_state", "role", name=op.f("pk_dossier_transition")),
    )
    op.create_table(
        "dossier",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="draft", nullable=False),
        sa.Column("title", sa.Text(), server_default="", nullable=False),
        sa.Column("parcel_id", sa.BigInteger(), nullable=True),
        sa.Column("applicant_name", sa.Text(), nullable=True),
        sa.Column("applicant_contact", sa.Text(), nullable=True),
        sa.Column("owner_user_id", sa.Integer(), nullable=True),
        _jsonb("data"),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        _created_at(),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN " + STATES, name=op.f("ck_dossier_state")),
        sa.ForeignKeyConstraint(["parcel_id"], ["parcel.id"], name=op.f("fk_dossier_parcel_id_parcel")),
        sa.ForeignKeyConstraint(
            ["owner_user_id"], ["app_user.id"], name=op.f("fk_dossier_owner_user_id_app_user"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dossier")),
        sa.UniqueConstraint("code", name=op.f("uq_dossier_code")),
    )
    op.create_index("ix_dossier_state_due_date", "dossier", ["state", "due_date"], unique=False)
    op.create_table(
        "dossier_event",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("dossier_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=False),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["dossier_id"], ["dossier.id"], name=op.f("fk_dossier_event_dossier_id_dossier")),
        sa.ForeignKeyConstraint(
            ["from_state", "to_state", "role"],
            ["dossier_transition.from_state", "dossier_transition.to_state", "dossier_transition.role"],
            name=op.f("fk_dossier_event_from_state_dossier_transition"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dossier_event")),
    )
    op.create_index("ix_dossier_event_dossier_id", "dossier_event", ["dossier_id"], unique=False)
    op.create_table(
        "dossier_attachment",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("dossier_id", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("mime_type", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_path", sa.Text(), nullable=False),
        sa.Column("uploaded_by", sa.Text(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["dossier_id"], ["dossier.id"], name=op.f("fk_dossier_attachment_dossier_id_dossier")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dossier_attachment")),
        sa.UniqueConstraint("dossier_id", "sha256", name=op.f("uq_dossier_attachment_dossier_id_sha256")),
    )
    # a dossier is born in draft; its state changes only along dossier_transition and only with a
    # dossier_event row of the same transaction (whose FK checks the role)
    op.execute(
        """
        CREATE FUNCTION dossier_state_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.state <> 'draft' THEN
                    RAISE EXCEPTION 'a dossier starts in draft, not %', NEW.state
                        USING ERRCODE = 'check_violation';
                END IF;
            ELSIF NEW.state IS DISTINCT FROM OLD.state THEN
                IF NOT EXISTS (
                    SELECT 1 FROM dossier_event e
                    WHERE e.dossier_id = NEW.id AND e.from_state = OLD.state AND e.to_state = NEW.state
                      AND e.at = now()
                ) THEN
                    RAISE EXCEPTION 'dossier transition % -> % needs an allowed dossier_event', OLD.state, NEW.state
                        USING ERRCODE = 'check_violation';
                END IF;
            END IF;
            RETURN NEW;
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER dossier_state_guard BEFORE INSERT OR UPDATE OF state ON dossier "
        "FOR EACH ROW EXECUTE FUNCTION dossier_state_guard()"
    )
    op.bulk_insert(
        sa.table(
            "rule_table", sa.column("rule_id"), sa.column("version"), sa.column("title"), sa.column("legal_basis"),
            sa.column("verify"), sa.column("effective_from"), sa.column("effective_to"),
            sa.column("data", postgresql.JSONB), sa.column("note"), sa.column("created_by"),
        ),
        seed_rule_tables(),
    )
    op.bulk_insert(
        sa.table("dossier_transition", sa.column("from_state"), sa.column("to_state"), sa.column("role")),
        transition_rows(),
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS dossier_state_guard ON dossier")
    op.execute("DROP FUNCTION IF EXISTS dossier_state_guard()")
    op.drop_table("dossier_attachment")
    op.drop_index("ix_dossier_event_dossier_id", table_name="dossier_event")
    op.drop_table("dossier_event")
    op.drop_index("ix_dossier_state_due_date", table_name="dossier")
    op.drop_table("dossier")
    op.drop_table("dossier_transition")
    op.drop_index("ix_protection_corridor_source_table_source_id", table_name="protection_corridor")
    op.drop_geospatial_index(
        "ix_protection_corridor_geom", table_name="protection_corridor", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("protection_corridor")
    op.drop_table("rule_table")
    op.drop_index("ix_rrr_parcel_id", table_name="rrr")
    op.drop_table("rrr")
    op.drop_index("ix_parcel_lineage_child_id", table_name="parcel_lineage")
    op.drop_table("parcel_lineage")
    op.drop_index("ix_parcel_change_at", table_name="parcel_change")
    op.drop_table("parcel_change")
    op.drop_table("register_source")
    op.drop_table("party")
    op.drop_index("ix_parcel_ward_code_sheet_no_parcel_no", table_name="parcel")
