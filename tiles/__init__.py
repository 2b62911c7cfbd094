"""Map serving: vector tiles, raster tiles, WMS, WMTS, styles and the tile cache (no Flask)."""
