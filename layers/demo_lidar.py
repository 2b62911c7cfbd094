"""A synthetic airborne LiDAR cloud of the demo neighbourhood, coherent with its vector data.

Ground follows :func:`layers.demo.terrain_height`; buildings are flat roofs at their cadastral
height; street trees are crowns with several returns; the canal is a water surface; a few low
outliers imitate multipath noise. Classes follow ASPRS LAS 1.4: 2 ground, 5 high vegetation,
6 building, 7 low noise, 9 water. The file carries the city CRS (WKT) and the true class of every
point, so the LiDAR pipeline can be scored on it and its DTM feeds the flood model of the same
place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gisserver.crs import city_crs
from layers.demo import SIZE, DemoData, terrain_height

CANAL_WATER_LEVEL = -0.35  # m, Hòn Dấu datum, a normal low-tide level in the canal
RASTER_CELL = 0.25  # m, resolution of the footprint lookup grids


def synthesize(data: DemoData, *, density: float = 4.0, seed: int = 7,
               bounds: tuple[float, float, float, float] | None = None) -> dict[str, np.ndarray]:
    """Point arrays (x, y, z, classification, return_number, number_of_returns, intensity).

    ``bounds`` (minx, miny, maxx, maxy in the city CRS) limits the cloud to part of the area.
    """
    from affine import Affine
    from rasterio.features import rasterize

    rng = np.random.default_rng(seed)
    ox, oy = data.origin
    minx, miny, maxx, maxy = bounds or (ox, oy, ox + SIZE, oy + SIZE)
    n = int(density * (maxx - minx) * (maxy - miny))
    x = rng.uniform(minx, maxx, n)
    y = rng.uniform(miny, maxy, n)
    ground = terrain_height(x, y, data.origin)

    # footprint lookup grids: building index (+1) and canal mask, at RASTER_CELL
    width = int(np.ceil((maxx - minx) / RASTER_CELL))
    height = int(np.ceil((maxy - miny) / RASTER_CELL))
    transform = Affine(RASTER_CELL, 0.0, minx, 0.0, -RASTER_CELL, maxy)
    buildings = data.tables["building"]
    bgrid = rasterize(
        ((b["geom"], i + 1) for i, b in enumerate(buildings)),
        out_shape=(height, width), transform=transform, fill=0, dtype="int32",
    )
    wgrid = rasterize(
        ((w["geom"], 1) for w in data.tables["water_body"]),
        out_shape=(height, width), transform=transform, fill=0, dtype="uint8",
    )
    col = np.clip(((x - minx) / RASTER_CELL).astype(np.int64), 0, width - 1)
    row = np.clip(((maxy - y) / RASTER_CELL).astype(np.int64), 0, height - 1)
    bidx = bgrid[row, col]
    water = wgrid[row, col] == 1

    z = ground + rng.normal(0, 0.03, n)
    cls = np.full(n, 2, dtype=np.uint8)
    z[water] = CANAL_WATER_LEVEL + rng.normal(0, 0.02, water.sum())
    cls[water] = 9
    centroids = np.array([[b["geom"].centroid.x, b["geom"].centroid.y] for b in buildings]).reshape(-1, 2)
    roof_levels = terrain_height(centroids[:, 0], centroids[:, 1], data.origin) + np.array(
        [b["height"] for b in buildings], dtype=np.float64
    )
    on_roof = bidx > 0
    # flat roofs: the building's height above the ground at its centroid
    z[on_roof] = roof_levels[bidx[on_roof] - 1] + rng.normal(0, 0.04, on_roof.sum())
    cls[on_roof] = 6

    returns_n = np.ones(n, dtype=np.uint8)
    return_no = np.ones(n, dtype=np.uint8)
    z, cls, return_no, returns_n, x, y = _add_trees(data, rng, x, y, z, cls, return_no, returns_n, on_roof | water)

    # low outliers (multipath): 0.05 % of points, 2-8 m below ground
    noise = rng.random(len(x)) < 0.0005
    z[noise] -= rng.uniform(2, 8, noise.sum())
    cls[noise] = 7
    intensity = np.where(cls == 9, 20, np.where(cls == 6, 180, np.where(cls == 5, 90, 120)))
    intensity = (intensity + rng.normal(0, 10, len(x))).clip(0, 65535).astype(np.uint16)
    return {"x": x, "y": y, "z": z, "classification": cls, "return_number": return_no,
            "number_of_returns": returns_n, "intensity": intensity}


def _add_trees(data, rng, x, y, z, cls, return_no, returns_n, blocked):
    """Crowns of the street trees: a first return in the crown, a last return on the ground."""
    import shapely

    trees = data.tables["tree"]
    if not trees:
        return z, cls, return_no, returns_n, x, y
    centres = np.array([[t["geom"].x, t["geom"].y] for t in trees])
    radii = np.array([t["crown_diameter"] / 2 for t in trees])
    tops = np.array([t["height"] for t in trees])
    tree_idx = shapely.STRtree(shapely.points(centres).tolist()).query_nearest(
        shapely.points(np.column_stack([x, y])), max_distance=float(radii.max()), all_matches=False,
    )
    pts, hit = tree_idx
    d = np.hypot(x[pts] - centres[hit, 0], y[pts] - centres[hit, 1])
    inside = (d < radii[hit]) & ~blocked[pts]
    pts, hit, d = pts[inside], hit[inside], d[inside]
    # crown shape: an ellipsoid cap; the canopy is hit at the first return
    canopy = z[pts] + tops[hit] * (0.55 + 0.45 * np.sqrt(1 - (d / radii[hit]) ** 2))
    canopy -= rng.uniform(0, 1.5, len(pts))
    first = rng.random(len(pts)) < 0.7  # 30 % of pulses pass straight to the ground
    veg = pts[first]
    # the ground echo of the same pulse is a new point (last return); the crown echo replaces it
    gx, gy, gz = x[veg], y[veg], z[veg].copy()
    z[veg] = canopy[first]
    cls[veg] = 5
    return_no[veg] = 1
    returns_n[veg] = 2
    x = np.concatenate([x, gx])
    y = np.concatenate([y, gy])
    z = np.concatenate([z, gz])
    cls = np.concatenate([cls, np.full(len(veg), 2, np.uint8)])
    return_no = np.concatenate([return_no, np.full(len(veg), 2, np.uint8)])
    returns_n = np.concatenate([returns_n, np.full(len(veg), 2, np.uint8)])
    return z, cls, return_no, returns_n, x, y


def write_las(points: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write LAS 1.4 point format 6 (LAZ when the name ends in .laz) with the city CRS as WKT."""
    import laspy

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = laspy.LasHeader(point_format=6, version="1.4")
    header.offsets = [float(np.floor(points["x"].min())), float(np.floor(points["y"].min())), 0.0]
    header.scales = [0.001, 0.001, 0.001]
    header.add_crs(city_crs())
    las = laspy.LasData(header)
    for name in ("x", "y", "z", "classification", "return_number", "number_of_returns", "intensity"):
        setattr(las, name, points[name])
    las.write(str(path))
    return path


#: the 200 m x 200 m part of the demo (offsets from its origin) that the roof tests and benchmark survey
SURVEY_OFFSETS = (300.0, 320.0, 500.0, 520.0)


@dataclass
class DemoSurvey:
    """The demo's synthetic LiDAR over ``bounds``, SMRF-classified, with its surfaces on ``grid``."""

    data: DemoData
    bounds: tuple[float, float, float, float]
    points: dict[str, np.ndarray]
    classification: np.ndarray
    grid: object  # lidar.grid.GridSpec
    surfaces: object  # lidar.dtm.SurfaceModels

    @property
    def footprints(self) -> list:
        """The largest polygon of every cadastral building lying within ``bounds``."""
        import shapely

        area = shapely.box(*self.bounds)
        return [max(shapely.get_parts(b["geom"]), key=lambda g: g.area) for b in self.data.tables["building"]
                if b["geom"].within(area)]


def demo_survey(data: DemoData | None = None, *, density: float = 8.0, cell: float = 0.5) -> DemoSurvey:
    """Synthesize the demo's cloud over ``SURVEY_OFFSETS``, classify its ground and build its DTM/DSM."""
    from layers.demo import generate
    from lidar.dtm import build_surfaces
    from lidar.grid import GridSpec
    from lidar.ground import classify_ground

    data = data or generate()
    ox, oy = data.origin
    bounds = (ox + SURVEY_OFFSETS[0], oy + SURVEY_OFFSETS[1], ox + SURVEY_OFFSETS[2], oy + SURVEY_OFFSETS[3])
    pts = synthesize(data, density=density, bounds=bounds)
    x, y, z = pts["x"], pts["y"], pts["z"]
    cls = classify_ground(x, y, z, pts["return_number"], pts["number_of_returns"]).classification
    grid = GridSpec.covering(bounds, cell)
    return DemoSurvey(data, bounds, pts, cls, grid, build_surfaces(x, y, z, cls, pts["return_number"], grid))
