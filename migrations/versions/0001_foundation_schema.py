"""foundation schema: city CRS, catalogue, cadastre, networks, zoning, rasters, jobs, users, audit

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 17:50:47.001970
"""

from collections.abc import Sequence

import geoalchemy2
import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

from gisserver.crs import CITY_NAME, CITY_PROJ4, CITY_SRID
from layers.codelists import land_use_codes

revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE SCHEMA IF NOT EXISTS layerdata")
    # the city CRS with the official VN-2000 <-> WGS84 parameters (see gisserver/crs.py)
    op.execute(
        sa.text(
            "INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text) "
            "VALUES (:srid, 'HCMGIS', :srid, :name, :proj4) "
            "ON CONFLICT (srid) DO UPDATE SET srtext = EXCLUDED.srtext, proj4text = EXCLUDED.proj4text"
        ).bindparams(srid=CITY_SRID, name="", proj4=CITY_PROJ4.replace(" +type=crs", ""))
    )
    op.create_table('agency',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), server_default='department', nullable=False),
    sa.CheckConstraint("kind IN ('district', 'department', 'city')", name=op.f('ck_agency_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agency')),
    sa.UniqueConstraint('code', name=op.f('uq_agency_code'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('actor', sa.Text(), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=False),
    sa.Column('target_id', sa.Text(), nullable=True),
    sa.Column('before', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('after', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_index('ix_audit_log_at', 'audit_log', ['at'], unique=False)
    op.create_index('ix_audit_log_target_type_target_id', 'audit_log', ['target_type', 'target_id'], unique=False)
    op.create_geospatial_table('building',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('parcel_id', sa.BigInteger(), nullable=True),
    sa.Column('floors', sa.Integer(), nullable=True),
    sa.Column('height', sa.Float(), nullable=True),
    sa.Column('ground_z', sa.Float(), nullable=True),
    sa.Column('roof_p50', sa.Float(), nullable=True),
    sa.Column('roof_p70', sa.Float(), nullable=True),
    sa.Column('roof_p90', sa.Float(), nullable=True),
    sa.Column('source', sa.String(length=32), server_default='cadastre', nullable=False),
    sa.Column('lidar_date', sa.Date(), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTIPOLYGON', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_building'))
    )
    op.create_geospatial_index('ix_building_geom', 'building', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_building_geom_3857', 'building', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('drainage',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('diameter_mm', sa.Integer(), nullable=True),
    sa.Column('material', sa.String(length=32), nullable=True),
    sa.Column('invert_up', sa.Float(), nullable=True),
    sa.Column('invert_down', sa.Float(), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTILINESTRING', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTILINESTRING', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drainage'))
    )
    op.create_geospatial_index('ix_drainage_geom', 'drainage', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_drainage_geom_3857', 'drainage', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_table('job',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='queued', nullable=False),
    sa.Column('progress', sa.Numeric(precision=5, scale=2), server_default='0', nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('owner', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f('ck_job_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job'))
    )
    op.create_index('ix_job_status', 'job', ['status'], unique=False)
    op.create_table('land_use_code',
    sa.Column('code', sa.String(length=8), nullable=False),
    sa.Column('name_vi', sa.Text(), nullable=False),
    sa.Column('name_en', sa.Text(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('legal_basis', sa.Text(), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_land_use_code'))
    )
    op.create_geospatial_table('parcel',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('ward_code', sa.String(length=16), nullable=False),
    sa.Column('sheet_no', sa.Integer(), nullable=False),
    sa.Column('parcel_no', sa.Integer(), nullable=False),
    sa.Column('area', sa.Float(), sa.Computed('ST_Area(geom)', persisted=True), nullable=True),
    sa.Column('legal_area', sa.Float(), nullable=True),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('land_use', sa.String(length=32), nullable=True),
    sa.Column('owner_name', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='current', nullable=False),
    sa.Column('begin_lifespan', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('end_lifespan', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTIPOLYGON', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.CheckConstraint('end_lifespan IS NULL OR end_lifespan >= begin_lifespan', name=op.f('ck_parcel_lifespan')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_parcel'))
    )
    op.create_geospatial_index('ix_parcel_geom', 'parcel', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_parcel_geom_3857', 'parcel', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('uq_parcel_current_number', 'parcel', ['ward_code', 'sheet_no', 'parcel_no'], unique=True, postgresql_where=sa.text('end_lifespan IS NULL'))
    op.create_geospatial_table('park',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTIPOLYGON', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_park'))
    )
    op.create_geospatial_index('ix_park_geom', 'park', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_park_geom_3857', 'park', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('power_line',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('voltage_kv', sa.Float(), nullable=False),
    sa.Column('conductor', sa.String(length=16), server_default='bare', nullable=False),
    sa.Column('placement', sa.String(length=16), server_default='overhead', nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTILINESTRING', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTILINESTRING', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.CheckConstraint("conductor IN ('bare', 'covered')", name=op.f('ck_power_line_conductor')),
    sa.CheckConstraint("placement IN ('overhead', 'underground')", name=op.f('ck_power_line_placement')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_power_line'))
    )
    op.create_geospatial_index('ix_power_line_geom', 'power_line', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_power_line_geom_3857', 'power_line', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('raster',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('resolution', sa.Float(), nullable=False),
    sa.Column('srid', sa.Integer(), nullable=False),
    sa.Column('vertical_datum', sa.Text(), nullable=True),
    sa.Column('nodata', sa.Float(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('access_level', sa.String(length=16), server_default='public', nullable=False),
    sa.Column('sources', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('data_version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('footprint', Geometry(geometry_type='POLYGON', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.CheckConstraint("access_level IN ('public', 'internal', 'restricted')", name=op.f('ck_raster_access_level')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_raster')),
    sa.UniqueConstraint('name', name=op.f('uq_raster_name'))
    )
    op.create_geospatial_index('ix_raster_footprint', 'raster', ['footprint'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('road',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('road_class', sa.String(length=32), nullable=True),
    sa.Column('row_width', sa.Float(), nullable=True),
    sa.Column('carriageway_width', sa.Float(), nullable=True),
    sa.Column('surface', sa.String(length=32), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTILINESTRING', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTILINESTRING', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_road'))
    )
    op.create_geospatial_index('ix_road_geom', 'road', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_road_geom_3857', 'road', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('telecom',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('operator', sa.Text(), nullable=True),
    sa.Column('placement', sa.String(length=16), server_default='underground', nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTILINESTRING', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTILINESTRING', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_telecom'))
    )
    op.create_geospatial_index('ix_telecom_geom', 'telecom', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_telecom_geom_3857', 'telecom', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('tree',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('species', sa.Text(), nullable=True),
    sa.Column('height', sa.Float(), nullable=True),
    sa.Column('crown_diameter', sa.Float(), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='POINT', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='POINT', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tree'))
    )
    op.create_geospatial_index('ix_tree_geom', 'tree', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_tree_geom_3857', 'tree', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('underground_work',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('depth_top', sa.Float(), nullable=True),
    sa.Column('depth_bottom', sa.Float(), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTIPOLYGON', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_underground_work'))
    )
    op.create_geospatial_index('ix_underground_work_geom', 'underground_work', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_underground_work_geom_3857', 'underground_work', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('water_body',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('bed_level', sa.Float(), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTIPOLYGON', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_water_body'))
    )
    op.create_geospatial_index('ix_water_body_geom', 'water_body', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_water_body_geom_3857', 'water_body', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('water_supply',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('diameter_mm', sa.Integer(), nullable=True),
    sa.Column('material', sa.String(length=32), nullable=True),
    sa.Column('pressure_class', sa.String(length=16), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTILINESTRING', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTILINESTRING', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_water_supply'))
    )
    op.create_geospatial_index('ix_water_supply_geom', 'water_supply', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_water_supply_geom_3857', 'water_supply', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_table('zoning_zone',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('zone_code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('land_use', sa.String(length=32), nullable=True),
    sa.Column('max_density', sa.Float(), nullable=True),
    sa.Column('max_far', sa.Float(), nullable=True),
    sa.Column('max_floors', sa.Integer(), nullable=True),
    sa.Column('max_height', sa.Float(), nullable=True),
    sa.Column('min_setback', sa.Float(), nullable=True),
    sa.Column('min_ground_elevation', sa.Float(), nullable=True),
    sa.Column('plan_decision', sa.Text(), nullable=True),
    sa.Column('subdivision_zone', sa.Integer(), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTIPOLYGON', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTIPOLYGON', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_zoning_zone'))
    )
    op.create_geospatial_index('ix_zoning_zone_geom', 'zoning_zone', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_zoning_zone_geom_3857', 'zoning_zone', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_table('app_user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.Text(), server_default='', nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=True),
    sa.Column('agency_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("role IN ('public', 'officer', 'planner', 'admin')", name=op.f('ck_app_user_role')),
    sa.ForeignKeyConstraint(['agency_id'], ['agency.id'], name=op.f('fk_app_user_agency_id_agency')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_app_user')),
    sa.UniqueConstraint('username', name=op.f('uq_app_user_username'))
    )
    op.create_geospatial_table('layer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('title_vi', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('table_schema', sa.String(length=63), server_default='public', nullable=False),
    sa.Column('table_name', sa.String(length=63), nullable=False),
    sa.Column('geometry_type', sa.String(length=32), nullable=False),
    sa.Column('srid', sa.Integer(), server_default='909210', nullable=False),
    sa.Column('access_level', sa.String(length=16), server_default='public', nullable=False),
    sa.Column('owner_agency_id', sa.Integer(), nullable=True),
    sa.Column('data_version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('feature_count', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('extent', Geometry(geometry_type='POLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('properties', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('style', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("access_level IN ('public', 'internal', 'restricted')", name=op.f('ck_layer_access_level')),
    sa.CheckConstraint("kind IN ('canonical', 'generic')", name=op.f('ck_layer_kind')),
    sa.ForeignKeyConstraint(['owner_agency_id'], ['agency.id'], name=op.f('fk_layer_owner_agency_id_agency')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_layer')),
    sa.UniqueConstraint('name', name=op.f('uq_layer_name'))
    )
    op.create_geospatial_table('red_line',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('road_id', sa.BigInteger(), nullable=True),
    sa.Column('decision', sa.Text(), nullable=True),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('geom', Geometry(geometry_type='MULTILINESTRING', srid=909210, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry', nullable=False), nullable=False),
    sa.Column('geom_3857', Geometry(geometry_type='MULTILINESTRING', srid=3857, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), sa.Computed('ST_Transform(geom, 3857)', persisted=True), nullable=True),
    sa.ForeignKeyConstraint(['road_id'], ['road.id'], name=op.f('fk_red_line_road_id_road'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_red_line'))
    )
    op.create_geospatial_index('ix_red_line_geom', 'red_line', ['geom'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_geospatial_index('ix_red_line_geom_3857', 'red_line', ['geom_3857'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_table('api_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_id', sa.String(length=24), nullable=False),
    sa.Column('secret_hash', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), server_default='', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], name=op.f('fk_api_token_user_id_app_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_token')),
    sa.UniqueConstraint('token_id', name=op.f('uq_api_token_token_id'))
    )
    # the audit log is append-only, enforced by the database for every client
    op.execute(
        """
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
    )
    op.bulk_insert(
        sa.table(
            "land_use_code",
            sa.column("code"), sa.column("name_vi"), sa.column("name_en"),
            sa.column("category"), sa.column("legal_basis"),
        ),
        land_use_codes(),
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table('api_token')
    op.drop_geospatial_index('ix_red_line_geom_3857', table_name='red_line', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_red_line_geom', table_name='red_line', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('red_line')
    op.drop_geospatial_table('layer')
    op.drop_table('app_user')
    op.drop_geospatial_index('ix_zoning_zone_geom_3857', table_name='zoning_zone', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_zoning_zone_geom', table_name='zoning_zone', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('zoning_zone')
    op.drop_geospatial_index('ix_water_supply_geom_3857', table_name='water_supply', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_water_supply_geom', table_name='water_supply', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('water_supply')
    op.drop_geospatial_index('ix_water_body_geom_3857', table_name='water_body', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_water_body_geom', table_name='water_body', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('water_body')
    op.drop_geospatial_index('ix_underground_work_geom_3857', table_name='underground_work', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_underground_work_geom', table_name='underground_work', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('underground_work')
    op.drop_geospatial_index('ix_tree_geom_3857', table_name='tree', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_tree_geom', table_name='tree', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('tree')
    op.drop_geospatial_index('ix_telecom_geom_3857', table_name='telecom', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_telecom_geom', table_name='telecom', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('telecom')
    op.drop_geospatial_index('ix_road_geom_3857', table_name='road', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_road_geom', table_name='road', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('road')
    op.drop_geospatial_index('ix_raster_footprint', table_name='raster', postgresql_using='gist', column_name='footprint')
    op.drop_geospatial_table('raster')
    op.drop_geospatial_index('ix_power_line_geom_3857', table_name='power_line', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_power_line_geom', table_name='power_line', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('power_line')
    op.drop_geospatial_index('ix_park_geom_3857', table_name='park', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_park_geom', table_name='park', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('park')
    op.drop_index('uq_parcel_current_number', table_name='parcel', postgresql_where=sa.text('end_lifespan IS NULL'))
    op.drop_geospatial_index('ix_parcel_geom_3857', table_name='parcel', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_parcel_geom', table_name='parcel', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('parcel')
    op.drop_table('land_use_code')
    op.drop_index('ix_job_status', table_name='job')
    op.drop_table('job')
    op.drop_geospatial_index('ix_drainage_geom_3857', table_name='drainage', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_drainage_geom', table_name='drainage', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('drainage')
    op.drop_geospatial_index('ix_building_geom_3857', table_name='building', postgresql_using='gist', column_name='geom_3857')
    op.drop_geospatial_index('ix_building_geom', table_name='building', postgresql_using='gist', column_name='geom')
    op.drop_geospatial_table('building')
    op.drop_index('ix_audit_log_target_type_target_id', table_name='audit_log')
    op.drop_index('ix_audit_log_at', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_table('agency')
    op.execute("DROP SCHEMA IF EXISTS layerdata CASCADE")
    op.execute(sa.text("DELETE FROM spatial_ref_sys WHERE srid = :srid").bindparams(srid=CITY_SRID))
