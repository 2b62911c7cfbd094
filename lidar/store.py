"""Writing LiDAR results to PostGIS: the file index, the tile index, extracted buildings and their roofs.

A building's LoD2 roof model (``lidar.roofs.RoofModel``) is kept in ``building_roof`` as JSON
(``roof_record``): planes, groups, the 2D roof partition and the parts of a stepped roof, with
coordinates as exact floats, so that ``roof_model`` gives back a model from which
``lidar.cityjson`` rebuilds the same LoD2 Solid, BuildingParts and glTF triangles.

All functions take a SQLAlchemy connection and write in the caller's transaction, so a failure
leaves nothing half-registered (use ``engine.begin()``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import shapely
from geoalchemy2.elements import WKTElement
from geoalchemy2.shape import to_shape
from shapely import STRtree
from shapely.geometry import MultiPolygon, Polygon, box
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from gisserver.crs import CITY_SRID, crs_uri, transformer
from gisserver.errors import Conflict, NotFound
from gisserver.schema import building
from lidar.buildings import Building
from lidar.catalogue import footprint_in_city_crs
from lidar.io import DEFAULT_CHUNK_SIZE, FileSummary, summarize
from lidar.roofs import RoofModel, RoofParams, RoofPlane, fit_roof, roof_points
from lidar.tables import building_roof, lidar_file, lidar_tile
from lidar.tile_buildings import CadastralMeasure
from lidar.tiling import TiledRun, TileScheme


def index_file(conn: Connection, path, *, crs=None, vertical_datum: str | None = None,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Read a file once (chunked), validate it, and add it to ``lidar_file``; returns its id."""
    path = Path(path).resolve()
    check_not_indexed(conn, path)
    return insert_file(conn, path, summarize(path, crs=crs, vertical_datum=vertical_datum, chunk_size=chunk_size))


def check_not_indexed(conn: Connection, path) -> None:
    """Conflict (409) when the file is in the index already."""
    path = Path(path).resolve()
    if conn.execute(select(lidar_file.c.id).where(lidar_file.c.path == str(path))).scalar() is not None:
        raise Conflict(f"{path.name} is already indexed")


def insert_file(conn: Connection, path, s: FileSummary, *, name: str | None = None) -> int:
    """Add a validated file (its one-pass ``summarize``) to ``lidar_file``; returns its id.

    ``name`` is the name shown to users (an uploaded file keeps the name it was sent with).
    """
    path = Path(path).resolve()
    check_not_indexed(conn, path)
    footprint = footprint_in_city_crs(s.bounds, s.srid)
    row = {
        "path": str(path), "name": name or path.name, "file_size": s.file_size, "las_version": s.version,
        "point_format": s.point_format, "copc": s.copc, "point_count": s.point_count, "density": s.density,
        "classes": {str(k): v for k, v in s.classes.items()}, "z_min": s.z_range[0], "z_max": s.z_range[1],
        "source_srid": s.srid, "crs_name": s.crs_name, "crs_source": s.crs_source,
        "vertical_datum": s.vertical_datum,
        "acquisition_date": dt.date.fromisoformat(s.acquisition_date) if s.acquisition_date else None,
        "footprint": WKTElement(footprint.wkt, srid=CITY_SRID),
    }
    return int(conn.execute(insert(lidar_file).values(**row).returning(lidar_file.c.id)).scalar_one())


def _to_city(geom, srid: int):
    if srid == CITY_SRID:
        return geom
    t = transformer(srid, CITY_SRID)
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def record_tiles(conn: Connection, run: TiledRun, tile_size: float, *, job_id: int | None = None) -> int:
    """One ``lidar_tile`` row per processed tile of a run (tiles with core points)."""
    scheme = TileScheme(tile_size, 0.0)
    rows = []
    for t in run.tiles:
        if not t.points:
            continue
        geom = _to_city(box(*scheme.core_bounds(t.key)), run.srid)
        rows.append({"job_id": job_id, "tile_size": tile_size, "tile_x": t.key[0], "tile_y": t.key[1],
                     "status": "done", "point_count": t.points, "ground_count": t.ground,
                     "classes": {str(k): v for k, v in t.classes.items()},
                     "geom": WKTElement(geom.wkt, srid=CITY_SRID)})
    if rows:
        conn.execute(insert(lidar_tile), rows)
    return len(rows)


def store_buildings(conn: Connection, buildings: list[Building], *, srid: int,
                    lidar_date: dt.date | None = None) -> list[int]:
    """Insert extracted buildings into the canonical ``building`` table (source 'lidar').

    A building with a fitted roof (``building.roof``) gets its ``building_roof`` row too; roofs
    are stored only for buildings in the city CRS (the planes are not reprojected).
    """
    ids = []
    for b in buildings:
        geom = _to_city(b.footprint, srid)
        if isinstance(geom, Polygon):
            geom = MultiPolygon([geom])
        ids.append(int(conn.execute(
            insert(building).values(
                floors=b.floors, height=round(b.height, 3), ground_z=round(b.ground_p10, 3),
                roof_p50=round(b.roof_p50, 3), roof_p70=round(b.roof_p70, 3), roof_p90=round(b.roof_p90, 3),
                source="lidar", lidar_date=lidar_date,
                attributes={"point_count": b.point_count, "area_m2": round(b.area, 2)},
                geom=WKTElement(geom.wkt, srid=CITY_SRID),
            ).returning(building.c.id)
        ).scalar_one()))
        if b.roof is not None and srid == CITY_SRID:
            store_roof(conn, ids[-1], [b.roof], lidar_date=lidar_date)
    return ids


# --- roof models ------------------------------------------------------------------------------------


def _number(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)  # JSONB has no NaN


def _polygon_record(poly: Polygon) -> list:
    return [[list(xy) for xy in ring.coords] for ring in [poly.exterior, *poly.interiors]]


def _polygon(rings: list) -> Polygon:
    return Polygon([tuple(xy) for xy in rings[0]], [[tuple(xy) for xy in r] for r in rings[1:]])


def roof_record(model: RoofModel) -> dict:
    """A roof model as JSON (JSONB keeps the exact floats, so the partition's edges still match)."""
    return {
        "lod2": model.lod2, "reason": model.reason, "origin": list(model.origin), "form": model.form,
        "planes": [[p.a, p.b, p.c, p.support] for p in model.planes], "groups": model.groups,
        "faces": [[_polygon_record(f), k] for f, k in model.faces], "point_count": model.point_count,
        "explained": _number(model.explained), "plane_rmse": _number(model.plane_rmse),
        "surface_rmse": _number(model.surface_rmse), "surface_mae": _number(model.surface_mae),
        "parts": [{"polygon": _polygon_record(poly), "roof": roof_record(part)} for poly, part in model.parts],
    }


def roof_model(record: dict) -> RoofModel:
    """The :class:`RoofModel` of a ``roof_record``."""
    def number(key):
        value = record.get(key)
        return float("nan") if value is None else float(value)

    return RoofModel(
        lod2=bool(record["lod2"]), reason=record["reason"], origin=tuple(record["origin"]),
        planes=[RoofPlane(a, b, c, int(n)) for a, b, c, n in record["planes"]],
        groups=[list(g) for g in record["groups"]],
        faces=[(_polygon(rings), int(k)) for rings, k in record["faces"]],
        point_count=int(record["point_count"]), explained=number("explained"), plane_rmse=number("plane_rmse"),
        surface_rmse=number("surface_rmse"), surface_mae=number("surface_mae"),
        parts=[(_polygon(p["polygon"]), roof_model(p["roof"])) for p in record["parts"]], form=record["form"],
    )


def store_roof(conn: Connection, building_id: int, models: list[RoofModel], *,
               lidar_date: dt.date | None = None) -> None:
    """Insert or replace the roof of a building: one model per polygon of its MultiPolygon.

    The building is LoD2 when every polygon's roof is; otherwise the first failure is its status.
    """
    failed = [m for m in models if not m.lod2]
    types = {m.roof_type for m in models}
    values = {"lod2": not failed, "status": failed[0].reason if failed else "lod2",
              "roof_type": types.pop() if not failed and len(types) == 1 else None, "lidar_date": lidar_date,
              "model": {"polygons": [roof_record(m) for m in models]}}
    conn.execute(pg_insert(building_roof).values(building_id=building_id, **values).on_conflict_do_update(
        index_elements=[building_roof.c.building_id], set_={**values, "created_at": func.now()}))


def stored_roofs(record: dict | None) -> list[RoofModel] | None:
    """The roof models of a ``building_roof.model`` value (one per polygon); None without one."""
    if not record:
        return None
    return [roof_model(r) for r in record["polygons"]]


def _fit_polygon_roofs(polygons: list[Polygon], ground: float, x, y, z, classification,
                       params: RoofParams | None) -> list[RoofModel]:
    x, y, z = np.asarray(x), np.asarray(y), np.asarray(z)
    models = []
    for poly in polygons:
        idx = roof_points(poly, ground, x, y, z, classification, params)
        models.append(fit_roof(poly, ground, x[idx], y[idx], z[idx], params))
    return models


def update_cadastral_heights(conn: Connection, x, y, z, classification, dtm, grid, *,
                             lidar_date: dt.date | None = None, params=None, roofs: bool = True,
                             roof_params: RoofParams | None = None) -> int:
    """Heights for the cadastre's own footprints (preferred over extracted ones, DOMAIN §5).

    The cloud and ``grid`` are in the city CRS. Every ``building`` row with source 'cadastre'
    inside the grid gets ground p10, roof p50/p70/p90, height and floors; returns how many.
    With ``roofs`` each measured row also gets an LoD2 roof model per polygon (``building_roof``,
    replaced; a footprint without measured heights keeps the roof it had).
    """
    from lidar.buildings import building_heights

    envelope = func.ST_MakeEnvelope(*grid.bounds, CITY_SRID)
    rows = conn.execute(
        select(building.c.id, building.c.geom).where(building.c.source == "cadastre",
                                                     func.ST_Intersects(building.c.geom, envelope))
    ).all()
    done = 0
    for row in rows:
        shape_ = to_shape(row.geom)
        polygon = max(shape_.geoms, key=lambda g: g.area) if hasattr(shape_, "geoms") else shape_
        found = building_heights([polygon], x, y, z, classification, dtm, grid, params)
        if not found:
            continue
        b = found[0]
        conn.execute(update(building).where(building.c.id == row.id).values(
            floors=b.floors, height=round(b.height, 3), ground_z=round(b.ground_p10, 3),
            roof_p50=round(b.roof_p50, 3), roof_p70=round(b.roof_p70, 3), roof_p90=round(b.roof_p90, 3),
            lidar_date=lidar_date))
        if roofs and np.isfinite([b.ground_p10, b.roof_p70]).all():
            polygons = list(shape_.geoms) if hasattr(shape_, "geoms") else [shape_]
            store_roof(conn, row.id, _fit_polygon_roofs(polygons, b.ground_p10, x, y, z, classification, roof_params),
                       lidar_date=lidar_date)
        done += 1
    return done


def store_run_buildings(conn: Connection, detected: list[Building], x, y, z, classification, dtm, grid, *,
                        area, lidar_date: dt.date | None = None, min_overlap: float = 0.2) -> dict:
    """Buildings of a processed survey, cadastre first (DOMAIN §5), in the caller's transaction.

    The cloud and ``grid`` are in the city CRS; ``area`` (a shapely polygon in the city CRS) is
    the surveyed footprint. Cadastral footprints in the grid get their heights; a detected
    building that overlaps a cadastral one by more than ``min_overlap`` of its area is dropped;
    buildings an earlier survey detected inside ``area`` are replaced by this survey's.
    (A tiled run measures per tile and stores with ``store_tiled_buildings``.)
    """
    envelope = func.ST_MakeEnvelope(*grid.bounds, CITY_SRID)
    in_grid = (building.c.source == "cadastre", func.ST_Intersects(building.c.geom, envelope))
    before = {r.id: r for r in conn.execute(select(building.c.id, building.c.height, building.c.floors,
                                                   building.c.lidar_date).where(*in_grid))}
    cadastral = update_cadastral_heights(conn, x, y, z, classification, dtm, grid, lidar_date=lidar_date)
    # a footprint reaching past the surveyed cells has no ground there: it keeps what it had
    nan = func.cast("NaN", building.c.ground_z.type)
    unmeasured = conn.execute(select(building.c.id).where(
        *in_grid, (building.c.ground_z == nan) | (building.c.roof_p70 == nan))).scalars().all()
    for bid in unmeasured:
        old = before[bid]
        conn.execute(update(building).where(building.c.id == bid).values(
            ground_z=None, roof_p50=None, roof_p70=None, roof_p90=None, height=old.height, floors=old.floors,
            lidar_date=old.lidar_date))
    cadastral -= len(unmeasured)
    return {"cadastral_updated": cadastral,
            **_store_detected(conn, detected, grid.bounds, area, lidar_date=lidar_date, min_overlap=min_overlap)}


def cadastral_footprints(conn: Connection, bounds: tuple[float, float, float, float]) -> dict[int, MultiPolygon]:
    """The cadastre's footprints (``building`` rows with source 'cadastre') meeting ``bounds`` (city CRS)."""
    envelope = func.ST_MakeEnvelope(*bounds, CITY_SRID)
    rows = conn.execute(select(building.c.id, building.c.geom).where(
        building.c.source == "cadastre", func.ST_Intersects(building.c.geom, envelope)).order_by(building.c.id))
    return {int(r.id): to_shape(r.geom) for r in rows}


def store_tiled_buildings(conn: Connection, detected: list[Building], cadastral: dict[int, CadastralMeasure], *,
                          bounds: tuple[float, float, float, float], area, lidar_date: dt.date | None = None,
                          min_overlap: float = 0.2) -> dict:
    """``store_run_buildings`` for a tiled run (``lidar.tiling.run_tiled(buildings=...)``), whose tiles
    measured the cadastral footprints they own (``cadastral``: id -> heights and roofs).

    A footprint without finite heights (it reaches past the surveyed cells) or that no tile
    measured keeps what it had; the rest is the same as ``store_run_buildings``.
    """
    done = 0
    for fid, m in sorted(cadastral.items()):
        b = m.building
        if not np.isfinite([b.ground_p10, b.roof_p50, b.roof_p70, b.roof_p90]).all():
            continue
        changed = conn.execute(update(building).where(building.c.id == fid, building.c.source == "cadastre").values(
            floors=b.floors, height=round(b.height, 3), ground_z=round(b.ground_p10, 3),
            roof_p50=round(b.roof_p50, 3), roof_p70=round(b.roof_p70, 3), roof_p90=round(b.roof_p90, 3),
            lidar_date=lidar_date)).rowcount
        if not changed:  # removed from the cadastre while the survey ran
            continue
        if m.roofs is not None:
            store_roof(conn, fid, m.roofs, lidar_date=lidar_date)
        done += 1
    return {"cadastral_updated": done,
            **_store_detected(conn, detected, bounds, area, lidar_date=lidar_date, min_overlap=min_overlap)}


def _store_detected(conn: Connection, detected: list[Building], bounds, area, *, lidar_date, min_overlap) -> dict:
    """Detected buildings with heights, less those on a cadastral footprint, replacing the ones an
    earlier survey detected inside ``area`` (by a point on their surface: an outline at the edge of
    the survey reaches up to a few metres past its points, cell edges and regularisation)."""
    envelope = func.ST_MakeEnvelope(*bounds, CITY_SRID)
    detected = [b for b in detected if np.isfinite([b.ground_p10, b.roof_p50, b.roof_p70, b.roof_p90]).all()]
    footprints = [to_shape(g) for g in conn.execute(
        select(building.c.geom).where(building.c.source == "cadastre", func.ST_Intersects(building.c.geom, envelope))
    ).scalars()]
    kept = detected
    if footprints:
        tree = STRtree(footprints)
        kept = [b for b in detected
                if not any(footprints[i].intersection(b.footprint).area > min_overlap * b.area
                           for i in tree.query(b.footprint, predicate="intersects"))]
    replaced = conn.execute(delete(building).where(
        building.c.source == "lidar",
        func.ST_Within(func.ST_PointOnSurface(building.c.geom), func.ST_GeomFromText(area.wkt, CITY_SRID)),
    )).rowcount
    ids = store_buildings(conn, kept, srid=CITY_SRID, lidar_date=lidar_date)
    _buildings_changed(conn, [bounds, area.bounds, *(f.bounds for f in footprints)], len(ids), int(replaced))
    return {"detected": len(detected), "stored": ids, "dropped_as_cadastral": len(detected) - len(kept),
            "replaced": int(replaced)}


def _buildings_changed(conn: Connection, boxes: list, added: int, removed: int) -> None:
    """New data version of the buildings layer with the area the survey changed, so cached map
    tiles there (the 3D view's heights) are rebuilt when the transaction commits."""
    from gisserver.schema import layer
    from layers.catalogue import LayerChange, bump_version

    if conn.execute(select(layer.c.id).where(layer.c.name == "buildings")).first() is None:
        return  # no catalogue entry (a bare test database): nothing serves these tiles
    bbox = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    bump_version(conn, "buildings", LayerChange(added=added, removed=removed, bbox=bbox))


# --- listings (footprints as GeoJSON in CRS84) ------------------------------------------------------

_FILE_PROPERTIES = ("name", "file_size", "las_version", "point_format", "copc", "point_count", "density",
                    "classes", "z_min", "z_max", "source_srid", "crs_name", "crs_source", "vertical_datum",
                    "acquisition_date", "created_at")


def _feature(row, properties: tuple[str, ...]) -> dict:
    props = {}
    for name in properties:
        value = row._mapping[name]
        props[name] = value.isoformat() if isinstance(value, dt.date | dt.datetime) else value
    return {"type": "Feature", "id": row.id, "geometry": json.loads(row.geometry), "properties": props}


def _geojson_column(column):
    return func.ST_AsGeoJSON(func.ST_Transform(column, 4326), 8).label("geometry")


def list_files(conn: Connection, *, limit: int = 100, offset: int = 0) -> tuple[list[dict], int]:
    """Indexed files as GeoJSON features (footprint, counts, density, classes, z range, CRS, date)."""
    total = conn.execute(select(func.count()).select_from(lidar_file)).scalar_one()
    rows = conn.execute(
        select(lidar_file.c.id, *[lidar_file.c[n] for n in _FILE_PROPERTIES], _geojson_column(lidar_file.c.footprint))
        .order_by(lidar_file.c.id).limit(limit).offset(offset)
    ).all()
    return [_file_feature(r) for r in rows], int(total)


def get_file(conn: Connection, file_id: int) -> dict:
    row = conn.execute(
        select(lidar_file.c.id, *[lidar_file.c[n] for n in _FILE_PROPERTIES], _geojson_column(lidar_file.c.footprint))
        .where(lidar_file.c.id == file_id)
    ).first()
    if row is None:
        raise NotFound(f"no LiDAR file {file_id}")
    return _file_feature(row)


def _file_feature(row) -> dict:
    feature = _feature(row, _FILE_PROPERTIES)
    props = feature["properties"]
    props["classes"] = {k: int(v) for k, v in sorted(props["classes"].items(), key=lambda kv: int(kv[0]))}
    props["z_range"] = [props.pop("z_min"), props.pop("z_max")]
    props["crs"] = crs_uri(props.pop("source_srid"))
    return feature


_TILE_PROPERTIES = ("job_id", "tile_size", "tile_x", "tile_y", "status", "point_count", "ground_count", "classes",
                    "error", "created_at")


def list_tiles(conn: Connection, *, job_id: int | None = None, limit: int = 1000,
               offset: int = 0) -> tuple[list[dict], int]:
    """Processed tiles (all, or one job's) as GeoJSON features with counts, classes and status."""
    where = [] if job_id is None else [lidar_tile.c.job_id == job_id]
    total = conn.execute(select(func.count()).select_from(lidar_tile).where(*where)).scalar_one()
    rows = conn.execute(
        select(lidar_tile.c.id, *[lidar_tile.c[n] for n in _TILE_PROPERTIES], _geojson_column(lidar_tile.c.geom))
        .where(*where).order_by(lidar_tile.c.id).limit(limit).offset(offset)
    ).all()
    return [_feature(r, _TILE_PROPERTIES) for r in rows], int(total)
