"""Deterministic demo neighbourhood inside a real HCMC district (Quận 8 by default).

There is no open cadastral data for Ho Chi Minh City, so the demo is generated: a 1 km x 1 km
area of the real district boundary with a canal, a road grid with right-of-way widths and red
lines, blocks cut into parcels (ward, map sheet, parcel number, land-use code), buildings,
drainage and water pipes, 22 kV and 110 kV power lines, telecom ducts, trees, a park, an
underground car park and zoning zones with their regulations, all in the city CRS.

The same terrain function (:func:`terrain_height`) is what a synthetic LiDAR cloud of the area
uses, so LiDAR -> DTM -> flood runs on one coherent place. Same seed, same data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Point, Polygon, box

from gisserver.crs import CITY_SRID, transformer

DISTRICTS_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "vector" / "hcmc_districts_2021.geojson"
DEFAULT_DISTRICT = "Quận 8"
SIZE = 1000.0  # metres, side of the demo square

# wards of the demo area (code, name): the square is cut into three wards west to east
WARDS = (("27430", "Phường 4"), ("27433", "Phường 5"), ("27436", "Phường 6"))
SHEET_SIZE = 250.0  # map sheet (tờ bản đồ) grid, metres


@dataclass
class DemoData:
    """Features per canonical table: lists of dicts with a shapely ``geom`` in the city CRS."""

    origin: tuple[float, float]
    district: str
    tables: dict[str, list[dict]] = field(default_factory=dict)

    def count(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.tables.items()}


def load_district(name: str = DEFAULT_DISTRICT, path: Path = DISTRICTS_FILE):
    """The district boundary in the city CRS (shapely geometry)."""
    import warnings

    import pyogrio

    with warnings.catch_warnings():
        # the source GeoJSON repeats one feature id; GDAL renumbers it and says so
        warnings.filterwarnings("ignore", message="Several features with id", category=RuntimeWarning)
        df = pyogrio.read_dataframe(path, columns=["localname"])
    match = df[df["localname"] == name]
    if match.empty:
        raise ValueError(f"district {name!r} not in {path.name}")
    to_city = transformer(4326, CITY_SRID)
    return shapely.transform(match.geometry.iloc[0], lambda xy: np.column_stack(to_city.transform(xy[:, 0], xy[:, 1])))


def choose_origin(district) -> tuple[float, float]:
    """South-west corner of a SIZE x SIZE square inside the district, nearest its centroid."""
    cx, cy = district.centroid.x, district.centroid.y
    for radius in range(0, 3000, 100):
        for angle in range(0, 360, 30):
            x0 = round(cx + radius * math.cos(math.radians(angle)) - SIZE / 2, -1)
            y0 = round(cy + radius * math.sin(math.radians(angle)) - SIZE / 2, -1)
            if district.contains(box(x0, y0, x0 + SIZE, y0 + SIZE)):
                return x0, y0
    raise ValueError("no square of the demo size fits inside the district")


def terrain_height(x: np.ndarray, y: np.ndarray, origin: tuple[float, float]) -> np.ndarray:
    """Ground height (m, Hòn Dấu datum) of the demo area: 0-2.5 m, falling towards the canal."""
    u = (np.asarray(x) - origin[0]) / SIZE
    v = (np.asarray(y) - origin[1]) / SIZE
    canal_v = _canal_centre_v(u)
    dist = np.abs(v - canal_v) * SIZE
    base = 0.6 + 1.6 * np.clip(dist / 350.0, 0, 1) + 0.3 * np.sin(5.1 * u) * np.cos(3.7 * v)
    ground = np.clip(base, 0.0, 2.5)
    # canal (15 m half-width, measured across; 17 m vertically on its steepest bends): bed -2.2 m
    bed = -2.2 + 1.5 * (dist / 17.0) ** 2
    return np.where(dist < 17.0, bed, ground)


def _canal_centre_v(u):
    return 0.42 + 0.05 * np.sin(2 * math.pi * u * 1.3)


def generate(seed: int = 2026, district_name: str = DEFAULT_DISTRICT) -> DemoData:
    rng = np.random.default_rng(seed)
    district = load_district(district_name)
    ox, oy = choose_origin(district)
    data = DemoData(origin=(ox, oy), district=district_name)

    canal_line = LineString(
        [(ox + u * SIZE, oy + float(_canal_centre_v(u)) * SIZE) for u in np.linspace(-0.02, 1.02, 80)]
    )
    canal = canal_line.buffer(15.0, cap_style="flat")
    embankment = canal_line.buffer(27.0, cap_style="flat")
    data.tables["water_body"] = [
        {"name": "Kênh Đôi (demo)", "kind": "canal", "bed_level": -2.2, "geom": MultiPolygon([canal])}
    ]

    roads = _roads(ox, oy)
    data.tables["road"] = [{k: v for k, v in r.items() if k != "half"} for r in roads]
    data.tables["red_line"] = _red_lines(roads)
    road_space = shapely.union_all([r["geom"].buffer(r["row_width"] / 2, cap_style="flat") for r in roads])
    road_space = road_space.union(embankment)

    zones = _zones(ox, oy)
    data.tables["zoning_zone"] = zones
    park = _multi(box(ox + 620, oy + 700, ox + 760, oy + 800).difference(road_space))
    parcels, buildings = _parcels_and_buildings(rng, ox, oy, road_space.union(park), zones)
    _add_parcel(park, rng, ox, oy, zones, None, parcels, buildings, land_use="DKV")
    data.tables["parcel"] = parcels
    data.tables["building"] = buildings
    data.tables["ward"] = _wards(ox, oy, parcels, district_name)
    data.tables["drainage"] = _pipes(roads, canal_line, rng, kind="drainage")
    data.tables["water_supply"] = _pipes(roads, canal_line, rng, kind="water")
    data.tables["power_line"] = _power_lines(ox, oy)
    data.tables["telecom"] = [
        {"kind": "fibre duct", "operator": "VNPT", "placement": "underground",
         "geom": MultiLineString([_offset(r["geom"].geoms[0], r["row_width"] / 2 - 1.5)])}
        for r in roads if r["row_width"] >= 16
    ]
    data.tables["tree"] = _trees(roads, rng)
    data.tables["park"] = [{"name": "Công viên khu phố (demo)", "kind": "park", "geom": _multi(park)}]
    data.tables["underground_work"] = [
        {"name": "Hầm đỗ xe (demo)", "kind": "car park", "depth_top": -1.0, "depth_bottom": -7.5,
         "geom": MultiPolygon([box(ox + 300, oy + 720, ox + 360, oy + 780)])}
    ]
    return data


def _wards(ox: float, oy: float, parcels: list[dict], district_name: str) -> list[dict]:
    """Ward areas that partition the square: each ward's parcels (numbered in the ward of their
    centroid) plus the unparcelled space (roads, canal) of its west-to-east strip."""
    parcelled = shapely.union_all([p["geom"] for p in parcels])
    out = []
    for i, (code, name) in enumerate(WARDS):
        strip = box(ox + i * SIZE / 3, oy, ox + (i + 1) * SIZE / 3, oy + SIZE)
        own = shapely.union_all([p["geom"] for p in parcels if p["ward_code"] == code])
        area = strip.difference(parcelled).union(own)
        out.append({"code": code, "name": name, "district": district_name, "geom": _multi(area)})
    return out


def _offset(line: LineString, distance: float) -> LineString:
    off = line.offset_curve(distance)
    return off if isinstance(off, LineString) else max(off.geoms, key=lambda g: g.length)


def _multi(geom):
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    if isinstance(geom, MultiPolygon):
        return geom
    polys = [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]
    return MultiPolygon(polys)


def _roads(ox: float, oy: float) -> list[dict]:
    """Main avenue, district roads, local streets and alleys with their right-of-way widths."""
    specs = []
    # north-south
    for i, x in enumerate((0.0, 200.0, 400.0, 600.0, 800.0, 1000.0)):
        width = 30.0 if x == 400.0 else (20.0 if x in (0.0, 800.0) else 12.0)
        name = "Đại lộ Võ Văn Kiệt (demo)" if x == 400.0 else f"Đường số {i + 1}"
        specs.append((name, width, [(ox + x, oy), (ox + x, oy + SIZE)]))
    # east-west
    for j, y in enumerate((0.0, 250.0, 560.0, 780.0, 1000.0)):
        width = 25.0 if y == 560.0 else (16.0 if y in (0.0, 1000.0) else 7.0)
        specs.append((f"Đường Phạm Thế Hiển {j + 1} (demo)" if width >= 16 else f"Hẻm {j + 1}",
                      width, [(ox, oy + y), (ox + SIZE, oy + y)]))
    roads = []
    for name, width, coords in specs:
        cls = "arterial" if width >= 25 else "collector" if width >= 16 else "local" if width >= 12 else "alley"
        roads.append({
            "name": name, "road_class": cls, "row_width": width,
            "carriageway_width": max(3.0, width - 8.0) if width > 8 else width - 1.0,
            "surface": "asphalt", "geom": MultiLineString([LineString(coords)]), "half": width / 2,
        })
    return roads


def _red_lines(roads: list[dict]) -> list[dict]:
    rows = []
    for idx, r in enumerate(roads, start=1):
        line = r["geom"].geoms[0]
        rows.append({"road_ref": idx, "decision": "QĐ 6013/QĐ-UBND (demo)",
                     "geom": MultiLineString([_offset(line, r["half"]), _offset(line, -r["half"])])})
    return rows


def _zones(ox: float, oy: float) -> list[dict]:
    def z(code, name, land_use, rect, density, far, floors, height, setback, sub_zone):
        x0, y0, x1, y1 = rect
        return {
            "zone_code": code, "name": name, "land_use": land_use,
            "max_density": density, "max_far": far, "max_floors": floors, "max_height": height,
            "min_setback": setback, "min_ground_elevation": 2.0, "subdivision_zone": sub_zone,
            "plan_decision": "QH phân khu 1/2000 Quận 8 (demo)",
            "geom": MultiPolygon([box(ox + x0, oy + y0, ox + x1, oy + y1)]),
        }

    return [
        z("R1", "Nhà ở hiện hữu cải tạo", "ODT", (0, 0, 400, 560), 0.8, 5.0, 5, 21.0, 0.0, 2),
        z("R2", "Nhà ở hiện hữu cải tạo", "ODT", (400, 0, 1000, 560), 0.8, 5.0, 5, 21.0, 0.0, 2),
        z("MU", "Hỗn hợp thương mại dịch vụ", "TMD", (0, 560, 600, 1000), 0.7, 7.0, 9, 36.0, 3.0, 2),
        z("PG", "Công cộng và cây xanh", "DKV", (600, 560, 1000, 1000), 0.4, 2.0, 3, 15.0, 6.0, 2),
    ]


def _land_use_for(zone_code: str, rng) -> str:
    r = rng.random()
    if zone_code == "MU":
        return "TMD" if r < 0.45 else "ODT"
    if zone_code == "PG":
        return "DGD" if r < 0.3 else "DYT" if r < 0.4 else "DKV" if r < 0.6 else "ODT"
    return "ODT" if r < 0.9 else ("SKC" if r < 0.95 else "CLN")


def _zone_of(point: Point, zones: list[dict]) -> dict:
    for zone in zones:
        if zone["geom"].contains(point):
            return zone
    return zones[0]


def _parcels_and_buildings(rng, ox, oy, road_space, zones):
    parcels, buildings = [], []
    counters: dict[tuple[str, int], int] = {}
    xs = (0.0, 200.0, 400.0, 600.0, 800.0, 1000.0)
    ys = (0.0, 125.0, 250.0, 405.0, 560.0, 670.0, 780.0, 890.0, 1000.0)
    for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
        for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
            block = box(ox + x0, oy + y0, ox + x1, oy + y1).difference(road_space)
            for part in getattr(block, "geoms", [block]):
                if part.area < 400:
                    continue
                for lot in _cut_block(part, rng):
                    _add_parcel(lot, rng, ox, oy, zones, counters, parcels, buildings)
    return parcels, buildings


def _cut_block(block: Polygon, rng) -> list[Polygon]:
    """Rows of lots about 22 m deep along the block's long side; frontage 4-9 m (tube houses)."""
    minx, miny, maxx, maxy = block.bounds
    lots = []
    horizontal = (maxx - minx) >= (maxy - miny)
    length = (maxx - minx) if horizontal else (maxy - miny)
    depth_total = (maxy - miny) if horizontal else (maxx - minx)
    n_rows = max(2, round(depth_total / 22.0))
    row_depth = depth_total / n_rows
    for row in range(n_rows):
        pos = 0.0
        while pos < length - 3.0:
            width = float(rng.choice([4.0, 4.0, 4.5, 5.0, 5.0, 6.0, 8.0]))
            if rng.random() < 0.03:
                width *= 4  # an occasional large lot (school, shop, workshop)
            end = min(length, pos + width)
            if length - end < 3.5:
                end = length
            a, b = row * row_depth, (row + 1) * row_depth
            if horizontal:
                cell = box(minx + pos, miny + a, minx + end, miny + b)
            else:
                cell = box(minx + a, miny + pos, minx + b, miny + end)
            lot = cell.intersection(block)
            if lot.area >= 20:
                lots.extend(g for g in getattr(lot, "geoms", [lot]) if isinstance(g, Polygon) and g.area >= 20)
            pos = end
    return lots


def _add_parcel(lot, rng, ox, oy, zones, counters, parcels, buildings, land_use=None):
    c = lot.representative_point()
    ward_idx = min(2, int((c.x - ox) / (SIZE / 3)))
    ward_code = WARDS[ward_idx][0]
    sheet_no = 1 + int((c.y - oy) // SHEET_SIZE) * 4 + int((c.x - ox) // SHEET_SIZE)
    key = (ward_code, sheet_no)
    if counters is None:  # a lot added after the grid: next free number on its sheet
        parcel_no = 1 + max((p["parcel_no"] for p in parcels if (p["ward_code"], p["sheet_no"]) == key), default=0)
    else:
        counters[key] = parcel_no = counters.get(key, 0) + 1
    zone = _zone_of(c, zones)
    land_use = land_use or _land_use_for(zone["zone_code"], rng)
    street_no = 2 * len(parcels) % 400 + 1
    parcel = {
        "ward_code": ward_code, "sheet_no": sheet_no, "parcel_no": parcel_no,
        "legal_area": round(lot.area + float(rng.normal(0, 0.5)), 1),
        "address": f"{street_no} Đường số {ward_idx + 1}, {WARDS[ward_idx][1]}, Quận 8",
        "land_use": land_use, "owner_name": f"Chủ sử dụng {len(parcels) + 1:05d}",
        "geom": _multi(shapely.set_precision(lot, 0.01)),
        "ref": len(parcels),
    }
    parcels.append(parcel)
    if land_use in ("DKV", "CLN") or rng.random() < 0.08:
        return  # vacant lot or garden
    footprint = lot.buffer(-float(rng.uniform(0.0, 1.2)), join_style="mitre")
    if footprint.is_empty or footprint.area < 15:
        return
    footprint = max(getattr(footprint, "geoms", [footprint]), key=lambda g: g.area)
    floors = int(rng.choice([1, 2, 2, 3, 3, 3, 4, 4, 5, 6])) + (3 if land_use == "TMD" and rng.random() < 0.3 else 0)
    height = round(floors * 3.6 + 0.6, 1)
    buildings.append({
        "parcel_ref": parcel["ref"], "floors": floors, "height": height,
        "source": "cadastre", "geom": MultiPolygon([shapely.set_precision(footprint, 0.01)]),
    })


def _pipes(roads, canal_line, rng, kind):
    rows = []
    for r in roads:
        line = r["geom"].geoms[0]
        side = 1.0 if kind == "drainage" else -1.0
        pipe = _offset(line, side * min(r["half"] - 1.0, 4.0))
        if kind == "drainage":
            diameter = 1500 if r["row_width"] >= 25 else 800 if r["row_width"] >= 16 else 400
            rows.append({"kind": "gravity sewer", "diameter_mm": diameter, "material": "BTCT",
                         "invert_up": -0.5, "invert_down": -1.6 if pipe.intersects(canal_line) else -1.0,
                         "geom": MultiLineString([pipe])})
        else:
            diameter = 600 if r["row_width"] >= 25 else 200 if r["row_width"] >= 16 else 110
            rows.append({"diameter_mm": diameter, "material": "HDPE", "pressure_class": "PN10",
                         "geom": MultiLineString([pipe])})
    return rows


def _power_lines(ox, oy):
    return [
        {"name": "Đường dây 110 kV Phú Định - Chánh Hưng (demo)", "voltage_kv": 110.0, "conductor": "bare",
         "placement": "overhead",
         "geom": MultiLineString([LineString([(ox - 20, oy + 130), (ox + 480, oy + 320), (ox + 1020, oy + 960)])])},
        {"name": "Tuyến 22 kV Đại lộ (demo)", "voltage_kv": 22.0, "conductor": "covered", "placement": "overhead",
         "geom": MultiLineString([LineString([(ox + 388, oy), (ox + 388, oy + SIZE)])])},
        {"name": "Tuyến 22 kV Phạm Thế Hiển (demo)", "voltage_kv": 22.0, "conductor": "bare",
         "placement": "overhead",
         "geom": MultiLineString([LineString([(ox, oy + 571), (ox + SIZE, oy + 571)])])},
    ]


def _trees(roads, rng):
    species = ("Dầu rái", "Sao đen", "Me tây", "Bằng lăng", "Phượng vĩ")
    rows = []
    for r in roads:
        if r["row_width"] < 16:
            continue
        line = _offset(r["geom"].geoms[0], r["half"] - 2.0)
        for d in np.arange(5.0, line.length, 12.0):
            rows.append({"species": str(rng.choice(species)), "height": round(float(rng.uniform(6, 22)), 1),
                         "crown_diameter": round(float(rng.uniform(3, 10)), 1),
                         "geom": line.interpolate(float(d))})
    return rows


# --- loading ----------------------------------------------------------------------------------

DEMO_LAYERS = {
    "water_body": "water_bodies", "road": "roads", "red_line": "red_lines", "zoning_zone": "zoning",
    "parcel": "parcels", "building": "buildings", "drainage": "drainage", "water_supply": "water_supply",
    "power_line": "power_lines", "telecom": "telecom", "tree": "trees", "park": "parks",
    "underground_work": "underground_works",
}


def load(engine, data: DemoData, actor: str = "demo-loader") -> dict[str, int]:
    """Replace the canonical tables' content with the demo data, in one transaction."""
    from geoalchemy2.shape import from_shape
    from sqlalchemy import delete, insert

    from gisserver import audit, schema
    from layers.catalogue import bump_version, sync_canonical_layers

    def rows_for(table_name, rows, drop=("ref", "parcel_ref", "road_ref")):
        return [
            {**{k: v for k, v in r.items() if k not in drop}, "geom": from_shape(r["geom"], srid=CITY_SRID)}
            for r in rows
        ]

    with engine.begin() as conn:
        sync_canonical_layers(conn)
        for table_name in reversed(list(DEMO_LAYERS)):
            conn.execute(delete(schema.metadata.tables[table_name]))
        ids: dict[str, list[int]] = {}
        for table_name in DEMO_LAYERS:
            table = schema.metadata.tables[table_name]
            rows = rows_for(table_name, data.tables.get(table_name, []))
            if table_name == "red_line":
                for row, src in zip(rows, data.tables["red_line"], strict=True):
                    row["road_id"] = ids["road"][src["road_ref"] - 1]
            if table_name == "building":
                for row, src in zip(rows, data.tables["building"], strict=True):
                    row["parcel_id"] = ids["parcel"][src["parcel_ref"]]
            if not rows:
                continue
            result = conn.execute(
                insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
            )
            ids[table_name] = [r[0] for r in result]
        for layer_name in DEMO_LAYERS.values():
            bump_version(conn, layer_name)
        counts = data.count()
        audit.record(conn, actor=actor, action="demo.load", target_type="dataset", target_id="demo",
                     after={"district": data.district, "origin": list(data.origin), "counts": counts})
    if data.tables.get("ward"):
        load_wards(engine, data.tables["ward"], actor)
    return counts


WARD_LAYER = "wards"


def load_wards(engine, wards: list[dict], actor: str) -> None:
    """The demo wards as the public generic layer ``wards`` (code, name, district), through the
    ordinary vector ingest (GeoJSON in CRS84; ingest brings it back to the city CRS)."""
    import json
    import tempfile

    from shapely.geometry import mapping

    from layers.ingest import load_layer

    to_wgs84 = transformer(CITY_SRID, 4326)

    def lonlat(xy):
        return np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1]))

    features = [
        {"type": "Feature", "properties": {k: v for k, v in w.items() if k != "geom"},
         "geometry": mapping(shapely.transform(w["geom"], lonlat))}
        for w in wards
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wards.geojson"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False),
                        encoding="utf-8")
        load_layer(engine, path, WARD_LAYER, actor=actor, title="Wards (demo)", access_level="public")
