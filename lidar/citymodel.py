"""A district's 3D city model straight from one point cloud file: ground, DTM, buildings, roofs.

``city_model`` reads the whole file (a district, not the city: city-scale runs go through the
tiled pipeline), classifies the ground (SMRF), builds the DTM, takes footprints (detected, or
given, e.g. from the cadastre), measures LoD1 heights and fits LoD2 roofs. The caller writes the
result with ``lidar.cityjson`` (CityJSON 2.0, GLB, 3D Tiles).
"""

from __future__ import annotations

from dataclasses import dataclass

from shapely.geometry import Polygon

from lidar.buildings import Building, building_heights, detect_buildings
from lidar.dtm import build_surfaces
from lidar.grid import GridSpec
from lidar.ground import classify_ground
from lidar.io import open_cloud
from lidar.roofs import RoofParams, reconstruct_roofs, roof_statistics


@dataclass
class CityModel:
    buildings: list[Building]
    srid: int
    vertical_datum: str | None
    statistics: dict


def city_model(path, *, crs=None, vertical_datum: str | None = None, target_srid: int | None = None,
               footprints: list[Polygon] | None = None, cell: float = 0.5, lod2: bool = True,
               roof_params: RoofParams | None = None, progress=None) -> CityModel:
    """Buildings with LoD1 heights and (``lod2``) roof models from one file.

    ``progress(fraction, stage)`` is called at each stage.
    """
    def report(fraction, stage):
        if progress is not None:
            progress(fraction, stage)

    cloud = open_cloud(path, crs=crs, vertical_datum=vertical_datum)
    report(0.0, "read")
    pc = cloud.read_all(target_srid=target_srid)
    report(0.2, "ground")
    cls = classify_ground(pc.x, pc.y, pc.z, pc.return_number, pc.number_of_returns).classification
    grid = GridSpec.covering((pc.x.min(), pc.y.min(), pc.x.max(), pc.y.max()), cell)
    report(0.4, "dtm")
    dtm = build_surfaces(pc.x, pc.y, pc.z, cls, pc.return_number, grid).dtm
    report(0.6, "buildings")
    if footprints is None:
        buildings, _ = detect_buildings(pc.x, pc.y, pc.z, cls, pc.number_of_returns, dtm, grid)
    else:
        buildings = building_heights(footprints, pc.x, pc.y, pc.z, cls, dtm, grid)
    stats = {"buildings": len(buildings)}
    if lod2:
        report(0.7, "roofs")
        stats = roof_statistics(reconstruct_roofs(buildings, pc.x, pc.y, pc.z, cls, roof_params)).as_dict()
    report(1.0, "done")
    srid = target_srid or cloud.crs.srid
    return CityModel(buildings, srid, cloud.crs.vertical_datum, stats)
