"""LoD2 roofs: roof planes segmented from the points over a footprint, and a watertight roof solid.

1. Roof points: inside the footprint, more than ``min_height`` above its ground (p10), not ground,
   vegetation, noise or water when classes are given.
2. Planes by region growing: per point a normal from its ``k`` nearest neighbours (PCA); seeds in
   order of flatness; a neighbour joins a region when its normal is within ``max_angle`` of the
   region's and it lies within ``distance`` of the region's plane (refitted as the region grows).
   Regions with fewer than ``min_points`` points, or steeper than ``max_slope`` (facades), are dropped.
3. Roof model: z(x, y) = max over groups g of min over the planes i of g of plane_i(x, y). One
   group (a lower envelope) is exact for roofs whose faces slope down away from their ridges (flat,
   shed, gable, hip, pyramid, mansard): ridges and hips are where two planes meet. Several groups
   are the union of such parts: the valleys of L-, T- and U-shaped roofs are where two groups meet
   (any continuous piecewise-planar roof has such a max-min form). Forward selection: at each step
   the move (a plane added to a group, a new group of one plane or of a pair) that explains most
   more points, while it adds at least ``min_points``; if that explains too little, the dual
   min-max form (a ring of gables round a courtyard) is searched the same way on negated planes.
4. Steps: when no continuous model explains the points, the footprint is split where bordering
   planes meet with a height jump of at least ``step`` into building parts, each fitted alone.
5. The model is accepted when it explains (vertical residual <= ``tolerance``) at least
   ``min_explained`` of the roof points and its eaves are above the ground; otherwise the building
   keeps its LoD1 prism and the reason is recorded (complex roofs, trees, too few points).
6. Shell: ``lidar.roof_shell`` turns the model into roof faces, walls and ground surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree
from shapely import contains_xy
from shapely.geometry import Polygon, shape
from shapely.geometry.polygon import orient

from lidar.roof_shell import GRID, roof_partition

#: ASPRS classes that are never roof: ground, vegetation, low/high noise, water, bridge deck
NOT_ROOF = (2, 3, 4, 5, 7, 9, 17, 18)


@dataclass(frozen=True)
class RoofParams:
    min_height: float = 2.0
    #: neighbours for the point normals
    k: int = 12
    #: largest angle (degrees) between a point's normal and its region's
    max_angle: float = 12.0
    #: largest distance (m) of a point to its region's plane
    distance: float = 0.15
    #: steepest roof plane (degrees); steeper regions are facades
    max_slope: float = 70.0
    min_points: int = 20
    max_planes: int = 8
    #: the most supported planes that the model selection considers
    max_candidates: int = 16
    #: vertical residual (m) under which the roof model explains a point
    tolerance: float = 0.3
    #: share of the roof points the model must explain for LoD2
    min_explained: float = 0.85
    #: fewest roof points for an attempt at LoD2
    min_roof_points: int = 40
    #: lowest eave (m above ground) of an accepted roof
    min_eave: float = 1.0
    #: cell (m) of the plane-label raster that splits a roof at its vertical steps into parts
    part_cell: float = 0.5
    #: height jump (m) between two planes along their common border that makes it a step
    step: float = 0.5
    #: smallest building part (m2); smaller pieces join a neighbour
    min_part_area: float = 4.0


@dataclass(frozen=True)
class RoofPlane:
    """z = a * (x - x0) + b * (y - y0) + c around the building's origin (x0, y0)."""

    a: float
    b: float
    c: float
    support: int

    @property
    def slope_degrees(self) -> float:
        return math.degrees(math.atan(math.hypot(self.a, self.b)))

    def z(self, dx, dy):
        return self.a * dx + self.b * dy + self.c


@dataclass
class RoofModel:
    """The LoD2 roof of one building, or why it has none (``lod2`` False: keep the LoD1 prism)."""

    lod2: bool
    reason: str
    origin: tuple[float, float] = (0.0, 0.0)
    planes: list[RoofPlane] = field(default_factory=list)
    #: indices into ``planes``: the surface is the max over groups of the min over a group's planes
    groups: list[list[int]] = field(default_factory=list)
    #: 2D faces of the roof partition (absolute coordinates on the 1 mm grid), each with its plane
    faces: list[tuple[Polygon, int]] = field(default_factory=list)
    point_count: int = 0
    #: share of the roof points within ``tolerance`` (vertically) of the model
    explained: float = 0.0
    #: RMS orthogonal distance of the explained points to their planes
    plane_rmse: float = float("nan")
    #: RMS and median absolute vertical residual of all roof points to the model surface
    surface_rmse: float = float("nan")
    surface_mae: float = float("nan")
    #: building parts split at vertical steps, each with its own roof model (empty: one part)
    parts: list[tuple[Polygon, RoofModel]] = field(default_factory=list)
    #: "max-min" (max over groups of min over planes) or "min-max" (min over groups of max)
    form: str = "max-min"

    @property
    def roof_type(self) -> str:
        if not self.lod2:
            return "unknown"
        if self.parts:
            return "stepped"
        sloped = [p for p in self.planes if p.slope_degrees >= 5.0]
        if not sloped:
            return "flat"
        if len(self.planes) == 1:
            return "shed"
        if len(self.planes) == 2 and len(sloped) == 2:
            (a1, b1), (a2, b2) = [(p.a, p.b) for p in sloped]
            if a1 * a2 + b1 * b2 < 0:
                return "gable"
        if len(self.groups) > 1:
            return "multi-part"
        if len(sloped) == len(self.planes) >= 3:
            return "hip"
        return "multi-plane"

    def envelope(self, x, y) -> np.ndarray:
        """Roof height at absolute (x, y): max over groups of the lowest plane of the group.

        With parts, each point takes the roof of the part that covers it (NaN outside them).
        """
        if self.parts:
            x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
            out = np.full(np.broadcast(x, y).shape, np.nan)
            for poly, part in self.parts:
                todo = np.isnan(out) & shapely.intersects_xy(poly.buffer(GRID), x, y)
                out[todo] = part.envelope(np.broadcast_to(x, out.shape)[todo], np.broadcast_to(y, out.shape)[todo])
            return out
        dx = np.asarray(x, dtype=np.float64) - self.origin[0]
        dy = np.asarray(y, dtype=np.float64) - self.origin[1]
        heights = [p.z(dx, dy) for p in self.planes]
        groups = self.groups or [list(range(len(self.planes)))]
        if self.form == "min-max":
            return np.min([np.max([heights[i] for i in g], axis=0) for g in groups], axis=0)
        return np.max([np.min([heights[i] for i in g], axis=0) for g in groups], axis=0)


# --- segmentation -------------------------------------------------------------------------------


def point_normals(xyz: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit normals (pointing up), surface variation lambda0 / sum(lambda) and the k-NN indices."""
    k = min(k, len(xyz))
    _, nbr = cKDTree(xyz).query(xyz, k=k)
    nbr = np.ascontiguousarray(nbr.reshape(len(xyz), k), dtype=np.int64)
    normals, variation = _pca_normals(np.ascontiguousarray(xyz, dtype=np.float64), nbr)
    return normals, variation, nbr


@numba.njit(cache=True)
def _pca_normals(xyz, nbr):
    n, k = nbr.shape
    normals = np.empty((n, 3))
    variation = np.empty(n)
    cov = np.empty((3, 3))
    for i in range(n):
        mean = np.zeros(3)
        for j in range(k):
            for a in range(3):
                mean[a] += xyz[nbr[i, j], a]
        mean /= k
        cov[:] = 0.0
        for j in range(k):
            q = nbr[i, j]
            for a in range(3):
                for b in range(a, 3):
                    cov[a, b] += (xyz[q, a] - mean[a]) * (xyz[q, b] - mean[b])
        for a in range(3):
            for b in range(a):
                cov[a, b] = cov[b, a]
        values, vectors = np.linalg.eigh(cov)
        sign = -1.0 if vectors[2, 0] < 0 else 1.0
        for a in range(3):
            normals[i, a] = sign * vectors[a, 0]
        total = values[0] + values[1] + values[2]
        variation[i] = values[0] / total if total > 1e-12 else 0.0
    return normals, variation


@numba.njit(cache=True)
def _fit_plane(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total least squares plane: (centroid, unit normal pointing up)."""
    centre = np.empty(3)
    for j in range(3):
        centre[j] = pts[:, j].mean()
    d = pts - centre
    _, vectors = np.linalg.eigh(d.T @ d)
    normal = vectors[:, 0].copy()
    if normal[2] < 0:
        normal = -normal
    return centre, normal


@numba.njit(cache=True)
def _grow(xyz, normals, order, nbr, distance, cos_max, min_points):
    n, k = nbr.shape
    labels = np.full(n, -1, dtype=np.int64)
    queue = np.empty(n, dtype=np.int64)
    region = 0
    for seed in order:
        if labels[seed] != -1:
            continue
        centre, normal = _fit_plane(xyz[nbr[seed]])
        labels[seed] = region
        queue[0] = seed
        head, tail = 0, 1
        refit_at = 2 * k
        while head < tail:
            p = queue[head]
            head += 1
            for j in range(k):
                q = nbr[p, j]
                if labels[q] != -1:
                    continue
                off = abs((xyz[q, 0] - centre[0]) * normal[0] + (xyz[q, 1] - centre[1]) * normal[1]
                          + (xyz[q, 2] - centre[2]) * normal[2])
                agree = normals[q, 0] * normal[0] + normals[q, 1] * normal[1] + normals[q, 2] * normal[2]
                if off <= distance and agree >= cos_max:
                    labels[q] = region
                    queue[tail] = q
                    tail += 1
            if tail >= refit_at:
                centre, normal = _fit_plane(xyz[queue[:tail]])
                refit_at = int(tail * 1.5)
        if tail < min_points:
            labels[queue[:tail]] = -2  # tried: too small to be a plane, never a seed or member again
        else:
            region += 1
    for i in range(n):
        if labels[i] == -2:
            labels[i] = -1
    return labels


def grow_regions(xyz: np.ndarray, params: RoofParams) -> np.ndarray:
    """Region label per point (-1: in no region of at least ``min_points``).

    Breadth-first from the flattest unassigned point; the region's plane is refitted each time the
    region has grown by half (numba kernel: region growing is a sequential walk).
    """
    n = len(xyz)
    if n < max(params.min_points, 3):
        return np.full(n, -1, dtype=np.int64)
    normals, variation, nbr = point_normals(xyz, params.k)
    order = np.argsort(variation, kind="stable")
    return _grow(np.ascontiguousarray(xyz, dtype=np.float64), np.ascontiguousarray(normals), order,
                 np.ascontiguousarray(nbr, dtype=np.int64), params.distance,
                 math.cos(math.radians(params.max_angle)), params.min_points)


def _lstsq_plane(dx, dy, z) -> tuple[float, float, float]:
    a_mat = np.column_stack([dx, dy, np.ones(len(z))])
    (a, b, c), *_ = np.linalg.lstsq(a_mat, z, rcond=None)
    return float(a), float(b), float(c)


def _coplanar(p: RoofPlane, q: RoofPlane, dx, dy, params: RoofParams) -> bool:
    """q's region lies on p's plane: normals within ``max_angle`` / 2, heights within ``distance``."""
    n1 = np.array([-p.a, -p.b, 1.0]) / math.sqrt(1 + p.a**2 + p.b**2)
    n2 = np.array([-q.a, -q.b, 1.0]) / math.sqrt(1 + q.a**2 + q.b**2)
    if n1 @ n2 < math.cos(math.radians(params.max_angle / 2)):
        return False
    return float(np.sqrt(np.mean((p.z(dx, dy) - q.z(dx, dy)) ** 2))) <= params.distance


def segment_planes(dx: np.ndarray, dy: np.ndarray, z: np.ndarray, params: RoofParams) -> list[RoofPlane]:
    """Roof planes (least squares z = a dx + b dy + c over each region), most supported first.

    Regions on one plane (a face that region growing cut in two, e.g. by a chimney) are merged.
    """
    return [p for p, _ in plane_segments(dx, dy, z, params)]


def plane_segments(dx, dy, z, params: RoofParams) -> list[tuple[RoofPlane, np.ndarray]]:
    """``segment_planes`` with the indices of each plane's points."""
    labels = grow_regions(np.column_stack([dx, dy, z]), params)
    regions = sorted((np.flatnonzero(labels == r) for r in range(labels.max() + 1)), key=len, reverse=True)
    merged: list[tuple[RoofPlane, np.ndarray]] = []
    for idx in regions:
        plane = RoofPlane(*_lstsq_plane(dx[idx], dy[idx], z[idx]), len(idx))
        for k, (big, members) in enumerate(merged):
            if _coplanar(big, plane, dx[idx], dy[idx], params):
                both = np.concatenate([members, idx])
                merged[k] = (RoofPlane(*_lstsq_plane(dx[both], dy[both], z[both]), len(both)), both)
                break
        else:
            merged.append((plane, idx))
    max_tan = math.tan(math.radians(params.max_slope))
    kept = [(p, idx) for p, idx in merged if math.hypot(p.a, p.b) <= max_tan]
    kept.sort(key=lambda item: -item[0].support)
    return kept


def refit_planes(planes: list[RoofPlane], groups, dx, dy, z, params: RoofParams,
                 form: str = "max-min") -> list[RoofPlane]:
    """Each chosen plane refitted (least squares) on the points it explains in the model."""
    model = RoofModel(False, "", (0.0, 0.0), planes, groups, form=form)
    surface = model.envelope(dx, dy)
    heights = np.array([p.z(dx, dy) for p in planes])
    owner = np.argmin(np.abs(heights - surface), axis=0)
    ok = np.abs(z - surface) <= params.tolerance
    out = []
    for k, p in enumerate(planes):
        sel = ok & (owner == k)
        out.append(RoofPlane(*_lstsq_plane(dx[sel], dy[sel], z[sel]), int(sel.sum())) if sel.sum() >= 3 else p)
    return out


def _best_move(heights, groups, group_z, planes_ok, z, tolerance, explained):
    """The move that explains most points: ("add", group, plane), ("new", plane) or ("pair", p, q).

    ``planes_ok(*indices)`` tells whether the planes may be used (the budget of distinct planes).
    A plane may serve several groups: min(A, max(B, C)) is max(min(A, B), min(A, C)).
    """
    n, k = heights.shape[1], heights.shape[0]
    below = np.full(n, -np.inf)
    current = group_z.max(axis=0) if len(groups) else below

    def count(surface):
        return int(np.count_nonzero(np.abs(z - surface) <= tolerance))

    best, best_count = None, explained
    for g in range(len(groups)):
        others = np.delete(group_z, g, axis=0).max(axis=0) if len(groups) > 1 else below
        for i in range(k):
            if i in groups[g] or not planes_ok(i):
                continue
            c = count(np.maximum(others, np.minimum(group_z[g], heights[i])))
            if c > best_count:
                best, best_count = ("add", g, i), c
    for i in range(k):
        if not planes_ok(i):
            continue
        c = count(np.maximum(current, heights[i]))
        if c > best_count and [i] not in groups:
            best, best_count = ("new", i), c
        for j in range(i + 1, k):
            if not planes_ok(i, j):
                continue
            c = count(np.maximum(current, np.minimum(heights[i], heights[j])))
            if c > best_count:
                best, best_count = ("pair", i, j), c
    return best, best_count


def select_model(planes: list[RoofPlane], dx, dy, z, params: RoofParams) -> tuple[list[RoofPlane], list[list[int]]]:
    """Forward selection of a max-min roof model: (chosen planes, groups of indices into them)."""
    planes = planes[:params.max_candidates]
    if not planes:
        return [], []
    heights = np.array([p.z(dx, dy) for p in planes])
    groups: list[list[int]] = []
    group_z = np.zeros((0, len(z)))
    explained = 0
    used: set[int] = set()

    def planes_ok(*indices):
        return len(used | set(indices)) <= params.max_planes

    for _ in range(4 * params.max_planes):
        best, best_count = _best_move(heights, groups, group_z, planes_ok, z, params.tolerance, explained)
        if best is None or best_count - explained < params.min_points:
            break
        if best[0] == "add":
            _, g, i = best
            groups[g].append(i)
            group_z[g] = np.minimum(group_z[g], heights[i])
            used.add(i)
        else:
            members = list(best[1:])
            groups.append(members)
            group_z = np.vstack([group_z, heights[members].min(axis=0)])
            used.update(members)
        explained = best_count
    order = sorted(used)
    index = {old: new for new, old in enumerate(order)}
    return [planes[i] for i in order], [[index[i] for i in g] for g in groups]


# --- per building -------------------------------------------------------------------------------


def fit_roof(footprint: Polygon, ground: float, x, y, z, params: RoofParams | None = None) -> RoofModel:
    """The LoD2 roof model of one footprint from its roof points (already selected).

    One continuous roof over the whole footprint first; if it does not explain the points, the
    footprint is split at vertical steps into parts, each with its own model (all must succeed).
    """
    params = params or RoofParams()
    x, y, z = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(z, dtype=np.float64)
    whole = _fit_part(footprint, ground, x, y, z, params)
    if whole.lod2 or not whole.planes:
        return whole
    parts = _fit_parts(footprint, ground, x, y, z, params)
    if parts is not None and parts.lod2:
        return parts
    if parts is not None:
        whole.reason += f" ({parts.reason})"
    return whole


def _fit_part(footprint: Polygon, ground: float, x, y, z, params: RoofParams, best_effort: bool = False) -> RoofModel:
    """One continuous roof model; ``best_effort`` builds it whatever share of the points it explains."""
    c = footprint.centroid
    origin = (round(c.x), round(c.y))
    n = len(z)
    if n < params.min_roof_points:
        return RoofModel(False, f"{n} roof points (fewer than {params.min_roof_points})", origin, point_count=n)
    dx, dy = x - origin[0], y - origin[1]
    candidates = segment_planes(dx, dy, z, params)
    planes, groups = select_model(candidates, dx, dy, z, params)
    if not planes:
        return RoofModel(False, "no roof plane", origin, point_count=n)
    model = RoofModel(False, "", origin, refit_planes(planes, groups, dx, dy, z, params), groups, point_count=n)
    _score(model, dx, dy, z, params)
    if model.explained < params.min_explained:
        # the dual form, min over groups of max (a ring of gables round a courtyard): min-max of the
        # planes is minus the max-min of the negated planes
        negated = [RoofPlane(-p.a, -p.b, -p.c, p.support) for p in candidates]
        planes, groups = select_model(negated, dx, dy, -z, params)
        planes = [RoofPlane(-p.a, -p.b, -p.c, p.support) for p in planes]
        dual = RoofModel(False, "", origin, refit_planes(planes, groups, dx, dy, z, params, "min-max"), groups,
                         point_count=n, form="min-max")
        _score(dual, dx, dy, z, params)
        model = dual if dual.explained > model.explained else model
    if model.explained < params.min_explained and not best_effort:
        model.reason = f"planes explain {model.explained:.0%} of the roof points"
        return model
    model.faces = roof_partition(footprint, model)
    if not model.faces:
        model.reason = "empty roof partition"
        return model
    eaves = np.asarray(footprint.exterior.coords)
    if np.min(model.envelope(eaves[:, 0], eaves[:, 1])) < ground + params.min_eave:
        model.faces = []
        model.reason = "roof planes reach the ground inside the footprint"
        return model
    model.lod2, model.reason = True, "lod2"
    return model


def _fit_parts(footprint: Polygon, ground: float, x, y, z, params: RoofParams) -> RoofModel | None:
    """Split at vertical steps and fit every part; None when there is nothing to split."""
    c = footprint.centroid
    origin = (round(c.x), round(c.y))
    segments = plane_segments(x - origin[0], y - origin[1], z, params)
    polygons = part_polygons(footprint, [(p, x[i], y[i]) for p, i in segments], origin, params)
    if len(polygons) < 2:
        return None
    free = np.ones(len(z), dtype=bool)
    parts, residuals, weights = [], [], []
    for poly in polygons:
        sel = free & shapely.intersects_xy(poly, x, y)
        free &= ~sel
        part = _fit_part(poly, ground, x[sel], y[sel], z[sel], params, best_effort=True)
        if not part.lod2:
            # a piece no plane model explains (a dormer, a tree, a terrace) gets a flat roof at its median
            level = float(np.median(z[sel])) if sel.any() else float(np.median(z))
            part = RoofModel(True, "lod2", part.origin, [RoofPlane(0.0, 0.0, level, int(sel.sum()))], [[0]],
                             [(orient(shapely.set_precision(poly, GRID), 1.0), 0)], int(sel.sum()))
            _score(part, x[sel] - part.origin[0], y[sel] - part.origin[1], z[sel], params)
        parts.append((poly, part))
        residuals.append(z[sel] - part.envelope(x[sel], y[sel]))
        weights.append((part.point_count * part.explained, part.plane_rmse))
    res = np.concatenate(residuals)
    explained = float(np.mean(np.abs(res) <= params.tolerance))
    if explained < params.min_explained:
        return RoofModel(False, f"{len(parts)} parts explain {explained:.0%} of the roof points", origin,
                         point_count=len(z), explained=explained)
    w = np.array([(n, r) for n, r in weights if n > 0])
    return RoofModel(
        True, "lod2", origin, planes=[pl for _, p in parts for pl in p.planes], point_count=len(z),
        explained=explained, plane_rmse=float(np.sqrt(np.sum(w[:, 0] * w[:, 1] ** 2) / w[:, 0].sum())),
        surface_rmse=float(np.sqrt(np.mean(res**2))), surface_mae=float(np.median(np.abs(res))),
        faces=[f for _, p in parts for f in p.faces], parts=parts,
    )


def part_polygons(footprint: Polygon, planes, origin, params: RoofParams) -> list[Polygon]:
    """The footprint cut where neighbouring roof planes meet with a vertical step.

    ``planes``: (plane, x, y of its points). Each cell of a ``part_cell`` raster takes the plane
    with most points in it (empty cells the nearest plane's); two planes that border each other
    belong to one part when their heights along the border differ by less than ``step`` (median).
    Parts are polygonised, their shared edges simplified as a coverage, clipped to the footprint;
    pieces under ``min_part_area`` join the neighbour they share most border with.
    """
    from rasterio import features
    from rasterio.transform import from_origin

    cell = params.part_cell
    x0, y0, x1, y1 = footprint.bounds
    gx0, gy1 = math.floor(x0 / cell) * cell, math.ceil(y1 / cell) * cell
    width, height = int(math.ceil((x1 - gx0) / cell)), int(math.ceil((gy1 - y0) / cell))
    transform = from_origin(gx0, gy1, cell, cell)
    domain = features.rasterize([footprint], out_shape=(height, width), transform=transform, all_touched=True) > 0
    if not planes:
        return []
    counts = np.zeros((len(planes), height * width))
    for k, (_, px, py) in enumerate(planes):
        cols = np.clip(((px - gx0) / cell).astype(np.int64), 0, width - 1)
        rows = np.clip(((gy1 - py) / cell).astype(np.int64), 0, height - 1)
        counts[k] = np.bincount(rows * width + cols, minlength=height * width)
    label = np.where(counts.max(axis=0) > 0, counts.argmax(axis=0), -1).reshape(height, width)
    _, (ri, ci) = ndimage.distance_transform_edt(label < 0, return_indices=True)
    label = label[ri, ci]
    part = _join_continuous(label, domain, [p for p, _, _ in planes], gx0 - origin[0], gy1 - origin[1], cell,
                            params.step)
    if len(np.unique(part[domain])) < 2:
        return []
    shapes = [shape(g) for g, v in features.shapes(part.astype(np.int32), mask=domain, transform=transform)]
    simple = shapely.coverage_simplify(shapes, cell, simplify_boundary=False)
    pieces = [g for s_ in simple for g in shapely.get_parts(shapely.intersection(s_, footprint, grid_size=GRID))
              if g.geom_type == "Polygon" and g.area > 0]
    return _absorb_small(pieces, params.min_part_area)


def _join_continuous(label, domain, planes, x0, y1, cell, step) -> np.ndarray:
    """Part id per cell: union of the plane labels that meet without a step."""
    parent = list(range(len(planes)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    jumps: dict[tuple[int, int], list[float]] = {}
    for a, b, ex, ey in _borders(label, domain, x0, y1, cell):
        for i, j, px, py in zip(a, b, ex, ey, strict=True):
            jumps.setdefault((min(i, j), max(i, j)), []).append(abs(planes[i].z(px, py) - planes[j].z(px, py)))
    for (i, j), d in jumps.items():
        if np.median(d) < step:
            parent[find(i)] = find(j)
    roots = np.array([find(i) for i in range(len(planes))])
    return np.where(domain, roots[label], -1)


def _borders(label, domain, x0, y1, cell):
    """(label a, label b, x, y of the shared cell edge's midpoint) for neighbouring cells, both axes."""
    h, w = label.shape
    r, c = np.nonzero(domain[:, :-1] & domain[:, 1:] & (label[:, :-1] != label[:, 1:]))
    yield label[r, c], label[r, c + 1], x0 + (c + 1) * cell, y1 - (r + 0.5) * cell
    r, c = np.nonzero(domain[:-1, :] & domain[1:, :] & (label[:-1, :] != label[1:, :]))
    yield label[r, c], label[r + 1, c], x0 + (c + 0.5) * cell, y1 - (r + 1) * cell


def _absorb_small(pieces: list[Polygon], min_area: float) -> list[Polygon]:
    pieces = sorted(pieces, key=lambda g: g.area)
    while len(pieces) > 1 and pieces[0].area < min_area:
        small = pieces.pop(0)
        shared = [small.boundary.intersection(g.boundary).length for g in pieces]
        k = int(np.argmax(shared))
        merged = shapely.union(pieces[k], small, grid_size=GRID)
        pieces[k] = max(shapely.get_parts(merged), key=lambda g: g.area) if merged.geom_type != "Polygon" else merged
        pieces.sort(key=lambda g: g.area)
    return pieces


def _score(model: RoofModel, dx, dy, z, params: RoofParams) -> None:
    if len(z) == 0:
        return
    heights = np.array([p.z(dx, dy) for p in model.planes])
    surface = model.envelope(dx + model.origin[0], dy + model.origin[1])
    owner = np.argmin(np.abs(heights - surface), axis=0)
    residual = z - surface
    ok = np.abs(residual) <= params.tolerance
    model.explained = float(np.mean(ok))
    model.surface_rmse = float(np.sqrt(np.mean(residual**2)))
    model.surface_mae = float(np.median(np.abs(residual)))
    if ok.any():
        slope = np.array([math.hypot(p.a, p.b) for p in model.planes])[owner[ok]]
        model.plane_rmse = float(np.sqrt(np.mean((residual[ok] / np.sqrt(1 + slope**2)) ** 2)))


def roof_points(footprint: Polygon, ground: float, x, y, z, classification=None,
                params: RoofParams | None = None) -> np.ndarray:
    """Indices of the roof points of a footprint."""
    params = params or RoofParams()
    x0, y0, x1, y1 = footprint.bounds
    sel = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & (z > ground + params.min_height)
    if classification is not None:
        sel &= ~np.isin(classification, NOT_ROOF)
    idx = np.flatnonzero(sel)
    return idx[contains_xy(footprint, x[idx], y[idx])]


def reconstruct_roofs(buildings, x, y, z, classification=None, params: RoofParams | None = None) -> list[RoofModel]:
    """Fit an LoD2 roof to every building (``building.roof`` is set); returns the models."""
    params = params or RoofParams()
    x, y, z = np.asarray(x), np.asarray(y), np.asarray(z)
    models = []
    for b in buildings:
        idx = roof_points(b.footprint, b.ground_p10, x, y, z, classification, params)
        b.roof = fit_roof(b.footprint, b.ground_p10, x[idx], y[idx], z[idx], params)
        models.append(b.roof)
    return models


@dataclass(frozen=True)
class RoofStatistics:
    buildings: int
    lod2: int
    lod2_fraction: float
    #: pooled over the LoD2 buildings: RMS orthogonal distance of explained points to their planes
    plane_rmse: float
    #: pooled over the LoD2 buildings: median |vertical residual| of all roof points
    surface_mae: float
    explained: float
    roof_types: dict

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def roof_statistics(models: list[RoofModel]) -> RoofStatistics:
    good = [m for m in models if m.lod2]
    weights = np.array([m.point_count * m.explained for m in good], dtype=np.float64)
    plane_rmse = float(np.sqrt(np.sum(weights * np.array([m.plane_rmse for m in good]) ** 2) / weights.sum())) \
        if good else float("nan")
    types: dict[str, int] = {}
    for m in good:
        types[m.roof_type] = types.get(m.roof_type, 0) + 1
    return RoofStatistics(
        buildings=len(models), lod2=len(good), lod2_fraction=len(good) / len(models) if models else 0.0,
        plane_rmse=plane_rmse,
        surface_mae=float(np.median([m.surface_mae for m in good])) if good else float("nan"),
        explained=float(np.mean([m.explained for m in good])) if good else float("nan"),
        roof_types=types,
    )
