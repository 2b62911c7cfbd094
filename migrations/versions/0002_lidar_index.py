"""lidar: file and tile index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SRID = 909210


def _geom(name):
    return sa.Column(name, Geometry(geometry_type="POLYGON", srid=SRID, dimension=2, spatial_index=False,
                                    from_text="ST_GeomFromEWKT", name="geometry", nullable=False), nullable=False)


def _jsonb(name):
    return sa.Column(name, postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                     nullable=False)


def _created_at():
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    op.create_geospatial_table(
        "lidar_file",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("las_version", sa.String(length=8), nullable=False),
        sa.Column("point_format", sa.Integer(), nullable=False),
        sa.Column("copc", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("point_count", sa.BigInteger(), nullable=False),
        sa.Column("density", sa.Float(), nullable=False),
        _jsonb("classes"),
        sa.Column("z_min", sa.Float(), nullable=False),
        sa.Column("z_max", sa.Float(), nullable=False),
        sa.Column("source_srid", sa.Integer(), nullable=False),
        sa.Column("crs_name", sa.Text(), nullable=False),
        sa.Column("crs_source", sa.String(length=16), nullable=False),
        sa.Column("vertical_datum", sa.Text(), nullable=True),
        sa.Column("acquisition_date", sa.Date(), nullable=True),
        _created_at(),
        _geom("footprint"),
        sa.CheckConstraint("crs_source IN ('wkt', 'geotiff', 'declared')", name=op.f("ck_lidar_file_crs_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lidar_file")),
        sa.UniqueConstraint("path", name=op.f("uq_lidar_file_path")),
    )
    op.create_geospatial_index("ix_lidar_file_footprint", "lidar_file", ["footprint"], unique=False,
                               postgresql_using="gist", postgresql_ops={})
    op.create_geospatial_table(
        "lidar_tile",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("tile_size", sa.Float(), nullable=False),
        sa.Column("tile_x", sa.Integer(), nullable=False),
        sa.Column("tile_y", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("point_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ground_count", sa.BigInteger(), server_default="0", nullable=False),
        _jsonb("classes"),
        sa.Column("error", sa.Text(), nullable=True),
        _created_at(),
        _geom("geom"),
        sa.CheckConstraint("status IN ('done', 'failed')", name=op.f("ck_lidar_tile_status")),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], name=op.f("fk_lidar_tile_job_id_job"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lidar_tile")),
        sa.UniqueConstraint("job_id", "tile_size", "tile_x", "tile_y",
                            name=op.f("uq_lidar_tile_job_id_tile_size_tile_x_tile_y")),
    )
    op.create_geospatial_index("ix_lidar_tile_geom", "lidar_tile", ["geom"], unique=False,
                               postgresql_using="gist", postgresql_ops={})


def downgrade() -> None:
    op.drop_geospatial_index("ix_lidar_tile_geom", table_name="lidar_tile", postgresql_using="gist",
                             column_name="geom")
    op.drop_geospatial_table("lidar_tile")
    op.drop_geospatial_index("ix_lidar_file_footprint", table_name="lidar_file", postgresql_using="gist",
                             column_name="footprint")
    op.drop_geospatial_table("lidar_file")
