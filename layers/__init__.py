"""Vector layers: the catalogue, ingest of vector files, and spatial queries (no Flask)."""
