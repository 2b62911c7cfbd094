"""Reading LAS/LAZ/COPC point clouds as bounded-memory streams.

``open_cloud`` validates the header and VLRs and resolves the CRS (WKT or GeoTIFF VLR, or the
one the user declares; never guessed). ``LidarFile.chunks`` yields :class:`PointChunk` arrays of
at most ``chunk_size`` points, optionally reprojected horizontally to another CRS (the city CRS
by default in the pipeline). COPC files are LAZ 1.4 files and are read as such.

Errors: a corrupt or truncated file raises :class:`~gisserver.errors.InvalidFile`; a file
without CRS and no declared CRS raises :class:`~gisserver.errors.MissingCRS`; a CRS that cannot
be understood raises :class:`~gisserver.errors.UnknownCRS`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import laspy
import numpy as np
from laspy.vlrs.known import GeoKeyDirectoryVlr, WktCoordinateSystemVlr
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from gisserver.crs import pyproj_crs, srid_from_pyproj, srid_to_epsg, transformer
from gisserver.errors import InvalidFile, InvalidInput, MissingCRS, UnknownCRS, UnsupportedFormat

DEFAULT_CHUNK_SIZE = 1_000_000
_VERTICAL_CS_GEOKEY = 4096
_EARTH_RADIUS_RANGE = (6.30e6, 6.42e6)


@dataclass(frozen=True)
class CloudCRS:
    """The horizontal CRS of a cloud, where it came from, and the height reference."""

    crs: CRS
    srid: int
    source: str  # "wkt", "geotiff" or "declared"
    vertical_datum: str | None
    #: multiply file z by this to get metres
    z_to_metre: float = 1.0
    geocentric: bool = False

    @property
    def name(self) -> str:
        return self.crs.name


@dataclass
class PointChunk:
    """Arrays of one block of points: x/y in the output CRS's unit, z always in metres."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    classification: np.ndarray
    return_number: np.ndarray
    number_of_returns: np.ndarray
    intensity: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, mask_or_index) -> PointChunk:
        return PointChunk(**{k: v[mask_or_index] for k, v in self.__dict__.items()})

    @classmethod
    def concatenate(cls, chunks: list[PointChunk]) -> PointChunk:
        if not chunks:
            return empty_chunk()
        names = chunks[0].__dict__.keys()
        return cls(**{k: np.concatenate([c.__dict__[k] for c in chunks]) for k in names})


def empty_chunk() -> PointChunk:
    f, u = np.empty(0, np.float64), np.empty(0, np.uint8)
    return PointChunk(f, f.copy(), f.copy(), u, u.copy(), u.copy(), np.empty(0, np.uint16))


@dataclass
class FileSummary:
    path: str
    version: str
    point_format: int
    compressed: bool
    copc: bool
    point_count: int
    bounds: tuple[float, float, float, float]
    z_range: tuple[float, float]
    classes: dict[int, int]
    density: float  # points per m2 of occupied cells
    occupied_area: float  # m2
    srid: int
    crs_name: str
    crs_source: str
    vertical_datum: str | None
    acquisition_date: str | None
    file_size: int
    extra_dimensions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _parse_vlr_crs(header: laspy.LasHeader) -> tuple[CRS | None, str | None, str | None]:
    """(crs, source, vertical datum) from the file's WKT or GeoTIFF VLRs; checks they agree."""
    records = list(header.vlrs.get_by_id("LASF_Projection"))
    if header.evlrs is not None:
        records.extend(header.evlrs.get_by_id("LASF_Projection"))
    wkt = [r for r in records if isinstance(r, WktCoordinateSystemVlr)]
    geo = [r for r in records if isinstance(r, GeoKeyDirectoryVlr)]
    wkt_crs = geo_crs = None
    vertical = None
    try:
        if wkt and wkt[0].string and wkt[0].string.strip("\x00 "):
            wkt_crs = CRS.from_wkt(wkt[0].string.strip("\x00 "))
        if geo:
            geo_crs = geo[0].parse_crs()
            vertical = _geotiff_vertical(geo[0])
    except CRSError as exc:
        raise UnknownCRS(f"the CRS VLR of the file cannot be parsed: {exc}") from exc
    if (wkt or geo) and wkt_crs is None and geo_crs is None:
        raise UnknownCRS("the file has a CRS VLR that names no known CRS; declare the CRS")
    if wkt_crs is not None and geo_crs is not None:
        if not _same_horizontal(wkt_crs, geo_crs):
            raise InvalidFile(
                f"the WKT VLR ({wkt_crs.name}) and the GeoTIFF VLR ({geo_crs.name}) disagree; "
                "declare the CRS explicitly",
                details={"wkt": wkt_crs.name, "geotiff": geo_crs.name},
            )
    if wkt_crs is not None:
        return wkt_crs, "wkt", vertical
    return geo_crs, ("geotiff" if geo_crs is not None else None), vertical


def _geotiff_vertical(vlr: GeoKeyDirectoryVlr) -> str | None:
    for key in vlr.geo_keys:
        if key.id == _VERTICAL_CS_GEOKEY and 1024 <= key.value_offset <= 32766:
            try:
                return CRS.from_epsg(key.value_offset).name
            except CRSError:
                # some writers put the datum code (e.g. 5103 NAVD88) where the CRS code belongs
                return f"EPSG:{key.value_offset}"
    return None


def _horizontal(crs: CRS) -> CRS:
    if crs.is_compound:
        return crs.sub_crs_list[0]
    return crs


def _same_horizontal(a: CRS, b: CRS) -> bool:
    return _horizontal(a).equals(_horizontal(b), ignore_axis_order=True)


def _unit_factor(crs: CRS, axis: int) -> float:
    info = crs.axis_info
    if len(info) > axis and info[axis].unit_conversion_factor:
        return float(info[axis].unit_conversion_factor)
    return 1.0


def resolve_crs(header: laspy.LasHeader, declared=None, vertical_datum: str | None = None) -> CloudCRS:
    """The cloud's CRS: the declared one if given, else the file's; MissingCRS if neither."""
    if declared is not None:
        try:
            file_crs, source, file_vertical = _parse_vlr_crs(header)
        except (InvalidFile, UnknownCRS):
            # the user's declaration overrides broken or contradictory CRS VLRs
            file_crs, source, file_vertical = None, None, None
    else:
        file_crs, source, file_vertical = _parse_vlr_crs(header)
    if declared is not None:
        try:
            crs = declared if isinstance(declared, CRS) else CRS.from_user_input(declared)
        except CRSError as exc:
            raise UnknownCRS(f"declared CRS {declared!r} is not a known CRS") from exc
        source = "declared"
    elif file_crs is not None:
        crs = file_crs
    else:
        raise MissingCRS(
            "the file has no CRS (no WKT or GeoTIFF VLR); declare it, e.g. crs='EPSG:28992'",
        )
    vertical = vertical_datum
    z_factor = None
    if crs.is_compound:
        vcrs = crs.sub_crs_list[1]
        vertical = vertical or vcrs.name
        z_factor = _unit_factor(vcrs, 0)
    vertical = vertical or file_vertical
    horizontal = _horizontal(crs)
    if horizontal.is_geocentric:
        return CloudCRS(horizontal, 4978, source, vertical or "WGS 84 ellipsoid", 1.0, geocentric=True)
    if z_factor is None:
        # without a vertical CRS, heights are in the horizontal unit (e.g. US survey feet)
        z_factor = _unit_factor(horizontal, 0)
    srid = srid_from_pyproj(horizontal)
    return CloudCRS(horizontal, srid, source, vertical, z_factor)


class LidarFile:
    """An opened point cloud: validated header, resolved CRS, chunked point access."""

    def __init__(self, path, *, crs=None, vertical_datum: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidFile(f"{self.path.name}: no such file")
        self.file_size = os.path.getsize(self.path)
        try:
            with laspy.open(self.path) as reader:
                self.header = reader.header
        except (laspy.errors.LaspyException, ValueError, OSError, EOFError) as exc:
            raise InvalidFile(f"{self.path.name}: not a readable LAS/LAZ file ({exc})") from exc
        self._validate_header()
        self.crs = resolve_crs(self.header, crs, vertical_datum)
        if self.crs.geocentric:
            self._check_geocentric()

    # --- validation --------------------------------------------------------------------

    def _validate_header(self) -> None:
        h, name = self.header, self.path.name
        if not (h.version.major == 1 and 0 <= h.version.minor <= 4):
            raise UnsupportedFormat(f"{name}: LAS version {h.version} is not supported (1.0-1.4)")
        if not 0 <= h.point_format.id <= 10:
            raise UnsupportedFormat(f"{name}: point format {h.point_format.id} is not supported")
        scales = np.asarray(h.scales, dtype=float)
        if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise InvalidFile(f"{name}: invalid scale factors {scales.tolist()}")
        if not np.all(np.isfinite(np.asarray(h.offsets, dtype=float))):
            raise InvalidFile(f"{name}: invalid offsets")
        if h.point_count > 0 and np.any(np.asarray(h.mins) > np.asarray(h.maxs)):
            raise InvalidFile(f"{name}: header bounds are inconsistent (min > max)")
        if not h.are_points_compressed:
            expected = h.offset_to_point_data + h.point_count * h.point_format.size
            if self.file_size < expected:
                raise InvalidFile(
                    f"{name}: truncated: header announces {h.point_count} points "
                    f"({expected} bytes) but the file has {self.file_size} bytes",
                    details={"expected_bytes": expected, "file_bytes": self.file_size},
                )

    def _check_geocentric(self) -> None:
        h = self.header
        corners = np.array([h.mins, h.maxs], dtype=float)
        radius = np.sqrt((corners**2).sum(axis=1))
        lo, hi = _EARTH_RADIUS_RANGE
        if np.any(radius < lo) or np.any(radius > hi):
            raise InvalidFile(
                f"{self.path.name}: the file declares a geocentric CRS but its coordinates are "
                f"{radius.min() / 1000:.0f} km from the Earth's centre: the CRS VLR is wrong; "
                "declare the CRS explicitly",
                details={"radius_km": float(radius.min() / 1000)},
            )

    # --- properties ----------------------------------------------------------------------

    @property
    def point_count(self) -> int:
        return int(self.header.point_count)

    @property
    def is_copc(self) -> bool:
        return any(v.user_id == "copc" and v.record_id == 1 for v in self.header.vlrs)

    @property
    def acquisition_date(self) -> str | None:
        """The header's creation date (ISO), None when it is not set."""
        return _acquisition_date(self.header)

    @property
    def extra_dimensions(self) -> list[str]:
        return list(self.header.point_format.extra_dimension_names)

    def bounds(self, target_srid: int | None = None) -> tuple[float, float, float, float]:
        """Header bounds (x0, y0, x1, y1), transformed (envelope of the corners) if asked."""
        h = self.header
        x0, y0, x1, y1 = float(h.mins[0]), float(h.mins[1]), float(h.maxs[0]), float(h.maxs[1])
        if target_srid is None or target_srid == self.crs.srid:
            return (x0, y0, x1, y1)
        xs = np.array([x0, x1, x0, x1, (x0 + x1) / 2])
        ys = np.array([y0, y0, y1, y1, (y0 + y1) / 2])
        zs = np.full(5, (h.mins[2] + h.maxs[2]) / 2)
        tx, ty, _ = self._transform(xs, ys, zs, target_srid)
        return float(tx.min()), float(ty.min()), float(tx.max()), float(ty.max())

    @property
    def horizontal_metric(self) -> bool:
        """True when x/y are in metres in the native CRS (else reproject before gridding)."""
        return not self.crs.geocentric and abs(_unit_factor(self.crs.crs, 0) - 1.0) < 1e-12

    # --- reading -------------------------------------------------------------------------

    def chunks(self, chunk_size: int = DEFAULT_CHUNK_SIZE, target_srid: int | None = None) -> Iterator[PointChunk]:
        """Yield the points in blocks of at most ``chunk_size``; memory stays bounded."""
        if chunk_size < 1:
            raise InvalidInput("chunk_size must be positive")
        if self.crs.geocentric and target_srid is None:
            raise InvalidInput("a geocentric cloud must be read with a projected target CRS")
        if target_srid is not None and target_srid != self.crs.srid:
            self.check_area_of_use(target_srid)
        seen = 0
        try:
            with laspy.open(self.path) as reader:
                for points in reader.chunk_iterator(chunk_size):
                    chunk = self._to_chunk(points, target_srid)
                    seen += len(chunk)
                    yield chunk
        except (laspy.errors.LaspyException, ValueError, OSError, EOFError, RuntimeError) as exc:
            raise InvalidFile(
                f"{self.path.name}: corrupt or truncated point data after {seen} points ({exc})",
                details={"points_read": seen},
            ) from exc
        if seen != self.point_count:
            raise InvalidFile(
                f"{self.path.name}: truncated: header announces {self.point_count} points, read {seen}",
                details={"points_read": seen, "point_count": self.point_count},
            )

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """Header bounds as WGS84 lon/lat (envelope of corners and centre)."""
        h = self.header
        x0, y0, x1, y1 = float(h.mins[0]), float(h.mins[1]), float(h.maxs[0]), float(h.maxs[1])
        xs = np.array([x0, x1, x0, x1, (x0 + x1) / 2])
        ys = np.array([y0, y0, y1, y1, (y0 + y1) / 2])
        zs = np.full(5, (h.mins[2] + h.maxs[2]) / 2)
        t = Transformer.from_crs(self.crs.crs, CRS.from_epsg(4326), always_xy=True)
        if self.crs.geocentric:
            lon, lat, _ = t.transform(xs, ys, zs)
        else:
            lon, lat = t.transform(xs, ys)
        return float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))

    def check_area_of_use(self, target_srid: int, margin_deg: float = 1.0) -> None:
        """InvalidInput unless the cloud lies (within a margin) in the target CRS's area of use."""
        area = CRS.from_epsg(srid_to_epsg(target_srid)).area_of_use
        if area is None:
            return
        lon0, lat0, lon1, lat1 = self.lonlat_bounds()
        if not (lon1 >= area.west - margin_deg and lon0 <= area.east + margin_deg
                and lat1 >= area.south - margin_deg and lat0 <= area.north + margin_deg):
            raise InvalidInput(
                f"{self.path.name}: the cloud (lon {lon0:.3f}..{lon1:.3f}, lat {lat0:.3f}..{lat1:.3f}) lies "
                f"outside the area of use of EPSG:{srid_to_epsg(target_srid)} ({area.name}); "
                "check the declared CRS or process it in its own CRS",
                details={"lonlat_bounds": [lon0, lat0, lon1, lat1]},
            )

    def read_all(self, target_srid: int | None = None) -> PointChunk:
        """The whole file at once (small files and tests)."""
        return PointChunk.concatenate(list(self.chunks(max(self.point_count, 1), target_srid)))

    def _to_chunk(self, points, target_srid: int | None) -> PointChunk:
        h = self.header
        x = points.array["X"] * h.scales[0] + h.offsets[0]
        y = points.array["Y"] * h.scales[1] + h.offsets[1]
        z = points.array["Z"] * h.scales[2] + h.offsets[2]
        if self.crs.geocentric or (target_srid is not None and target_srid != self.crs.srid):
            x, y, z = self._transform(x, y, z, target_srid)
        elif self.crs.z_to_metre != 1.0:
            # native x/y keep the CRS's unit; heights are always metres
            z = z * self.crs.z_to_metre
        pf = points.point_format
        returns = np.asarray(points.return_number, dtype=np.uint8)
        nret = np.asarray(points.number_of_returns, dtype=np.uint8)
        cls = np.asarray(points.classification, dtype=np.uint8)
        intensity = np.asarray(points.intensity, dtype=np.uint16) if "intensity" in pf.dimension_names else (
            np.zeros(len(x), np.uint16))
        return PointChunk(x, y, z, cls, returns, nret, intensity)

    def _transform(self, x, y, z, target_srid: int):
        if self.crs.geocentric:
            t = Transformer.from_crs(self.crs.crs, pyproj_crs(target_srid), always_xy=True)
            tx, ty, tz = t.transform(x, y, z)
        else:
            # horizontal only: heights keep their datum (recorded as vertical_datum)
            tx, ty = transformer(self.crs.srid, target_srid).transform(x, y)
            tz = z * self.crs.z_to_metre
        tx, ty = np.asarray(tx), np.asarray(ty)
        if not (np.all(np.isfinite(tx)) and np.all(np.isfinite(ty))):
            raise InvalidInput(
                f"{self.path.name}: the points cannot be reprojected to SRID {target_srid}; "
                "they lie outside that CRS's area of use"
            )
        return tx, ty, np.asarray(tz)


def open_cloud(path, *, crs=None, vertical_datum: str | None = None) -> LidarFile:
    """Open and validate a LAS/LAZ/COPC file; ``crs`` overrides (or supplies) the CRS."""
    return LidarFile(path, crs=crs, vertical_datum=vertical_datum)


def _acquisition_date(header) -> str | None:
    # the header's creation date is the best the format offers; 0001-01-01 means "not set"
    d = header.creation_date
    return d.isoformat() if d is not None and d.year >= 1990 else None


class _SummaryAccumulator:
    """Accumulates counts, bounds, classes and occupied cells chunk by chunk."""

    def __init__(self, cell: float):
        self.cell = cell
        self.count = 0
        self.mins = np.array([np.inf, np.inf, np.inf])
        self.maxs = -self.mins
        self.classes = np.zeros(256, np.int64)
        self.cells = np.empty(0, np.int64)

    def add(self, chunk: PointChunk) -> None:
        if len(chunk) == 0:
            return
        self.count += len(chunk)
        for i, a in enumerate((chunk.x, chunk.y, chunk.z)):
            self.mins[i] = min(self.mins[i], float(a.min()))
            self.maxs[i] = max(self.maxs[i], float(a.max()))
        self.classes += np.bincount(chunk.classification, minlength=256)
        ix = np.floor(chunk.x / self.cell).astype(np.int64)
        iy = np.floor(chunk.y / self.cell).astype(np.int64)
        keys = np.unique(ix * (1 << 32) + iy)
        self.cells = np.union1d(self.cells, keys)


def summarize(path, *, crs=None, vertical_datum: str | None = None, target_srid: int | None = None,
              chunk_size: int = DEFAULT_CHUNK_SIZE, density_cell: float = 2.0) -> FileSummary:
    """Read the file once in chunks: bounds, count, density over occupied cells, classes, z range."""
    cloud = open_cloud(path, crs=crs, vertical_datum=vertical_datum)
    # density cells are density_cell metres wide whatever the unit of the output coordinates
    unit = _unit_factor(cloud.crs.crs, 0) if target_srid is None and not cloud.crs.geocentric else 1.0
    acc = _SummaryAccumulator(density_cell / unit)
    for chunk in cloud.chunks(chunk_size, target_srid):
        acc.add(chunk)
    area = float(len(acc.cells)) * density_cell**2
    h = cloud.header
    empty = acc.count == 0
    return FileSummary(
        path=str(cloud.path),
        version=str(h.version),
        point_format=int(h.point_format.id),
        compressed=bool(h.are_points_compressed),
        copc=cloud.is_copc,
        point_count=acc.count,
        bounds=(0.0, 0.0, 0.0, 0.0) if empty else tuple(float(v) for v in (*acc.mins[:2], *acc.maxs[:2])),
        z_range=(0.0, 0.0) if empty else (float(acc.mins[2]), float(acc.maxs[2])),
        classes={int(c): int(n) for c, n in enumerate(acc.classes) if n},
        density=acc.count / area if area else 0.0,
        occupied_area=area,
        srid=target_srid if target_srid is not None else cloud.crs.srid,
        crs_name=cloud.crs.name,
        crs_source=cloud.crs.source,
        vertical_datum=cloud.crs.vertical_datum,
        acquisition_date=_acquisition_date(h),
        file_size=cloud.file_size,
        extra_dimensions=cloud.extra_dimensions,
    )
