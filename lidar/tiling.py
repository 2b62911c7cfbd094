"""Tiled, parallel processing: retile onto a fixed grid with buffers, process tiles with Dask.

1. ``retile`` streams every source file in chunks and appends each point to the spill file of
   every tile whose *buffered* extent contains it (bounded memory: one chunk at a time).
2. ``process_tile`` classifies ground and builds DTM/DSM on the buffered tile, then keeps only the
   core: buffer points are used but never written, so neighbouring tiles meet seamlessly. In a
   run with buildings the same task detects the buildings it owns, measures the cadastral
   footprints it owns and fits their LoD2 roofs with its own DTM (``lidar.tile_buildings``); the
   buffer is then wider by the building reach, so that a building owned by the tile is whole.
3. ``run_tiled`` submits the tiles to a Dask distributed cluster (a LocalCluster unless a
   scheduler address is given), retries failed tiles, reports progress, and mosaics the cores
   into Cloud-Optimized GeoTIFFs. A tile that still fails is reported, never silently dropped;
   tiles whose buildings reach past the building buffer are run again with a wider one.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gisserver.errors import GISError, InvalidInput
from lidar.buildings import Building
from lidar.cog import NODATA, write_cog, write_vrt
from lidar.dtm import BRIDGE_DECK, HYDRAULIC_DTM_TAGS, WATER, SurfaceModels, build_surfaces, hillshade
from lidar.grid import GridSpec
from lidar.ground import SMRFParams, classify_ground
from lidar.io import DEFAULT_CHUNK_SIZE, open_cloud
from lidar.tile_buildings import BuildingRequest, CadastralMeasure, TileBuildings, owner_key, tile_buildings

POINT_DTYPE = np.dtype([("x", "f8"), ("y", "f8"), ("z", "f8"), ("c", "u1"), ("rn", "u1"), ("nr", "u1")])
#: vendor classes kept through the ground filter: water and bridge decks are never ground
KEPT_VENDOR_CLASSES = (WATER, BRIDGE_DECK)


class TileFailed(GISError):
    code = "tile-failed"
    status = 500
    title = "Some tiles could not be processed"


@dataclass(frozen=True)
class TileScheme:
    """Square tiles of ``size`` metres on the lattice of multiples of ``size``, with a buffer."""

    size: float = 500.0
    buffer: float = 38.0
    #: how far beyond its core a building owned by a tile may reach; the tiles are retiled with
    #: ``buffer + building_reach`` so that the DTM under it is the one a single-tile run gives
    building_reach: float = 0.0

    def __post_init__(self):
        if self.size <= 0 or self.buffer < 0 or self.buffer >= self.size:
            raise InvalidInput("tile size must be positive and larger than the buffer")
        if self.building_reach < 0:
            raise InvalidInput("the building reach must not be negative")

    @property
    def outer(self) -> float:
        """The buffer of the spill files (rasters and buildings are computed on it)."""
        return self.buffer + self.building_reach

    def core_bounds(self, key: tuple[int, int]) -> tuple[float, float, float, float]:
        ix, iy = key
        return (ix * self.size, iy * self.size, (ix + 1) * self.size, (iy + 1) * self.size)

    def buffered_bounds(self, key: tuple[int, int]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = self.core_bounds(key)
        b = self.outer
        return (x0 - b, y0 - b, x1 + b, y1 + b)

    def assign(self, x: np.ndarray, y: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
        """Point indices per tile whose buffered extent (``outer``) contains them (a point may go to
        1-4 tiles; more when the building reach makes the buffer wider than a tile)."""
        cx = np.floor(x / self.size).astype(np.int64)
        cy = np.floor(y / self.size).astype(np.int64)
        fx = x - cx * self.size
        fy = y - cy * self.size
        out: dict[tuple[int, int], list[np.ndarray]] = {}
        b, s = self.outer, self.size
        n = int(math.ceil(b / s))
        # tile cx + d holds the point when it lies within b of that tile's core
        steps = [(d, fx < (d + 1) * s + b if d < 0 else fx >= d * s - b if d > 0 else np.ones_like(fx, bool))
                 for d in range(-n, n + 1)]
        ysteps = [(d, fy < (d + 1) * s + b if d < 0 else fy >= d * s - b if d > 0 else np.ones_like(fy, bool))
                  for d in range(-n, n + 1)]
        for dx, mx in steps:
            for dy, my in ysteps:
                idx = np.flatnonzero(mx & my)
                if idx.size == 0:
                    continue
                keys = (cx[idx] + dx) * (1 << 32) + (cy[idx] + dy)
                order = np.argsort(keys, kind="stable")
                uniq, starts = np.unique(keys[order], return_index=True)
                for k, part in zip(uniq, np.split(idx[order], starts[1:]), strict=True):
                    hi = (int(k) + (1 << 31)) >> 32  # the low half is signed: a negative row borrows one
                    key = (hi, int(k) - (hi << 32))
                    out.setdefault(key, []).append(part)
        return {k: np.sort(np.concatenate(v)) for k, v in out.items()}


@dataclass(frozen=True)
class Source:
    """An input file and how to read it (declared CRS and vertical datum when the file lacks them)."""

    path: str
    crs: str | None = None
    vertical_datum: str | None = None


def retile(sources: list[Source], scheme: TileScheme, workdir: Path, *, target_srid: int | None,
           chunk_size: int = DEFAULT_CHUNK_SIZE, progress: Callable[[float], None] | None = None,
           only: set | None = None):
    """Spill every point into its tiles' files (``only`` those tiles when given); returns
    ({tile: path}, bounds, srid, source info)."""
    workdir.mkdir(parents=True, exist_ok=True)
    clouds = [open_cloud(s.path, crs=s.crs, vertical_datum=s.vertical_datum) for s in sources]
    srids = {target_srid if target_srid is not None else c.crs.srid for c in clouds}
    if len(srids) != 1:
        raise InvalidInput("the sources are in different CRSs; give a target CRS to process them together")
    if target_srid is None and not all(c.horizontal_metric for c in clouds):
        raise InvalidInput("the sources' CRS is not in metres; give a metric target CRS")
    total = sum(c.point_count for c in clouds) or 1
    done = 0
    mins, maxs = np.array([np.inf, np.inf]), np.array([-np.inf, -np.inf])
    files: dict[tuple[int, int], Path] = {}
    info = []
    for cloud in clouds:
        for chunk in cloud.chunks(chunk_size, target_srid):
            if len(chunk) == 0:
                continue
            mins = np.minimum(mins, [chunk.x.min(), chunk.y.min()])
            maxs = np.maximum(maxs, [chunk.x.max(), chunk.y.max()])
            rec = np.empty(len(chunk), POINT_DTYPE)
            rec["x"], rec["y"], rec["z"] = chunk.x, chunk.y, chunk.z
            rec["c"], rec["rn"], rec["nr"] = chunk.classification, chunk.return_number, chunk.number_of_returns
            for key, idx in scheme.assign(chunk.x, chunk.y).items():
                if only is not None and key not in only:
                    continue
                path = files.setdefault(key, workdir / f"tile_{key[0]}_{key[1]}.bin")
                with open(path, "ab") as fh:
                    rec[idx].tofile(fh)
            done += len(chunk)
            if progress:
                progress(done / total)
        info.append({"path": str(cloud.path), "points": cloud.point_count, "crs": cloud.crs.name,
                     "crs_source": cloud.crs.source, "vertical_datum": cloud.crs.vertical_datum})
    srid = srids.pop()
    return files, (float(mins[0]), float(mins[1]), float(maxs[0]), float(maxs[1])), srid, info


def core_grid(scheme: TileScheme, key: tuple[int, int], resolution: float) -> GridSpec:
    x0, y0, x1, y1 = scheme.core_bounds(key)
    n = int(round(scheme.size / resolution))
    return GridSpec(x0, y1, resolution, n, n)


def buffered_grid(scheme: TileScheme, key: tuple[int, int], resolution: float) -> GridSpec:
    core = core_grid(scheme, key, resolution)
    pad = int(math.ceil(scheme.outer / resolution))
    return GridSpec(core.x0 - pad * resolution, core.y1 + pad * resolution, resolution,
                    core.width + 2 * pad, core.height + 2 * pad)


@dataclass
class TileResult:
    key: tuple[int, int]
    points: int  # points of the core (buffer points are not counted)
    ground: int
    classes: dict[int, int]
    surfaces: str | None  # .npz with the core's dtm, dsm and grid (None: no core points)
    files: dict[str, str] = field(default_factory=dict)  # per-tile COGs when written
    buildings: TileBuildings | None = None  # the buildings the tile owns (a run with buildings)


def process_tile(spill: str, key: tuple[int, int], scheme: TileScheme, params: SMRFParams,
                 resolution: float, outdir: str, tile_cogs: dict | None = None,
                 buildings: BuildingRequest | None = None, footprints: list | None = None) -> TileResult:
    """Classify and grid one buffered tile; keep the core.

    Grids are clipped to the tile's data extent (same lattice): empty land beyond the data is
    neither processed nor extrapolated. With ``tile_cogs`` ({"dir", "srid", "vertical_datum"}) the
    core is also written as DTM/DSM/nDSM/hillshade COGs (hillshade from the buffered DTM, so
    seamless). With ``buildings`` the tile also detects the buildings it owns and measures the
    cadastral ``footprints`` [(id, geometry)] it owns, with their roofs (``lidar.tile_buildings``).
    """
    pts = np.fromfile(spill, dtype=POINT_DTYPE)
    x0, y0, x1, y1 = scheme.core_bounds(key)
    in_core = (pts["x"] >= x0) & (pts["x"] < x1) & (pts["y"] >= y0) & (pts["y"] < y1)
    out = Path(outdir) / f"surfaces_{key[0]}_{key[1]}.npz"
    if not in_core.any():
        return TileResult(key, 0, 0, {}, None)
    extent = (pts["x"].min(), pts["y"].min(), pts["x"].max(), pts["y"].max())
    grid = buffered_grid(scheme, key, resolution).clip(extent)
    smrf_grid = buffered_grid(scheme, key, params.cell).clip(extent)
    core = core_grid(scheme, key, resolution).clip(extent)
    cls = classify_ground(pts["x"], pts["y"], pts["z"], pts["rn"], pts["nr"], params=params,
                          grid=smrf_grid).classification
    vendor = np.isin(pts["c"], KEPT_VENDOR_CLASSES)
    cls[vendor] = pts["c"][vendor]
    # triangles larger than the buffer allows could not be rebuilt identically by every tile
    buffered = build_surfaces(pts["x"], pts["y"], pts["z"], cls, pts["rn"], grid, max_circumradius=scheme.buffer / 2)
    surfaces = buffered.crop(core)
    counts = np.bincount(cls[in_core], minlength=256)
    owned = None
    if buildings is not None:
        owned = tile_buildings(pts["x"], pts["y"], pts["z"], pts["c"], pts["nr"], buffered.dtm, grid,
                               (x0, y0, x1, y1), buildings, footprints or [])
    files = {}
    if tile_cogs:
        rows, cols = grid.window_of(core)
        shade = hillshade(buffered.dtm, resolution)[rows, cols]
        files = _write_tile_cogs(Path(tile_cogs["dir"]), key, surfaces, shade, tile_cogs["srid"],
                                 tile_cogs.get("vertical_datum"))
    no_mask = np.zeros(core.shape, dtype=bool)
    np.savez(out, dtm=surfaces.dtm, dsm=surfaces.dsm, support=surfaces.support,
             water=no_mask if surfaces.water is None else surfaces.water,
             bridge=no_mask if surfaces.bridge is None else surfaces.bridge,
             grid=np.array([core.x0, core.y1, core.width, core.height]))
    return TileResult(key, int(in_core.sum()), int(counts[2]),
                      {int(c): int(n) for c, n in enumerate(counts) if n}, str(out), files, owned)


def _write_tile_cogs(folder: Path, key, s: SurfaceModels, shade, srid, vd) -> dict[str, str]:
    name = f"{key[0]}_{key[1]}"
    return {
        "dtm": str(write_cog(folder / f"dtm_{name}.tif", s.dtm, s.grid, srid, description="DTM", vertical_datum=vd,
                             tags=HYDRAULIC_DTM_TAGS)),
        "dsm": str(write_cog(folder / f"dsm_{name}.tif", s.dsm, s.grid, srid, description="DSM", vertical_datum=vd)),
        "ndsm": str(write_cog(folder / f"ndsm_{name}.tif", s.ndsm, s.grid, srid, description="nDSM")),
        "hillshade": str(write_cog(folder / f"hillshade_{name}.tif", shade, s.grid, srid, nodata=None,
                                   description="DTM hillshade")),
    }


@dataclass
class TiledRun:
    grid: GridSpec
    srid: int
    surfaces: SurfaceModels | None  # None when the run kept per-tile COGs (mosaic=False)
    tiles: list[TileResult]
    sources: list[dict]
    vertical_datum: str | None
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def detected(self) -> list[Building]:
        """Buildings detected by the tiles (each by the tile that owns it), with their roofs."""
        return [b for t in self.tiles if t.buildings for b in t.buildings.detected]

    @property
    def cadastral(self) -> dict[int, CadastralMeasure]:
        """Heights and roofs of the cadastral footprints given to the run, by id (measured ones)."""
        return {i: m for t in self.tiles if t.buildings for i, m in t.buildings.cadastral.items()}

    @property
    def classes(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for t in self.tiles:
            for c, n in t.classes.items():
                total[c] = total.get(c, 0) + n
        return total


def _client(scheduler: str | None, n_workers: int | None, processes: bool):
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    # dashboard on any free port: a fixed one (8787) fails when another cluster runs on the machine
    cluster = LocalCluster(n_workers=n_workers or 1, threads_per_worker=1, processes=processes,
                           dashboard_address=":0")
    return Client(cluster), cluster


def _run_tasks(files, scheme, params, resolution, outdir, *, scheduler, n_workers, processes, retries,
               progress, tile_cogs=None, buildings=None, footprints=None):
    from distributed import as_completed

    client, cluster = _client(scheduler, n_workers, processes)
    run_id = uuid.uuid4().hex[:12]
    results, failures = [], []
    try:
        futures = {
            client.submit(process_tile, str(path), key, scheme, params, resolution, str(outdir), tile_cogs,
                          buildings, (footprints or {}).get(key), retries=retries,
                          key=f"lidar-tile-{key[0]}-{key[1]}-{run_id}"): key
            for key, path in sorted(files.items())
        }
        for i, fut in enumerate(as_completed(futures), start=1):
            if fut.status == "error":
                failures.append({"tile": list(futures[fut]), "error": repr(fut.exception())})
            else:
                results.append(fut.result())
            if progress:
                progress(i / len(futures))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    if failures:
        raise TileFailed(f"{len(failures)} of {len(files)} tiles failed after {retries} retries",
                         details={"failures": failures})
    return sorted(results, key=lambda r: r.key)


def mosaic(results: list[TileResult], grid: GridSpec) -> SurfaceModels:
    """Paste the tile cores into one grid (cells no tile covers stay NaN)."""
    dtm = np.full(grid.shape, np.nan)
    dsm = np.full(grid.shape, np.nan)
    support = np.zeros(grid.shape, dtype=bool)
    water = np.zeros(grid.shape, dtype=bool)
    bridge = np.zeros(grid.shape, dtype=bool)
    for r in results:
        if r.surfaces is None:
            continue
        with np.load(r.surfaces) as data:
            gx0, gy1, w, h = data["grid"]
            core = GridSpec(float(gx0), float(gy1), grid.cell, int(w), int(h))
            b0, b1, b2, b3 = core.bounds
            eps = grid.cell * 1e-6  # exactly the core's cells, not the neighbours on its edges
            part = grid.clip((b0 + eps, b1 + eps, b2 - eps, b3 - eps))
            if part is None:
                continue
            rows, cols = core.window_of(part)
            grows, gcols = grid.window_of(part)
            dtm[grows, gcols] = data["dtm"][rows, cols]
            dsm[grows, gcols] = data["dsm"][rows, cols]
            support[grows, gcols] = data["support"][rows, cols]
            water[grows, gcols] = data["water"][rows, cols]
            bridge[grows, gcols] = data["bridge"][rows, cols]
    return SurfaceModels(grid, dtm, dsm, support, water, bridge)


def run_tiled(sources: list[Source], outdir, *, tile_size: float = 500.0, resolution: float = 1.0,
              params: SMRFParams | None = None, target_srid: int | None = None, scheduler: str | None = None,
              n_workers: int | None = None, processes: bool = True, retries: int = 2,
              chunk_size: int = DEFAULT_CHUNK_SIZE, write_rasters: bool = True, mosaic_in_memory: bool = True,
              buildings: BuildingRequest | None = None, cadastral: dict | None = None,
              progress: Callable[[float, str], None] | None = None) -> TiledRun:
    """Ground, DTM, DSM, nDSM and hillshade for a set of files, tile by tile, in parallel.

    ``mosaic_in_memory=False`` (city scale): every tile writes its own COGs under ``outdir/tiles``
    and the products are VRT mosaics of them; no grid of the whole area is ever held in memory.

    ``buildings``: the same tasks also detect buildings and fit their roofs, and measure the
    ``cadastral`` footprints ({id: polygon in the run's CRS}), each in the tile that owns it
    (``lidar.tile_buildings``); ``TiledRun.detected`` and ``TiledRun.cadastral`` collect them.
    Tiles where an owned building reaches past ``buildings.reach`` are run again with a wider
    reach (another chunked pass, spilling only those tiles); still too narrow: ``TileFailed``.
    """
    params = params or SMRFParams()
    outdir = Path(outdir)
    scheme = TileScheme(tile_size, params.buffer, buildings.reach if buildings else 0.0)
    if abs(tile_size / resolution - round(tile_size / resolution)) > 1e-9:
        raise InvalidInput("the tile size must be a multiple of the resolution")
    work = outdir / ".tiles"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    def report(stage: str, lo: float, hi: float):
        return (lambda f: progress(lo + (hi - lo) * f, stage)) if progress else None

    files, bounds, srid, info = retile(sources, scheme, work, target_srid=target_srid, chunk_size=chunk_size,
                                       progress=report("retile", 0.0, 0.3))
    vdatum = next((s["vertical_datum"] for s in info if s["vertical_datum"]), None)
    tile_cogs = None if mosaic_in_memory else {"dir": str(outdir / "tiles"), "srid": srid, "vertical_datum": vdatum}
    footprints = _footprints_by_tile(cadastral or {}, tile_size) if buildings else None
    tasks = {"scheduler": scheduler, "n_workers": n_workers, "processes": processes, "retries": retries,
             "tile_cogs": tile_cogs, "buildings": buildings, "footprints": footprints}
    try:
        results = _run_tasks(files, scheme, params, resolution, work, progress=report("tiles", 0.3, 0.9), **tasks)
        if buildings:
            results = _widen_oversized(results, sources, scheme, params, resolution, work, target_srid=target_srid,
                                       chunk_size=chunk_size, progress=report("wider tiles", 0.9, 0.95), **tasks)
    except TileFailed as exc:
        exc.details["srid"] = srid
        shutil.rmtree(work, ignore_errors=True)
        raise
    grid = GridSpec.covering(bounds, resolution)
    if mosaic_in_memory:
        run = TiledRun(grid, srid, mosaic(results, grid), results, info, vdatum)
        if write_rasters:
            run.outputs = write_products(run, outdir)
    else:
        run = TiledRun(grid, srid, None, results, info, vdatum)
        run.outputs = write_vrts(run, outdir)
    shutil.rmtree(work)
    if progress:
        progress(1.0, "done")
    return run


def _footprints_by_tile(cadastral: dict, size: float) -> dict[tuple[int, int], list]:
    out: dict[tuple[int, int], list] = {}
    for fid, geom in cadastral.items():
        out.setdefault(owner_key(geom, size), []).append((fid, geom))
    return out


def _widen_oversized(results: list[TileResult], sources, scheme: TileScheme, params, resolution, work: Path, *,
                     target_srid, chunk_size, progress, buildings: BuildingRequest, **tasks) -> list[TileResult]:
    """Run again, with the reach they need, the tiles whose owned buildings reach past the scheme's."""
    by_key = {r.key: r for r in results}
    widenings = buildings.widenings
    for attempt in range(widenings + 1):
        over = {r.key: r.buildings.oversized for r in by_key.values() if r.buildings and r.buildings.oversized}
        if not over:
            return sorted(by_key.values(), key=lambda r: r.key)
        if attempt == widenings:
            break
        need = max(o["reach_needed"] for found in over.values() for o in found)
        reach = 10.0 * math.ceil(need / 10.0 + 0.5)  # a margin: the outline moves with the wider DTM
        scheme = TileScheme(scheme.size, scheme.buffer, max(reach, 2 * scheme.building_reach))
        buildings = dataclasses.replace(buildings, reach=scheme.building_reach)
        spill = work / f"wider_{attempt}"
        files, *_ = retile(sources, scheme, spill, target_srid=target_srid, chunk_size=chunk_size, only=set(over))
        for r in _run_tasks(files, scheme, params, resolution, work, progress=progress, buildings=buildings, **tasks):
            by_key[r.key] = r
        shutil.rmtree(spill, ignore_errors=True)
    raise TileFailed(
        f"{len(over)} tiles own buildings that reach farther beyond the tile than the building buffer "
        f"({scheme.building_reach:g} m) after {widenings} widenings",
        details={"failures": [{"tile": list(k), "error": "building beyond the building buffer", "buildings": found}
                              for k, found in sorted(over.items())]})


def write_vrts(run: TiledRun, outdir: Path) -> dict[str, Path]:
    """One VRT per product over the tiles' COGs."""
    outputs = {}
    for kind, description in (("dtm", "DTM"), ("dsm", "DSM"), ("ndsm", "nDSM"), ("hillshade", "DTM hillshade")):
        parts = []
        for t in run.tiles:
            if kind in t.files:
                with np.load(t.surfaces) as data:
                    gx0, gy1, w, h = data["grid"]
                parts.append((Path(t.files[kind]), GridSpec(float(gx0), float(gy1), run.grid.cell, int(w), int(h))))
        is_shade = kind == "hillshade"
        outputs[kind] = write_vrt(outdir / f"{kind}.vrt", parts, run.grid, run.srid,
                                  dtype="Byte" if is_shade else "Float32", nodata=None if is_shade else NODATA,
                                  description=description)
    return outputs


def write_products(run: TiledRun, outdir: Path) -> dict[str, Path]:
    s, g = run.surfaces, run.grid
    vd = run.vertical_datum
    return {
        "dtm": write_cog(outdir / "dtm.tif", s.dtm, g, run.srid, description="DTM", vertical_datum=vd,
                         tags=HYDRAULIC_DTM_TAGS),
        "dsm": write_cog(outdir / "dsm.tif", s.dsm, g, run.srid, description="DSM", vertical_datum=vd),
        "ndsm": write_cog(outdir / "ndsm.tif", s.ndsm, g, run.srid, description="nDSM"),
        "hillshade": write_cog(outdir / "hillshade.tif", hillshade(s.dtm, g.cell), g, run.srid, nodata=None,
                               description="DTM hillshade"),
    }


__all__ = ["NODATA", "Source", "TileScheme", "TiledRun", "run_tiled", "process_tile", "retile"]
