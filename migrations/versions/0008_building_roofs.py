"""lidar: LoD2 roof models of buildings measured by an ingest

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "building_roof",
        sa.Column("building_id", sa.BigInteger(), nullable=False),
        sa.Column("lod2", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("roof_type", sa.String(length=16), nullable=True),
        sa.Column("lidar_date", sa.Date(), nullable=True),
        sa.Column("model", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["building_id"], ["building.id"], name=op.f("fk_building_roof_building_id_building"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("building_id", name=op.f("pk_building_roof")),
    )


def downgrade() -> None:
    op.drop_table("building_roof")
