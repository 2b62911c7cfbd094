"""LiDAR: point clouds to ground classification, terrain/surface rasters, buildings and LoD1 models.

See docs/lidar.md. Modules: io (chunked reading, CRS), ground (SMRF), evaluate, dtm, cog,
catalogue, tiling (Dask), buildings, cityjson, tables/store (PostGIS index), jobs, cli.
No Flask here: the web layer adapts these functions.
"""
