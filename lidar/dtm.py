"""Surface models: hydraulic DTM (ground TIN), DSM (highest first return), nDSM and hillshade.

DTM: the lowest ground point of each cell (its true x, y, z, not the cell centre) -> Delaunay
triangulation -> every cell centre gets the barycentric (linear) value of the triangle it falls
in (a numba kernel that walks each triangle's bounding box once: O(triangles + cells)); cells
outside the hull are filled with the harmonic membrane of :mod:`lidar.inpaint`.

The DTM is *hydraulic*: only ground (class 2) enters the TIN. Water (class 9) is never ground:
the cells of a water body (cells with water returns and the laser voids joined to them) take the
water surface level of the nearest water return, capped by the terrain around, and are flagged
(``SurfaceModels.water``). Bridge decks (class 17) are never ground: the cells under a deck are
interpolated from the terrain and water around it, so the channel goes on under the bridge and
flow can pass; the DSM keeps the deck.

Delaunay: startinpy (MIT licence, Rust, TU Delft 3D geoinformation; robust predicates) by default,
scipy's Qhull or Shewchuk's Triangle (opt-in ``fast-tin`` extra, non-free for commercial use) on
request. For points in general position all three give the same triangulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError

from lidar.grid import GridSpec, cell_max, cell_min
from lidar.inpaint import fill_missing

#: ASPRS classes kept out of the hydraulic DTM with their own treatment
WATER, BRIDGE_DECK = 9, 17
#: Delaunay implementations: the default is licence-clean (MIT) and the fastest without the extra
TIN_BACKENDS = ("startinpy", "qhull", "triangle")
DEFAULT_TIN_BACKEND = "startinpy"
#: GDAL metadata written into every DTM COG
HYDRAULIC_DTM_TAGS = {
    "SURFACE": "hydraulic DTM",
    "DTM_GROUND": "ASPRS class 2 only; water (9) and bridge decks (17) never enter the TIN",
    "DTM_WATER": "water cells hold the water surface at acquisition (bed unknown)",
    "DTM_BRIDGES": "ground under bridge decks interpolated from the terrain and water around",
}


@numba.njit(cache=True, nogil=True)
def rasterize_triangles(px, py, pz, simplices, x0, y1, cell, height, width):
    """Barycentric interpolation of a TIN at cell centres (NaN where no triangle covers)."""
    out = np.full((height, width), np.nan)
    eps = -1e-9
    for t in range(simplices.shape[0]):
        a, b, c = simplices[t, 0], simplices[t, 1], simplices[t, 2]
        ax, ay, az = px[a], py[a], pz[a]
        bx, by, bz = px[b], py[b], pz[b]
        cx, cy, cz = px[c], py[c], pz[c]
        det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
        if det == 0.0:
            continue
        # cell columns/rows whose centres may fall in the triangle's bounding box
        c0 = max(int(math.ceil((min(ax, bx, cx) - x0) / cell - 0.5)), 0)
        c1 = min(int(math.floor((max(ax, bx, cx) - x0) / cell - 0.5)), width - 1)
        r0 = max(int(math.ceil((y1 - max(ay, by, cy)) / cell - 0.5)), 0)
        r1 = min(int(math.floor((y1 - min(ay, by, cy)) / cell - 0.5)), height - 1)
        for r in range(r0, r1 + 1):
            yc = y1 - (r + 0.5) * cell
            for col in range(c0, c1 + 1):
                xc = x0 + (col + 0.5) * cell
                la = ((by - cy) * (xc - cx) + (cx - bx) * (yc - cy)) / det
                lb = ((cy - ay) * (xc - cx) + (ax - cx) * (yc - cy)) / det
                lc = 1.0 - la - lb
                if la >= eps and lb >= eps and lc >= eps:
                    out[r, col] = la * az + lb * bz + lc * cz
    return out


def tin_surface(x: np.ndarray, y: np.ndarray, z: np.ndarray, grid: GridSpec,
                max_circumradius: float | None = None, backend: str = DEFAULT_TIN_BACKEND) -> np.ndarray:
    """Linear TIN interpolation of points at the grid's cell centres (NaN outside the hull).

    ``max_circumradius`` drops triangles whose circumcircle is larger: those long hull-edge
    triangles depend on points far away, so a tile could not reproduce them from its buffer.
    """
    if x.size < 3:
        return np.full(grid.shape, np.nan)
    # triangulate in local coordinates: large projected values cost precision
    tin = triangulate(np.asarray(x, np.float64) - grid.x0, np.asarray(y, np.float64) - grid.y1,
                      np.asarray(z, np.float64), backend)
    if tin is None:
        return np.full(grid.shape, np.nan)
    pts, pz, simplices = tin
    if max_circumradius is not None:
        simplices = simplices[_circumradius(pts, simplices) <= max_circumradius]
    return rasterize_triangles(np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1]), pz, simplices,
                               0.0, 0.0, grid.cell, grid.height, grid.width)


def triangulate(x: np.ndarray, y: np.ndarray, z: np.ndarray, backend: str = DEFAULT_TIN_BACKEND):
    """Delaunay TIN of the points: (xy (n, 2), z (n,), triangles (m, 3) int64), or None if degenerate.

    Points closer than 1 mm (startinpy's snap tolerance) are merged, keeping the lowest, so the
    returned vertices may be fewer than the input points.
    """
    if backend == "startinpy":
        return _startin(x, y, z)
    if backend not in TIN_BACKENDS:
        raise ValueError(f"unknown TIN backend {backend!r}; one of {', '.join(TIN_BACKENDS)}")
    pts = np.column_stack([x, y])
    simplices = delaunay(pts, backend)
    return None if simplices is None else (pts, np.asarray(z, np.float64), simplices)


def _startin(x, y, z):
    import startinpy

    dt = startinpy.DT()
    dt.duplicates_handling = "Lowest"
    # insertion order matters for an incremental Delaunay (each point is located by walking from
    # the last one): bands of 8 rows, swept back and forth, cost ~25 % less CPU than row order
    dt.insert(np.column_stack([x, y, z])[_band_order(x, y)])
    tris = dt.triangles
    if dt.number_of_vertices() < 3 or len(tris) == 0:
        return None
    verts = dt.points[1:]  # vertex 0 is startinpy's infinite vertex
    return np.ascontiguousarray(verts[:, :2]), np.ascontiguousarray(verts[:, 2]), tris.astype(np.int64) - 1


def _band_order(x: np.ndarray, y: np.ndarray, band: int = 8) -> np.ndarray:
    """Boustrophedon order over bands of ``band`` rows of 1-unit cells (rows run north to south)."""
    col = np.floor(x - x.min()).astype(np.int64)
    row = np.floor(y.max() - y).astype(np.int64)
    b, r = row // band, row % band
    col = np.where(b % 2 == 0, col, col.max() - col)
    r = np.where(col % 2 == 0, r, band - 1 - r)
    return np.lexsort((r, col, b))


def delaunay(pts: np.ndarray, backend: str = "qhull") -> np.ndarray | None:
    """Delaunay triangles (indices into ``pts``) by Qhull or Triangle; None when degenerate.

    Shewchuk's Triangle (``backend="triangle"``) is only used when asked for: its licence restricts
    commercial redistribution (the opt-in ``fast-tin`` extra, see docs/lidar.md).
    """
    if backend == "triangle":
        import triangle

        out = triangle.triangulate({"vertices": pts}, "Q")
        tris = out.get("triangles")
        if tris is None or len(tris) == 0:
            return None
        # Triangle drops duplicate vertices but keeps input numbering for the others
        if len(out["vertices"]) != len(pts) or not np.array_equal(out["vertices"], pts):
            return None if len(out["vertices"]) < 3 else _remap(out, pts)
        return tris.astype(np.int64)
    try:
        return Delaunay(pts).simplices.astype(np.int64)
    except QhullError:
        return None


def _remap(out, pts):
    # map Triangle's vertex list back onto the input points (only with duplicates)
    order = {tuple(p): i for i, p in enumerate(pts)}
    idx = np.array([order[tuple(p)] for p in out["vertices"]], dtype=np.int64)
    return idx[out["triangles"]]


def _circumradius(pts: np.ndarray, simplices: np.ndarray) -> np.ndarray:
    a, b, c = pts[simplices[:, 0]], pts[simplices[:, 1]], pts[simplices[:, 2]]
    ab = np.hypot(*(a - b).T)
    bc = np.hypot(*(b - c).T)
    ca = np.hypot(*(c - a).T)
    area2 = np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = ab * bc * ca / (2.0 * area2)
    return np.where(area2 > 0, r, np.inf)


def _cell_points(x, y, z, grid: GridSpec, lowest: bool):
    rows, cols = grid.cell_index(x, y)
    if lowest:
        _, idx = cell_min(rows, cols, z, grid.height, grid.width)
    else:
        idx = _cell_argmax(rows, cols, z, grid.height, grid.width)
    sel = idx[idx >= 0]
    return x[sel], y[sel], z[sel]


@numba.njit(cache=True, nogil=True)
def _cell_argmax(rows, cols, z, height, width):
    best = np.full((height, width), -np.inf)
    idx = np.full((height, width), -1, np.int64)
    for i in range(z.shape[0]):
        r = rows[i]
        if r < 0:
            continue
        if z[i] > best[r, cols[i]]:
            best[r, cols[i]] = z[i]
            idx[r, cols[i]] = i
    return idx


def _filled(surface: np.ndarray) -> np.ndarray:
    if np.isnan(surface).all():
        return surface
    return fill_missing(surface) if np.isnan(surface).any() else surface


def build_dtm(x, y, z, grid: GridSpec, max_circumradius: float | None = None, *,
              backend: str = DEFAULT_TIN_BACKEND) -> tuple[np.ndarray, np.ndarray]:
    """DTM from ground points: lowest point per cell -> Delaunay TIN -> barycentric raster.

    Returns (dtm, support): ``support`` marks cells covered by a TIN triangle; the others are
    gaps filled by the harmonic membrane.
    """
    tin = ground_tin(x, y, z, grid, max_circumradius, backend)
    return _filled(tin), np.isfinite(tin)


def ground_tin(x, y, z, grid: GridSpec, max_circumradius: float | None = None,
               backend: str = DEFAULT_TIN_BACKEND) -> np.ndarray:
    """The TIN of the lowest ground point per cell at the cell centres (NaN outside the hull)."""
    gx, gy, gz = _cell_points(np.asarray(x, float), np.asarray(y, float), np.asarray(z, float), grid, True)
    return tin_surface(gx, gy, gz, grid, max_circumradius, backend)


def occupied(x, y, grid: GridSpec) -> np.ndarray:
    """Cells holding at least one of the points."""
    rows, cols = grid.cell_index(x, y)
    out = np.zeros(grid.shape, dtype=bool)
    ok = rows >= 0
    out[rows[ok], cols[ok]] = True
    return out


def water_bodies(wx, wy, wz, grid: GridSpec, ground_cells: np.ndarray, void_cells: np.ndarray):
    """Water cells and their water surface level: (mask, level) or (None, None) without water.

    A water body is a 4-connected group of cells with water returns (and no ground return) and of
    laser voids (water absorbs the pulse: most of a canal returns nothing) that are at least 3
    cells wide or touch a water return, holding at least one water return. Each cell's level is
    the lowest water return of the nearest cell that has one: local, so tiles agree wherever a
    water return lies within the buffer.
    """
    rows, cols = grid.cell_index(np.asarray(wx, float), np.asarray(wy, float))
    wmin, _ = cell_min(rows, cols, np.asarray(wz, float), grid.height, grid.width)
    has_water = np.isfinite(wmin) & ~ground_cells
    if not has_water.any():
        return None, None
    # voids narrower than 3 cells (shadows along walls, a dark roof's edge, sparse returns at fine
    # resolution) do not carry the water level away from the water; those touching it are water
    square = np.ones((3, 3), bool)
    open_voids = ndimage.binary_opening(void_cells, structure=square)
    near = void_cells & ndimage.binary_dilation(has_water, structure=square)
    labels, _ = ndimage.label(has_water | open_voids | near)
    mask = np.isin(labels, np.unique(labels[has_water]))
    _, (ri, ci) = ndimage.distance_transform_edt(~has_water, return_indices=True)
    return mask, wmin[ri, ci]


def hydraulic_dtm(tin: np.ndarray, water: np.ndarray | None, level: np.ndarray | None,
                  deck: np.ndarray | None) -> np.ndarray:
    """The gap-free DTM from the ground TIN, water levels and the cells under bridge decks.

    Water cells take the water level, never above the terrain the TIN carries across them. Cells
    under a deck are interpolated across the deck's narrowest crossing (the channel's direction:
    see :func:`_across_decks`), from the terrain or water on either side; a TIN or membrane from
    all around would bring the abutments' height into the channel and dam it.
    """
    dtm = tin.copy()
    if water is not None:
        dtm[water] = np.fmin(level[water], tin[water])
    if deck is not None and deck.any():
        dtm[deck] = np.nan
        dtm = _across_decks(dtm, deck)
    return _filled(dtm)


_DIRECTIONS = np.array([(0, 1), (1, 1), (1, 0), (1, -1)], dtype=np.int64)  # rows down, columns right


def _across_decks(z: np.ndarray, deck: np.ndarray) -> np.ndarray:
    """Deck cells interpolated linearly along their deck's minor axis (its width: the direction of
    the channel it spans), between the two cells that end the run of deck cells there.

    The minor axis comes from the second moments of each deck's cells (8-connected), rounded to
    a row, a column or a diagonal. Cells whose run reaches the grid edge or an unknown cell stay
    NaN (the membrane fills them).
    """
    labels, n = ndimage.label(deck, structure=np.ones((3, 3)))
    rows, cols = np.nonzero(deck)
    lab = labels[rows, cols] - 1
    count = np.bincount(lab, minlength=n).astype(float)
    mr, mc = np.bincount(lab, rows, n) / count, np.bincount(lab, cols, n) / count
    dr, dc = rows - mr[lab], cols - mc[lab]
    srr, scc, src = np.bincount(lab, dr * dr, n), np.bincount(lab, dc * dc, n), np.bincount(lab, dr * dc, n)
    # orientation of the major axis in (column, row) space; the minor axis is perpendicular
    major = 0.5 * np.arctan2(2 * src, scc - srr)
    minor = major + np.pi / 2
    # nearest of the 4 lattice directions (0: along a row, 1: down-right, 2: down a column, 3: down-left)
    direction = (np.round(minor / (np.pi / 4)).astype(np.int64)) % 4
    per_cell = np.full(deck.shape, -1, np.int64)
    per_cell[rows, cols] = direction[lab]
    return _interpolate_runs(z, per_cell, _DIRECTIONS)


@numba.njit(cache=True, nogil=True)
def _interpolate_runs(z, direction, dirs):
    h, w = z.shape
    out = z.copy()
    for i in range(h):
        for j in range(w):
            k = direction[i, j]
            if k < 0:
                continue
            di, dj = dirs[k, 0], dirs[k, 1]
            a = 1
            while 0 <= i - a * di < h and 0 <= j - a * dj < w and direction[i - a * di, j - a * dj] >= 0:
                a += 1
            b = 1
            while 0 <= i + b * di < h and 0 <= j + b * dj < w and direction[i + b * di, j + b * dj] >= 0:
                b += 1
            ia, ja, ib, jb = i - a * di, j - a * dj, i + b * di, j + b * dj
            if 0 <= ia < h and 0 <= ja < w and 0 <= ib < h and 0 <= jb < w:
                za, zb = z[ia, ja], z[ib, jb]
                if np.isfinite(za) and np.isfinite(zb):
                    out[i, j] = za + (zb - za) * a / (a + b)
    return out


def build_dsm(x, y, z, grid: GridSpec) -> np.ndarray:
    """DSM from first returns: highest point per cell; empty cells (a few per cent) by membrane."""
    x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
    rows, cols = grid.cell_index(x, y)
    return _filled(cell_max(rows, cols, z, grid.height, grid.width))


def hillshade(dem: np.ndarray, cell: float, azimuth: float = 315.0, altitude: float = 45.0) -> np.ndarray:
    """Hillshade (0-255, uint8) with the usual Horn-like gradient; NaN cells give 0."""
    z = np.pad(np.asarray(dem, dtype=np.float64), 1, mode="edge")
    dzdx = ((z[:-2, 2:] + 2 * z[1:-1, 2:] + z[2:, 2:]) - (z[:-2, :-2] + 2 * z[1:-1, :-2] + z[2:, :-2])) / (8 * cell)
    dzdy = ((z[2:, :-2] + 2 * z[2:, 1:-1] + z[2:, 2:]) - (z[:-2, :-2] + 2 * z[:-2, 1:-1] + z[:-2, 2:])) / (8 * cell)
    slope = np.arctan(np.hypot(dzdx, dzdy))
    aspect = np.arctan2(dzdy, -dzdx)
    zen = math.radians(90.0 - altitude)
    az = math.radians((360.0 - azimuth + 90.0) % 360.0)
    shade = np.cos(zen) * np.cos(slope) + np.sin(zen) * np.sin(slope) * np.cos(az - aspect)
    out = np.clip(shade * 255.0, 0, 255)
    out[~np.isfinite(out)] = 0
    return out.astype(np.uint8)


@dataclass
class SurfaceModels:
    grid: GridSpec
    dtm: np.ndarray
    dsm: np.ndarray
    #: DTM cells interpolated inside a TIN triangle (False: gap filled by the membrane)
    support: np.ndarray
    #: DTM cells that hold a water surface level (bed unknown), None: no water class given
    water: np.ndarray | None = None
    #: DTM cells under a bridge deck (interpolated from around the deck)
    bridge: np.ndarray | None = None

    @property
    def ndsm(self) -> np.ndarray:
        """Height above ground; negative values (DSM below DTM by noise) are clipped to 0."""
        return np.maximum(self.dsm - self.dtm, 0.0)

    def crop(self, core: GridSpec) -> SurfaceModels:
        rows, cols = self.grid.window_of(core)
        water = None if self.water is None else self.water[rows, cols]
        bridge = None if self.bridge is None else self.bridge[rows, cols]
        return SurfaceModels(core, self.dtm[rows, cols], self.dsm[rows, cols], self.support[rows, cols],
                             water, bridge)


def build_surfaces(x, y, z, classification, return_number, grid: GridSpec,
                   max_circumradius: float | None = None, *, backend: str = DEFAULT_TIN_BACKEND,
                   water_classes=(WATER,), bridge_classes=(BRIDGE_DECK,)) -> SurfaceModels:
    """Hydraulic DTM from ground points (class 2 only), DSM from first returns (noise 7/18 excluded).

    Water (``water_classes``) and bridge decks (``bridge_classes``; AHN3 files put bridges in 26)
    never enter the DTM: see :func:`water_bodies` and :func:`hydraulic_dtm`. The DSM keeps them.
    """
    x, y, z = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
    cls = np.asarray(classification)
    ground = cls == 2
    not_noise = ~np.isin(cls, (7, 18))
    first = (np.asarray(return_number) <= 1) & not_noise
    tin = ground_tin(x[ground], y[ground], z[ground], grid, max_circumradius, backend)
    ground_cells = occupied(x[ground], y[ground], grid)
    wet = np.isin(cls, water_classes)
    water = level = deck = None
    if wet.any():
        water, level = water_bodies(x[wet], y[wet], z[wet], grid, ground_cells, ~occupied(x[not_noise],
                                                                                          y[not_noise], grid))
    on_deck = np.isin(cls, bridge_classes)
    if on_deck.any():
        deck = occupied(x[on_deck], y[on_deck], grid) & ~ground_cells
        if water is not None:
            deck &= ~water
    dtm = hydraulic_dtm(tin, water, level, deck)
    support = np.isfinite(tin)
    for mask in (water, deck):
        if mask is not None:
            support &= ~mask
    dsm = build_dsm(x[first], y[first], z[first], grid)
    # a DSM cell is never below the terrain
    dsm = np.fmax(dsm, dtm)
    return SurfaceModels(grid, dtm, dsm, support, water, deck)
