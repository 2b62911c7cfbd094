"""What Alembic compares: our tables only, not PostGIS's, the job queue's or generic layers'."""

from geoalchemy2 import alembic_helpers

IGNORED_TABLES = {"spatial_ref_sys", "geometry_columns", "geography_columns"}
IGNORED_PREFIXES = ("procrastinate_",)
IGNORED_SCHEMAS = {"layerdata", "tiger", "tiger_data", "topology"}


def include_object(obj, name, type_, reflected, compare_to):
    schema = getattr(obj, "schema", None)
    if type_ == "table" and (
        name in IGNORED_TABLES or name.startswith(IGNORED_PREFIXES) or schema in IGNORED_SCHEMAS
    ):
        return False
    table = getattr(obj, "table", None)
    if table is not None and (
        table.name in IGNORED_TABLES or table.name.startswith(IGNORED_PREFIXES)
    ):
        return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)
