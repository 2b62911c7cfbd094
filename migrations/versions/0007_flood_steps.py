"""flood extents per saved time step (the time-varying flood map layer)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_geospatial_table(
        "flood_step",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("time_s", sa.Float(), nullable=False),
        sa.Column("valid_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("min_depth", sa.Float(), nullable=False),
        sa.Column("max_depth", sa.Float(), nullable=True),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("geom", Geometry(geometry_type="MULTIPOLYGON", srid=909210, dimension=2, spatial_index=False,
                                   from_text="ST_GeomFromEWKT", name="geometry", nullable=False), nullable=False),
        sa.Column("geom_3857", Geometry(geometry_type="MULTIPOLYGON", srid=3857, dimension=2, spatial_index=False,
                                        from_text="ST_GeomFromEWKT", name="geometry"),
                  sa.Computed("ST_Transform(geom, 3857)", persisted=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["flood_run.id"], name=op.f("fk_flood_step_run_id_flood_run"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flood_step")),
    )
    op.create_geospatial_index("ix_flood_step_geom", "flood_step", ["geom"], unique=False,
                               postgresql_using="gist", postgresql_ops={})
    op.create_geospatial_index("ix_flood_step_geom_3857", "flood_step", ["geom_3857"], unique=False,
                               postgresql_using="gist", postgresql_ops={})
    op.create_index("ix_flood_step_run_id_valid_time", "flood_step", ["run_id", "valid_time"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_flood_step_run_id_valid_time", table_name="flood_step")
    op.drop_geospatial_index("ix_flood_step_geom_3857", table_name="flood_step", postgresql_using="gist",
                             column_name="geom_3857")
    op.drop_geospatial_index("ix_flood_step_geom", table_name="flood_step", postgresql_using="gist",
                             column_name="geom")
    op.drop_geospatial_table("flood_step")
