"""flood scenarios, runs and extents

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flood_scenario",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("data_version", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flood_scenario")),
        sa.UniqueConstraint("key", "version", name=op.f("uq_flood_scenario_key_version")),
    )
    op.create_table(
        "flood_run",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("scenario_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("raster_id", sa.Integer(), nullable=False),
        sa.Column("raster_version", sa.Integer(), nullable=False),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
                           name=op.f("ck_flood_run_status")),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], name=op.f("fk_flood_run_job_id_job"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["raster_id"], ["raster.id"], name=op.f("fk_flood_run_raster_id_raster"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["scenario_id"], ["flood_scenario.id"],
                                name=op.f("fk_flood_run_scenario_id_flood_scenario"), ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flood_run")),
    )
    op.create_index("ix_flood_run_status", "flood_run", ["status"], unique=False)
    op.create_geospatial_table(
        "flood_extent",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("min_depth", sa.Float(), nullable=False),
        sa.Column("max_depth", sa.Float(), nullable=True),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("geom", Geometry(geometry_type="MULTIPOLYGON", srid=909210, dimension=2, spatial_index=False,
                                   from_text="ST_GeomFromEWKT", name="geometry", nullable=False), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["flood_run.id"], name=op.f("fk_flood_extent_run_id_flood_run"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flood_extent")),
    )
    op.create_geospatial_index("ix_flood_extent_geom", "flood_extent", ["geom"], unique=False,
                               postgresql_using="gist", postgresql_ops={})
    op.create_index("ix_flood_extent_run_id", "flood_extent", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_flood_extent_run_id", table_name="flood_extent")
    op.drop_geospatial_index("ix_flood_extent_geom", table_name="flood_extent", postgresql_using="gist",
                             column_name="geom")
    op.drop_geospatial_table("flood_extent")
    op.drop_index("ix_flood_run_status", table_name="flood_run")
    op.drop_table("flood_run")
    op.drop_table("flood_scenario")
