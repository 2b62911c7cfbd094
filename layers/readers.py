"""Vector file readers (GDAL through pyogrio): format detection, encodings, batched reading.

Every supported format is read as a stream of Arrow record batches (``pyogrio.raw.open_arrow``),
so memory stays bounded by the batch size whatever the file size. GDAL errors become
``InvalidFile`` (400), unknown formats ``UnsupportedFormat`` (415).

Shapefile text is decoded by Python, not by GDAL, when the ``.cpg`` names a legacy code page:
GDAL's iconv recoding drops the last character of every CP1258 (Vietnamese) string, because
CP1258 is a stateful encoding whose trailing base letter is only emitted on a flush. We ask GDAL
for Latin-1 (a lossless byte pass-through) and decode the bytes with Python's codec. All text is
then normalised to NFC: legacy Vietnamese encodings store tone marks as combining characters.
"""

from __future__ import annotations

import codecs
import unicodedata
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyogrio
import pyogrio.errors
from pyproj import CRS

from gisserver.errors import InvalidFile, InvalidInput, UnsupportedFormat

#: file suffix -> GDAL driver (a .zip is opened as a container of one of these)
DRIVERS = {
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".fgb": "FlatGeobuf",
    ".csv": "CSV",
    ".dxf": "DXF",
    ".dgn": "DGN",
}
SUPPORTED_SUFFIXES = (*DRIVERS, ".zip")

# CSV: where the geometry may be (WKT column, or x/y columns); typed columns, '' as null
CSV_OPEN_OPTIONS = {
    "GEOM_POSSIBLE_NAMES": "wkt,WKT,geometry,geom,the_geom,Geometry,WKT_GEOM",
    "X_POSSIBLE_NAMES": "x,X,lon,Lon,longitude,Longitude,lng",
    "Y_POSSIBLE_NAMES": "y,Y,lat,Lat,latitude,Latitude",
    "KEEP_GEOM_COLUMNS": "NO",
    "AUTODETECT_TYPE": "YES",
    "EMPTY_STRING_AS_NULL": "YES",
}

# combining marks (Vietnamese tone marks are U+0300-U+036F) and Hangul conjoining jamo (RE2 syntax)
_COMBINING = (
    "[\\x{0300}-\\x{036F}\\x{1AB0}-\\x{1AFF}\\x{1DC0}-\\x{1DFF}\\x{20D0}-\\x{20FF}"
    "\\x{FE20}-\\x{FE2F}\\x{1100}-\\x{11FF}]"
)

GDAL_ERRORS = (
    pyogrio.errors.DataSourceError,
    pyogrio.errors.DataLayerError,
    pyogrio.errors.FeatureError,
    pyogrio.errors.FieldError,
    pyogrio.errors.GeometryError,
    pa.ArrowException,
    OSError,
)


@dataclass
class VectorSource:
    """An opened vector dataset layer, ready to be read in batches."""

    name: str  # the file name the user gave
    gdal_path: str
    driver: str
    layer: str | None
    crs: CRS | None
    geometry_type: str
    feature_count: int | None
    fields: list[str]
    ogr_types: list[str]
    recode: str | None = None  # Python codec for legacy text (see module docstring)
    open_options: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class FeatureBatch:
    fids: np.ndarray  # int64 source feature ids
    wkb: np.ndarray  # object array of WKB bytes (None for a null geometry)
    columns: dict[str, pa.Array]

    def __len__(self) -> int:
        return len(self.fids)


def detect_driver(path: Path, filename: str | None = None) -> str:
    """The GDAL driver for a file, from its name and first bytes; ``zip`` for an archive."""
    name = (filename or path.name).lower()
    suffix = Path(name).suffix
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InvalidFile(f"cannot read {filename or path.name}: {exc.strerror}") from None
    if not head:
        raise InvalidFile(f"{filename or path.name} is empty")
    if head.startswith(b"PK\x03\x04") or suffix == ".zip":
        return "zip"
    if head.startswith(b"SQLite format 3\x00"):
        return "GPKG"
    if head.startswith(b"fgb\x03"):
        return "FlatGeobuf"
    if suffix in DRIVERS:
        return DRIVERS[suffix]
    if head.lstrip()[:1] == b"{":
        return "GeoJSON"
    raise UnsupportedFormat(
        f"unsupported file type {suffix or name!r}; supported: GeoPackage (.gpkg), zipped Shapefile "
        "(.zip), GeoJSON (.geojson/.json), FlatGeobuf (.fgb), CSV with a WKT column (.csv), DXF, DGN"
    )


def codec_from_cpg(text: str) -> str | None:
    """Python codec named by a Shapefile ``.cpg`` (None for UTF-8, which GDAL decodes correctly)."""
    value = text.strip().upper().replace("ANSI ", "").replace("WINDOWS-", "CP").replace("WINDOWS", "CP")
    if value.isdigit():
        value = "UTF-8" if value == "65001" else f"CP{value}"
    try:
        codec = codecs.lookup(value).name
    except LookupError:
        raise InvalidFile(f"the .cpg file names an unknown encoding {text.strip()!r}") from None
    return None if codec == "utf-8" else codec


def _zip_member(path: Path, filename: str, source_layer: str | None) -> tuple[str, str]:
    """(member, driver) of the one dataset inside a zip archive."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/") and "__MACOSX" not in n]
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidFile(f"{filename} is not a readable zip archive: {exc}") from None
    if bad is not None:
        raise InvalidFile(f"{filename}: member {bad!r} is corrupt")
    datasets = [n for n in names if Path(n).suffix.lower() in DRIVERS]
    if source_layer:
        chosen = [n for n in datasets if Path(n).stem == source_layer or n == source_layer]
        datasets = chosen or datasets
    if not datasets:
        raise UnsupportedFormat(f"{filename} holds no supported dataset (.shp, .gpkg, .geojson, .fgb, .csv ...)")
    if len(datasets) > 1:
        raise InvalidInput(
            f"{filename} holds several datasets ({', '.join(sorted(datasets))}); choose one with source_layer"
        )
    member = datasets[0]
    return member, DRIVERS[Path(member).suffix.lower()]


def _cpg_codec(path: Path, member: str | None) -> str | None:
    if member is not None:
        cpg_name = str(Path(member).with_suffix(".cpg"))
        with zipfile.ZipFile(path) as zf:
            match = [n for n in zf.namelist() if n.lower() == cpg_name.lower()]
            if not match:
                return None
            return codec_from_cpg(zf.read(match[0]).decode("ascii", "replace"))
    for cpg in (path.with_suffix(".cpg"), path.with_suffix(".CPG")):
        if cpg.exists():
            return codec_from_cpg(cpg.read_text("ascii", "replace"))
    return None


def open_vector(path: Path | str, *, filename: str | None = None, source_layer: str | None = None,
                encoding: str | None = None) -> VectorSource:
    """Inspect a vector file: driver, layer, CRS, fields and feature count (nothing read yet).

    ``encoding`` overrides the text encoding (e.g. ``cp1258`` for a Shapefile without a .cpg).
    """
    path = Path(path)
    filename = filename or path.name
    driver = detect_driver(path, filename)
    member = None
    gdal_path = str(path)
    if driver == "zip":
        member, driver = _zip_member(path, filename, source_layer)
        gdal_path = f"/vsizip/{path}/{member}"
        source_layer = None if Path(member).stem == source_layer else source_layer
    recode = None
    if encoding:
        try:
            recode = codecs.lookup(encoding).name
        except LookupError:
            raise InvalidInput(f"unknown text encoding {encoding!r}") from None
        recode = None if recode == "utf-8" else recode
    elif driver == "ESRI Shapefile":
        recode = _cpg_codec(path, member)
    options = dict(CSV_OPEN_OPTIONS) if driver == "CSV" else {}
    layer = _choose_layer(gdal_path, filename, source_layer, driver)
    info, caught = _gdal_call(
        filename, pyogrio.read_info, gdal_path, layer=layer, encoding="latin1" if recode else None, **options,
    )
    crs = None
    if info.get("crs"):
        try:
            crs = CRS.from_user_input(info["crs"])
        except Exception as exc:  # pyproj CRSError: an unparseable .prj is bad input
            raise InvalidFile(f"{filename}: the coordinate system cannot be parsed ({exc})") from None
    fields = [str(f) for f in info["fields"]]
    if recode:
        fields = [_fix_text(f, recode) for f in fields]
    count = info.get("features")
    return VectorSource(
        name=filename, gdal_path=gdal_path, driver=driver, layer=layer, crs=crs,
        geometry_type=str(info.get("geometry_type") or "Unknown"),
        feature_count=int(count) if count is not None and count >= 0 else None,
        fields=fields, ogr_types=list(info.get("ogr_types") or []), recode=recode,
        open_options=options, warnings=caught,
    )


def _choose_layer(gdal_path: str, filename: str, source_layer: str | None, driver: str) -> str | None:
    layers, _ = _gdal_call(filename, pyogrio.list_layers, gdal_path)
    names = [str(row[0]) for row in layers]
    with_geometry = [str(row[0]) for row in layers if row[1] is not None]
    if source_layer:
        if source_layer not in names:
            raise InvalidInput(f"{filename} has no layer {source_layer!r}; layers: {', '.join(names)}")
        return source_layer
    candidates = with_geometry or names
    if not candidates:
        raise InvalidFile(f"{filename} holds no layers")
    if len(candidates) > 1 and driver not in ("DXF", "DGN"):
        raise InvalidInput(f"{filename} holds several layers ({', '.join(candidates)}); choose one with source_layer")
    return candidates[0]


def _gdal_call(filename: str, func, *args, **kwargs):
    """Call pyogrio; GDAL errors become InvalidFile and GDAL warnings are collected, not raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = func(*args, **kwargs)
        except GDAL_ERRORS as exc:
            raise InvalidFile(f"{filename} could not be read: {_first_line(exc)}") from None
    return result, [str(w.message) for w in caught]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def iter_batches(source: VectorSource, batch_size: int = 65536) -> Iterator[FeatureBatch]:
    """The features of ``source`` in batches of at most ``batch_size`` (bounded memory)."""
    if batch_size < 1:
        raise InvalidInput("batch_size must be >= 1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with pyogrio.raw.open_arrow(
                source.gdal_path, layer=source.layer, batch_size=batch_size, use_pyarrow=True,
                return_fids=True, encoding="latin1" if source.recode else None, **source.open_options,
            ) as (meta, reader):
                geometry_name = _geometry_column(meta, reader.schema)
                fid_name = meta.get("fid_column") or None
                for record_batch in reader:
                    yield _to_feature_batch(record_batch, geometry_name, fid_name, source)
        except GDAL_ERRORS as exc:
            raise InvalidFile(f"{source.name} could not be read: {_first_line(exc)}") from None
        finally:
            source.warnings.extend(str(w.message) for w in caught)


def _geometry_column(meta: dict, schema: pa.Schema) -> str | None:
    for f in schema:
        if (f.metadata or {}).get(b"ARROW:extension:name") == b"geoarrow.wkb":
            return f.name
    name = meta.get("geometry_name") or "wkb_geometry"
    return name if name in schema.names else None


def _to_feature_batch(batch: pa.RecordBatch, geometry_name: str | None, fid_name: str | None,
                      source: VectorSource) -> FeatureBatch:
    n = batch.num_rows
    if fid_name and fid_name in batch.schema.names:
        fids = batch.column(fid_name).to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        fids = np.arange(n, dtype=np.int64)
    if geometry_name is not None:
        wkb = batch.column(geometry_name).to_numpy(zero_copy_only=False)
    else:
        wkb = np.full(n, None, dtype=object)
    skip = {geometry_name, fid_name}
    names = [name for name in batch.schema.names if name not in skip]
    columns = {}
    for out_name, name in zip(source.fields, names, strict=False):
        columns[out_name] = _normalise_text(batch.column(name), source.recode)
    return FeatureBatch(fids=fids, wkb=wkb, columns=columns)


def _fix_text(value: str, recode: str) -> str:
    return unicodedata.normalize("NFC", value.encode("latin-1").decode(recode, "replace"))


def _normalise_text(arr: pa.Array, recode: str | None) -> pa.Array:
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        return arr
    if recode:
        return pa.array([None if v is None else _fix_text(v, recode) for v in arr.to_pylist()], pa.string())
    # NFC only changes text holding combining characters (or conjoining jamo): normalising is
    # slow, a regex scan is not, and most columns have none
    if not pc.any(pc.match_substring_regex(arr, _COMBINING)).as_py():
        return arr
    return pc.utf8_normalize(arr, "NFC")
