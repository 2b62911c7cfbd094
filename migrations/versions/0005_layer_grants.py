"""layer grants between agencies (sharing of layers, optionally limited to an area)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_geospatial_table(
        "layer_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("layer_id", sa.Integer(), nullable=False),
        sa.Column("agency_id", sa.Integer(), nullable=False),
        sa.Column("permission", sa.String(length=8), nullable=False),
        sa.Column("area", Geometry(geometry_type="MULTIPOLYGON", srid=909210, dimension=2, spatial_index=False,
                                   from_text="ST_GeomFromEWKT", name="geometry"), nullable=True),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("permission IN ('read', 'edit')", name=op.f("ck_layer_grant_permission")),
        sa.ForeignKeyConstraint(["agency_id"], ["agency.id"], name=op.f("fk_layer_grant_agency_id_agency"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["layer_id"], ["layer.id"], name=op.f("fk_layer_grant_layer_id_layer"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_layer_grant")),
    )
    op.create_geospatial_index("ix_layer_grant_area", "layer_grant", ["area"], unique=False,
                               postgresql_using="gist", postgresql_ops={})
    op.create_index("ix_layer_grant_layer_id_agency_id", "layer_grant", ["layer_id", "agency_id"], unique=False)
    op.create_index("uq_layer_grant_active", "layer_grant", ["layer_id", "agency_id", "permission"], unique=True,
                    postgresql_where=sa.text("revoked_at IS NULL"))


def downgrade() -> None:
    op.drop_index("uq_layer_grant_active", table_name="layer_grant", postgresql_where=sa.text("revoked_at IS NULL"))
    op.drop_index("ix_layer_grant_layer_id_agency_id", table_name="layer_grant")
    op.drop_geospatial_index("ix_layer_grant_area", table_name="layer_grant", postgresql_using="gist",
                             column_name="area")
    op.drop_geospatial_table("layer_grant")
