"""Vector layer ingest: a file -> a canonical or generic layer, all or nothing.

``load_layer`` reads the file in batches, resolves its CRS (never guessed), reprojects to the
city CRS, validates and repairs or rejects geometries per policy, maps attributes, and streams
the rows with COPY - all inside one transaction that also bumps the layer's version, refreshes
statistics and writes the audit entry. Any failure (bad feature under ``policy='fail'``, corrupt
file, interrupted load) rolls everything back: the previous version of the layer is untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from gisserver import audit, schema
from gisserver.crs import CITY_SRID, pyproj_crs, resolve_srid, srid_from_pyproj, srid_to_epsg
from gisserver.errors import Conflict, InvalidInput, MissingCRS, NotFound, RuleViolation, UnknownCRS
from layers import catalogue, targets
from layers.copyload import copy_chunks
from layers.geometry import check_geometries, check_policy, ewkb_hex, reproject
from layers.mapping import MappingPlan, attributes_json, convert_column, plan_mapping
from layers.readers import FeatureBatch, VectorSource, iter_batches, open_vector

MODES = ("replace", "append")
#: a replace of at least this many features rebuilds the indexes after the COPY
BIG_LOAD = 50_000
#: per-feature issues listed in a report (counts are always complete)
MAX_ISSUES = 10_000

Progress = Callable[[int, int | None], None]


class CRSMismatch(InvalidInput):
    code = "crs-mismatch"
    title = "The declared CRS contradicts the file's CRS"


@dataclass
class LoadReport:
    layer: str
    kind: str
    mode: str
    policy: str
    source: dict
    read: int = 0
    loaded: int = 0
    repaired: int = 0
    rejected: int = 0
    issues: list[dict] = field(default_factory=list)
    issues_truncated: bool = False
    data_version: int | None = None
    feature_count: int | None = None
    #: bounding box of the loaded features in the city CRS (None when none was loaded)
    bbox: list[float] | None = None
    created: bool = False
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def extend_bbox(self, bounds) -> None:
        if not np.all(np.isfinite(bounds)):
            return  # no geometry in the batch
        b = [float(v) for v in bounds]
        self.bbox = b if self.bbox is None else [min(self.bbox[0], b[0]), min(self.bbox[1], b[1]),
                                                 max(self.bbox[2], b[2]), max(self.bbox[3], b[3])]

    def note(self, fid: int, action: str, reason: str) -> None:
        if action == "repaired":
            self.repaired += 1
        else:
            self.rejected += 1
        if len(self.issues) < MAX_ISSUES:
            self.issues.append({"fid": fid, "action": action, "reason": reason})
        else:
            self.issues_truncated = True


def resolve_source_crs(source: VectorSource, declared: str | int | None, force: bool = False) -> int:
    """The storage SRID of the file's coordinates: from the file, or declared; never guessed."""
    declared_srid = resolve_srid(declared) if declared not in (None, "") else None
    if source.crs is None:
        if declared_srid is None:
            raise MissingCRS(f"{source.name} has no coordinate reference system; declare one (e.g. crs=EPSG:4326)")
        return declared_srid
    try:
        file_srid = srid_from_pyproj(source.crs)
    except UnknownCRS:
        file_srid = None
    if declared_srid is None:
        if file_srid is None:
            raise UnknownCRS(f"the CRS of {source.name} ({source.crs.name}) has no EPSG code; declare it with crs=")
        return file_srid
    if file_srid == declared_srid or force:
        return declared_srid
    if pyproj_crs(declared_srid).equals(source.crs, ignore_axis_order=True):
        return declared_srid
    raise CRSMismatch(
        f"the declared CRS EPSG:{srid_to_epsg(declared_srid)} contradicts the file's CRS "
        f"({source.crs.name}{'' if file_srid is None else f', EPSG:{srid_to_epsg(file_srid)}'}); "
        "fix the declaration or force it",
        details={"declared": srid_to_epsg(declared_srid), "file": source.crs.name},
    )


def load_layer(engine: Engine, path: Path | str, layer: str, *, actor: str, filename: str | None = None,
               crs: str | int | None = None, force_crs: bool = False, mode: str = "replace",
               policy: str = "repair", mapping: dict[str, str] | None = None, source_layer: str | None = None,
               encoding: str | None = None, title: str | None = None, access_level: str | None = None,
               batch_size: int = 65536, progress: Progress | None = None,
               can_write: Callable[[catalogue.LayerInfo], bool] | None = None,
               index_rebuild_threshold: int = BIG_LOAD) -> LoadReport:
    """Load a vector file into layer ``layer`` in one transaction and return the load report.

    ``can_write`` (optional) is asked about an existing layer before anything changes; a layer it
    refuses is reported as not found, like one the caller cannot read. A replace of at least
    ``index_rebuild_threshold`` features drops a canonical table's secondary indexes and rebuilds
    them after the COPY.
    """
    started = time.perf_counter()
    catalogue.validate_layer_name(layer)
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
    check_policy(policy)
    source = open_vector(path, filename=filename, source_layer=source_layer, encoding=encoding)
    src_srid = resolve_source_crs(source, crs, force_crs)
    report = LoadReport(
        layer=layer, kind="", mode=mode, policy=policy,
        source={"file": source.name, "driver": source.driver, "layer": source.layer,
                "geometry_type": source.geometry_type, "features": source.feature_count,
                "crs": f"EPSG:{srid_to_epsg(src_srid)}",
                "crs_from": "file" if source.crs is not None and not crs else "declared",
                "encoding": source.recode or "utf-8"},
    )
    with engine.connect() as conn, conn.begin(), _database_errors(layer):
        targets.lock_layer(conn, layer)
        target = _target(conn, layer, source, mode, mapping, can_write)
        report.kind = target.kind
        report.created = target.existing is None
        before = _layer_state(conn, layer) if target.existing is not None else None
        plan = _plan(target, source, mapping)
        _prepare_table(conn, target, mode, source, index_rebuild_threshold)
        t0 = time.perf_counter()
        chunks = _chunks(source, plan, target, src_srid, policy, report, batch_size, progress)
        report.seconds["copy_waiting_for_input"] = copy_chunks(
            conn.connection.dbapi_connection, target.schema_name, target.table.name, plan.copy_columns, chunks
        )
        report.seconds["read_prepare_copy"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if target.kind == "canonical":
            targets.rebuild_indexes(conn, target)
        else:
            targets.finish_generic(conn, target)
            targets.register_generic(conn, target, title=title, access_level=access_level)
        report.seconds["index"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        report.data_version = catalogue.bump_version(conn, layer, _change(target, mode, report))
        info = catalogue.get_layer(conn, layer)
        catalogue.analyze(conn, info)
        report.feature_count = info.feature_count
        report.seconds["analyze"] = time.perf_counter() - t0
        report.warnings = list(dict.fromkeys(source.warnings))[:50]
        audit.record(
            conn, actor=actor, action="layer.load", target_type="layer", target_id=layer, before=before,
            after={"data_version": report.data_version, "feature_count": report.feature_count},
            detail={"mode": mode, "policy": policy, "kind": target.kind, "file": source.name,
                    "driver": source.driver, "crs": report.source["crs"], "read": report.read,
                    "loaded": report.loaded, "repaired": report.repaired, "rejected": report.rejected},
        )
    report.seconds["total"] = time.perf_counter() - started
    return report


def _change(target: targets.Target, mode: str, report: LoadReport) -> catalogue.LayerChange | None:
    """An append to an existing layer changes the catalogue (count, extent) and the tiles only where
    it added features; a replace or a new layer is counted afresh and invalidates every tile."""
    if mode != "append" or target.existing is None:
        return None
    return catalogue.LayerChange(added=report.loaded, bbox=tuple(report.bbox) if report.bbox else ())


def _layer_state(conn: Connection, name: str) -> dict:
    row = conn.execute(
        select(schema.layer.c.data_version, schema.layer.c.feature_count).where(schema.layer.c.name == name)
    ).one()
    return {"data_version": row[0], "feature_count": row[1]}


def _target(conn, layer, source, mode, mapping, can_write) -> targets.Target:
    target = targets.canonical_target(conn, layer)
    if target is not None:
        _check_writable(target.existing, can_write, layer)
        return target
    for canonical, entry in schema.CANONICAL_LAYERS.items():
        if entry[0].name == layer:
            raise InvalidInput(f"{layer!r} is the table of the canonical layer {canonical!r}; load into {canonical!r}")
    existing = targets.existing_generic(conn, layer)
    _check_writable(existing, can_write, layer)
    if existing is not None and mode == "append":
        return targets.append_generic_target(conn, existing)
    columns = targets.generic_columns(source.fields, source.ogr_types, mapping)
    gtype = targets.generic_geometry_type(source.geometry_type)
    return targets.new_generic_target(conn, layer, columns, gtype, existing)


def _check_writable(info, can_write, layer) -> None:
    if info is not None and can_write is not None and not can_write(info):
        raise NotFound(f"no layer named {layer!r}")


def _plan(target: targets.Target, source: VectorSource, mapping: dict[str, str] | None) -> MappingPlan:
    if target.source_columns is not None:  # a table made from this very file: one column per field
        mapping = target.source_columns
    return plan_mapping(source.fields, target.specs, mapping, target.name)


def _prepare_table(conn: Connection, target: targets.Target, mode: str, source: VectorSource,
                   threshold: int) -> None:
    if mode != "replace" or target.kind != "canonical":
        return
    big = source.feature_count is None or source.feature_count >= threshold
    targets.empty_table(conn, target.table, fast=big)
    if big:
        targets.drop_indexes(conn, target)


@contextmanager
def _database_errors(layer: str):
    """Map constraint and data errors (raw psycopg2 from COPY, or wrapped by SQLAlchemy) to 4xx."""
    try:
        yield
    except psycopg2.Error as exc:
        raise _database_error(exc, layer) from None
    except DBAPIError as exc:
        if isinstance(exc.orig, psycopg2.Error):
            mapped = _database_error(exc.orig, layer)
            if mapped is not exc.orig:
                raise mapped from None
        raise


def _database_error(exc: psycopg2.Error, layer: str) -> Exception:
    """Constraint and data errors of a load are bad input (4xx), not server errors."""
    diag = exc.diag
    message = (diag.message_primary or str(exc)).strip()
    if diag.message_detail:
        message += f" ({diag.message_detail.strip()})"
    code = exc.pgcode or ""
    if code == "23503":
        return RuleViolation(f"layer {layer!r}: {message}; other records refer to the current features, "
                             "so they cannot be replaced (use mode=append)")
    if code.startswith("23"):
        return RuleViolation(f"layer {layer!r}: {message}")
    if code.startswith("22"):
        return InvalidInput(f"layer {layer!r}: {message}")
    if code == "42P07":  # a table of that name exists but the catalogue does not know it
        return Conflict(f"layer {layer!r}: {message}; the table is not in the layer catalogue")
    return exc


# --- the producer side: batches -> COPY text ------------------------------------------------------

def _chunks(source: VectorSource, plan: MappingPlan, target: targets.Target, src_srid: int, policy: str,
            report: LoadReport, batch_size: int, progress: Progress | None) -> Iterator[bytes]:
    total = source.feature_count
    cpu0 = time.thread_time()
    for batch in iter_batches(source, batch_size):
        t0 = time.perf_counter()
        report.read += len(batch)
        text = prepare_batch(batch, plan, target.geometry_type, src_srid, policy, report)
        report.seconds["prepare"] = report.seconds.get("prepare", 0.0) + time.perf_counter() - t0
        report.seconds["read_prepare_cpu"] = time.thread_time() - cpu0
        if progress is not None:
            progress(report.read, total)
        if text:
            yield text


def prepare_batch(batch: FeatureBatch, plan: MappingPlan, target_type: str, src_srid: int, policy: str,
                  report: LoadReport) -> bytes:
    """COPY text of the storable features of a batch; rejections and repairs go into ``report``."""
    n = len(batch)
    geoms = shapely.from_wkb(batch.wkb, on_invalid="ignore")
    has_wkb = np.array([w is not None for w in batch.wkb], dtype=bool)
    unreadable = {int(i): "unreadable geometry" for i in np.flatnonzero(shapely.is_missing(geoms) & has_wkb)}
    geoms = reproject(geoms, src_srid, CITY_SRID)
    checked = check_geometries(geoms, target_type, policy, batch.fids)
    rejected = {**checked.rejected, **unreadable}
    columns = []
    for src, spec in plan.columns:
        text, bad = convert_column(batch.columns[src], spec)
        columns.append(text)
        for row, reason in bad.items():
            rejected.setdefault(row, reason)
    if plan.has_attributes and plan.extra_fields:
        columns.append(attributes_json(batch.columns, plan.extra_fields, n))
    if rejected and policy == "fail":
        row = min(rejected)
        raise InvalidInput(f"feature {int(batch.fids[row])}: {rejected[row]}",
                           details={"feature": int(batch.fids[row]), "reason": rejected[row]})
    for row, reason in checked.repaired.items():
        if row not in rejected:
            report.note(int(batch.fids[row]), "repaired", reason)
    for row in sorted(rejected):
        report.note(int(batch.fids[row]), "rejected", rejected[row])
    keep = np.ones(n, dtype=bool)
    keep[list(rejected)] = False
    if not keep.any():
        return b""
    mask = pa.array(keep)
    columns = [c.filter(mask) for c in columns]
    columns.append(ewkb_hex(checked.geoms[keep], target_type, CITY_SRID))
    report.loaded += int(keep.sum())
    report.extend_bbox(shapely.total_bounds(checked.geoms[keep]))
    return _lines(columns)


def _lines(columns: list[pa.Array]) -> bytes:
    """Tab-separated, newline-terminated rows of string columns, as one bytes object."""
    rows = pc.binary_join_element_wise(*columns, "\t") if len(columns) > 1 else columns[0]
    rows = pc.binary_join_element_wise(rows, pa.scalar("\n"), "")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[rows.offset: rows.offset + len(rows) + 1]
    return bytes(memoryview(rows.buffers()[2])[int(offsets[0]): int(offsets[-1])])
