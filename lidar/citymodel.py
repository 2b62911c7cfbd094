"""A 3D city model straight from point cloud files: ground, DTM, buildings, roofs, tile by tile.

``city_model`` runs the tiled pipeline (``lidar.tiling.run_tiled``): every tile classifies its
ground (SMRF), builds its DTM, takes the footprints it owns (detected, or given, e.g. from the
cadastre), measures their LoD1 heights and fits their LoD2 roofs (``lidar.tile_buildings``);
only polygons, heights and roof models come back from the tiles, so memory is bounded by the
tile, not the file. The caller writes the result with ``lidar.cityjson`` (CityJSON 2.0, GLB,
3D Tiles).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from shapely.geometry import Polygon

from lidar.buildings import Building
from lidar.roofs import RoofParams, roof_statistics
from lidar.tile_buildings import BuildingRequest
from lidar.tiling import Source, run_tiled


@dataclass
class CityModel:
    buildings: list[Building]
    srid: int
    vertical_datum: str | None
    statistics: dict


def city_model(path, *, crs=None, vertical_datum: str | None = None, target_srid: int | None = None,
               footprints: list[Polygon] | None = None, cell: float = 0.5, lod2: bool = True,
               roof_params: RoofParams | None = None, tile_size: float = 500.0, reach: float = 50.0,
               scheduler: str | None = None, n_workers: int | None = None, processes: bool = False,
               progress=None) -> CityModel:
    """Buildings with LoD1 heights and (``lod2``) roof models from one file, tile by tile.

    ``footprints`` (in the output CRS) replace detection: each gets its heights and roofs from
    the tile that owns it. ``reach``: how far a building may extend beyond its tile (see
    ``BuildingRequest``). ``progress(fraction, stage)`` is called at each stage.
    """
    request = BuildingRequest(reach=reach, roofs=lod2, roof_params=roof_params, detect=footprints is None)
    cadastral = dict(enumerate(footprints)) if footprints is not None else None
    with tempfile.TemporaryDirectory(prefix="city-model-") as work:
        run = run_tiled([Source(str(path), crs, vertical_datum)], work, tile_size=tile_size, resolution=cell,
                        target_srid=target_srid, scheduler=scheduler, n_workers=n_workers, processes=processes,
                        write_rasters=False, buildings=request, cadastral=cadastral, progress=progress)
    if footprints is None:
        buildings = run.detected
    else:
        measured = run.cadastral
        buildings = []
        for i in sorted(measured):
            b = measured[i].building
            b.roof = measured[i].roofs[0] if measured[i].roofs else None
            buildings.append(b)
    stats = {"buildings": len(buildings)}
    if lod2:
        stats = roof_statistics([b.roof for b in buildings if b.roof is not None]).as_dict()
    return CityModel(buildings, run.srid, run.vertical_datum, stats)
