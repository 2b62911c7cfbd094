"""House numbering (cấp số nhà): numbers from the chainage of each building's access point along a street.

Conventions (HCMC practice; keep checking against the city's regulation on house numbering, verify):

- A street is a centreline digitised from its start (the end towards the city centre / the
  beginning of the street); its first vertex is the start point.
- Walking away from the start, **odd numbers are on the left, even numbers on the right** (a
  street may store the opposite, ``odd_side='right'``, where an old numbering does so).
- The **access point** of a building is the middle of the part of its footprint nearest to the
  street (or a point given by the officer); its **chainage** is the distance along the centreline
  from the start to the foot of the perpendicular (shapely ``project``).
- **First numbering is proportional to chainage**: one number per ``metres_per_number`` of
  frontage (default 4 m, a typical town-house frontage): the slot is ``k = floor(chainage / m)``,
  number ``2k + 1`` on the odd side and ``2k + 2`` on the even side. Two houses in the same slot
  take consecutive numbers of their side (numbers always grow with chainage), and the gaps left
  by vacant frontage are kept for later houses.
- **Later houses never move existing numbers**: a house between two numbered neighbours on its
  side takes its proportional number if it lies strictly between theirs, else any free number
  between them, else a **sub-number**: the lower neighbour's number with the next letter
  (12A, 12B ... between 12 and 14). When no label fits (between 12 and 12A, before number 1)
  the numbering is refused (RuleViolation); only an explicit, audited renumbering may change it.
- **Alleys** (hẻm) are streets off a parent street; they take the label of the numbered house
  nearest to their mouth on the same side (e.g. alley 12), and their houses are numbered with the
  same rules along the alley, labelled ``12/7``, ``12/8``; alleys of alleys nest (``12/7/1``).
- Numbers are records: the database refuses edits of a number (trigger of migration 0006); a
  renumbering retires the old number (``replaced_by_id``) and inserts the new one, audited.
  Number certificates are recorded with their dossier.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime

from shapely.geometry import LineString, MultiLineString, Point
from shapely.ops import linemerge, nearest_points
from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.engine import Connection

from gisserver import audit, schema
from gisserver.errors import Conflict, InvalidInput, NotFound, RuleViolation
from licensing import tables as lt
from licensing.allocation import is_id
from licensing.geometry import from_wkb, to_db, to_geojson
from licensing.records_tables import SIDES, house_number, house_number_certificate, street

S, H, C, B = street, house_number, house_number_certificate, schema.building
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEFAULT_METRES_PER_NUMBER = 4.0
DEFAULT_MAX_DISTANCE = 30.0
_LABEL_RE = re.compile(r"^(?:(?P<prefix>.+)/)?(?P<number>[1-9][0-9]{0,5})(?P<suffix>[A-Z]?)$")


# --- labels and stations: pure functions ------------------------------------------------------------

@dataclass(frozen=True)
class Label:
    prefix: str | None
    number: int
    suffix: str = ""

    def __str__(self) -> str:
        core = f"{self.number}{self.suffix}"
        return f"{self.prefix}/{core}" if self.prefix else core

    @property
    def key(self) -> tuple[int, str]:
        """Order of labels along a side: 12 < 12A < 12B < 14."""
        return self.number, self.suffix


def parse_label(text: str) -> Label:
    if not isinstance(text, str):
        raise InvalidInput("a house number label is text such as 12, 12A or 12/3")
    m = _LABEL_RE.match(text.strip().upper())
    if m is None:
        raise InvalidInput(f"{text!r} is not a house number (e.g. 12, 12A, 12/3, 12/3B)")
    return Label(m.group("prefix"), int(m.group("number")), m.group("suffix"))


@dataclass(frozen=True)
class Station:
    chainage: float
    offset: float  # signed distance from the centreline, positive on the left

    @property
    def side(self) -> str:
        return "left" if self.offset > 0 else "right"


def station(line: LineString, point: Point) -> Station:
    """Chainage of ``point`` along ``line`` (from its first vertex) and its signed lateral offset."""
    s = line.project(point)
    foot = line.interpolate(s)
    a, b = line.interpolate(max(s - 0.5, 0.0)), line.interpolate(min(s + 0.5, line.length))
    cross = (b.x - a.x) * (point.y - foot.y) - (b.y - a.y) * (point.x - foot.x)
    distance = point.distance(foot)
    if distance < 0.01:
        raise RuleViolation("the access point lies on the street centreline: its side is undefined",
                            details={"geometry": to_geojson(point)})
    return Station(s, math.copysign(distance, cross))


def access_point(footprint, line: LineString) -> Point:
    """The middle of the part of the footprint's outline nearest to the street."""
    d = footprint.distance(line)
    near = footprint.boundary.intersection(line.buffer(d + 0.05, quad_segs=4))
    if near.is_empty:
        return nearest_points(footprint, line)[0]
    return nearest_points(footprint.boundary, near.centroid)[0]


def is_odd_side(side: str, odd_side: str) -> bool:
    return side == odd_side


def proportional_number(chainage: float, metres_per_number: float, odd: bool) -> int:
    k = int(chainage // metres_per_number)
    return 2 * k + 1 if odd else 2 * k + 2


def first_numbers(chainages: list[float], metres_per_number: float, odd: bool) -> list[int]:
    """Numbers of one side of a street numbered for the first time (input in any order)."""
    order = sorted(range(len(chainages)), key=lambda i: chainages[i])
    out = [0] * len(chainages)
    last = -1 if odd else 0
    for i in order:
        n = max(proportional_number(chainages[i], metres_per_number, odd), last + 2)
        out[i] = last = n
    return out


def insertion_label(existing: list[tuple[float, Label]], chainage: float, metres_per_number: float, odd: bool,
                    prefix: str | None = None, taken: frozenset[str] = frozenset()) -> Label:
    """The label of a new house at ``chainage`` among the ``existing`` (chainage, label) of its side.

    Existing labels are never changed; ``taken`` are labels that must not be reused (retired ones).
    """
    ordered = sorted(existing, key=lambda e: (e[0], e[1].key))
    before = [e for e in ordered if e[0] <= chainage]
    after = [e for e in ordered if e[0] > chainage]
    prev = before[-1][1] if before else None
    nxt = after[0][1] if after else None
    lower = prev.number if prev else (-1 if odd else 0)
    upper = nxt.number if nxt else math.inf
    n = proportional_number(chainage, metres_per_number, odd)
    candidates = [n] if lower < n < upper else []
    if n >= upper:
        candidates += list(range(upper - 2, lower, -2))
    else:
        candidates += list(range(lower + 2, min(upper, lower + 200), 2))
    for c in candidates:
        if lower < c < upper and str(Label(prefix, c)) not in taken:
            return Label(prefix, c)
    if prev is None:
        raise RuleViolation(f"no free number before {nxt} on this side; renumber explicitly",
                            details={"next": str(nxt)})
    start = LETTERS.index(prev.suffix) + 1 if prev.suffix else 0
    for letter in LETTERS[start:]:
        label = Label(prefix, prev.number, letter)
        if nxt is not None and nxt.number == prev.number and letter >= nxt.suffix:
            break
        if str(label) not in taken:
            return label
    raise RuleViolation(f"no free number between {prev} and {nxt}; renumber explicitly",
                        details={"previous": str(prev), "next": str(nxt) if nxt else None})


# --- streets ------------------------------------------------------------------------------------------

def _street_row(conn: Connection, street_id: int, *, lock: bool = False) -> dict:
    stmt = select(*[c for c in S.c if c.name != "geom"], func.ST_AsBinary(S.c.geom).label("wkb")).where(
        S.c.id == street_id)
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFound(f"no street {street_id}")
    out = dict(row)
    out["geom"] = from_wkb(out.pop("wkb"))
    return out


def street_dict(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k != "geom"}
    out["created_at"] = out["created_at"].isoformat() if out.get("created_at") else None
    out["length"] = round(row["geom"].length, 3)
    out["geometry"] = to_geojson(row["geom"])
    return out


def get_street(conn: Connection, street_id: int) -> dict:
    return street_dict(_street_row(conn, street_id))


def _check_centreline(geom) -> LineString:
    if isinstance(geom, MultiLineString):
        geom = linemerge(geom)
    if not isinstance(geom, LineString):
        raise InvalidInput("a street centreline must be one continuous LineString")
    if not geom.is_simple or geom.length < 1.0:
        raise InvalidInput("a street centreline must be simple (no self-crossing) and at least 1 m long")
    return geom


def create_street(conn: Connection, actor: str, *, name: str, geom, ward_code: str | None = None,
                  odd_side: str = "left", metres_per_number: float = DEFAULT_METRES_PER_NUMBER,
                  road_id: int | None = None, parent_street_id: int | None = None,
                  prefix: str | None = None) -> dict:
    """A street (or alley) from a centreline digitised from its start point."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInput("a street needs a name (at most 200 characters)")
    if odd_side not in SIDES:
        raise InvalidInput("odd_side must be left or right")
    if not isinstance(metres_per_number, int | float) or not 0.5 <= metres_per_number <= 100:
        raise InvalidInput("metres_per_number must be between 0.5 and 100")
    line = _check_centreline(geom)
    row = conn.execute(
        insert(S).values(name=name.strip(), ward_code=ward_code, odd_side=odd_side,
                         metres_per_number=float(metres_per_number), road_id=road_id,
                         parent_street_id=parent_street_id, prefix=prefix, created_by=actor,
                         geom=to_db(line, multi=False))
        .returning(S.c.id)
    ).scalar_one()
    out = get_street(conn, row)
    audit.record(conn, actor=actor, action="street.create", target_type="street", target_id=row,
                 after={k: v for k, v in out.items() if k != "geometry"})
    return out


def street_from_road(conn: Connection, actor: str, road_id: int, *, start=None, name: str | None = None,
                     **options) -> dict:
    """A street from a road centreline of the ``road`` table, oriented from the end nearest ``start``."""
    R = schema.road
    row = conn.execute(select(R.c.name, R.c.geom.ST_AsBinary().label("wkb")).where(R.c.id == road_id)).first()
    if row is None:
        raise NotFound(f"no road {road_id}")
    line = _check_centreline(from_wkb(row.wkb))
    if start is not None:
        first, last = Point(line.coords[0]), Point(line.coords[-1])
        if start.distance(last) < start.distance(first):
            line = LineString(list(line.coords)[::-1])
    street_name = name or row.name
    if not street_name:
        raise InvalidInput("the road has no name: give the street a name")
    return create_street(conn, actor, name=street_name, geom=line, road_id=road_id, **options)


def create_alley(conn: Connection, actor: str, parent_street_id: int, geom, *, off_label: str | None = None,
                 name: str | None = None, metres_per_number: float | None = None) -> dict:
    """An alley off a numbered street, labelled after the house at its mouth (or ``off_label``)."""
    parent = _street_row(conn, parent_street_id)
    line = _check_centreline(geom)
    first, last = Point(line.coords[0]), Point(line.coords[-1])
    if last.distance(parent["geom"]) < first.distance(parent["geom"]):
        line = LineString(list(line.coords)[::-1])
    mouth = Point(line.coords[0])
    if mouth.distance(parent["geom"]) > 5.0:
        raise RuleViolation("the alley does not start at its parent street (more than 5 m away)",
                            details={"geometry": to_geojson(mouth)})
    numbers = _active_numbers(conn, parent_street_id)
    if off_label is not None:
        wanted = str(parse_label(off_label if parent["prefix"] is None or "/" in off_label
                                 else f"{parent['prefix']}/{off_label}"))
        if wanted not in {n["label"] for n in numbers}:
            raise InvalidInput(f"{off_label} is not an active number on street {parent_street_id}")
        prefix = wanted
    else:
        # the alley's own point is just off the centreline, on its side of the parent street
        side_point = line.interpolate(min(1.0, line.length / 2))
        st = station(parent["geom"], side_point)
        same_side = [n for n in numbers if n["side"] == st.side]
        if not same_side:
            raise RuleViolation("no numbered house on that side of the parent street: "
                                "number it first or give off_label")
        prefix = min(same_side, key=lambda n: (abs(n["chainage"] - st.chainage), n["chainage"]))["label"]
    return create_street(conn, actor, name=name or f"Hẻm {prefix} {parent['name']}", geom=line,
                         ward_code=parent["ward_code"], odd_side=parent["odd_side"],
                         metres_per_number=metres_per_number or parent["metres_per_number"],
                         parent_street_id=parent_street_id, prefix=prefix)


# --- numbers ------------------------------------------------------------------------------------------

def _number_columns():
    return [*[c for c in H.c if c.name != "geom"], func.ST_AsBinary(H.c.geom).label("wkb")]


def _number_dict(row) -> dict:
    out = dict(row)
    point = from_wkb(out.pop("wkb", None))
    for key in ("created_at", "retired_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    out["access_point"] = to_geojson(point)
    return out


def _active_numbers(conn: Connection, street_id: int) -> list[dict]:
    rows = conn.execute(
        select(*_number_columns()).where(H.c.street_id == street_id, H.c.status == "active").order_by(H.c.chainage)
    ).mappings()
    return [_number_dict(r) for r in rows]


def list_numbers(conn: Connection, street_id: int, *, include_retired: bool = False) -> list[dict]:
    _street_row(conn, street_id)
    stmt = select(*_number_columns()).where(H.c.street_id == street_id).order_by(H.c.side, H.c.chainage, H.c.id)
    if not include_retired:
        stmt = stmt.where(H.c.status == "active")
    return [_number_dict(r) for r in conn.execute(stmt).mappings()]


def get_number(conn: Connection, number_id: int) -> dict:
    row = conn.execute(select(*_number_columns()).where(H.c.id == number_id)).mappings().first()
    if row is None:
        raise NotFound(f"no house number {number_id}")
    out = _number_dict(row)
    out["certificates"] = [
        {**dict(c), "issued_on": c["issued_on"].isoformat(), "created_at": c["created_at"].isoformat()}
        for c in conn.execute(select(C).where(C.c.house_number_id == number_id).order_by(C.c.id)).mappings()
    ]
    return out


def _taken_labels(conn: Connection, street_id: int) -> frozenset[str]:
    return frozenset(conn.execute(select(H.c.label).where(H.c.street_id == street_id)).scalars())


def _candidate_buildings(conn: Connection, street_row: dict, max_distance: float,
                         building_ids: list[int] | None) -> list[tuple[int, object]]:
    """Buildings within ``max_distance`` of the street, without an active number, nearer to it than to
    any other street."""
    this = street_row["id"]
    g = to_db(street_row["geom"], multi=False)
    other = S.alias("other")
    nearer_other = exists().where(
        other.c.id != this,
        func.ST_DWithin(other.c.geom, B.c.geom, max_distance),
        func.ST_Distance(other.c.geom, B.c.geom) < func.ST_Distance(g, B.c.geom),
    )
    numbered = exists().where(H.c.building_id == B.c.id, H.c.status == "active")
    stmt = select(B.c.id, func.ST_AsBinary(B.c.geom).label("wkb")).where(
        func.ST_DWithin(B.c.geom, g, max_distance), ~numbered, ~nearer_other
    ).order_by(B.c.id)
    if building_ids is not None:
        stmt = stmt.where(B.c.id.in_(building_ids))
    return [(r.id, from_wkb(r.wkb)) for r in conn.execute(stmt)]


def _insert_number(conn: Connection, actor: str, street_row: dict, label: Label, st: Station, point,
                   building_id: int | None, dossier_id: int | None, action: str = "house_number.assign",
                   detail: dict | None = None) -> dict:
    row = conn.execute(
        insert(H).values(street_id=street_row["id"], building_id=building_id, number=label.number,
                         suffix=label.suffix, label=str(label), side=st.side, chainage=st.chainage,
                         lateral_offset=st.offset, dossier_id=dossier_id, created_by=actor,
                         geom=to_db(point, multi=False))
        .returning(*_number_columns())
    ).mappings().one()
    out = _number_dict(row)
    audit.record(conn, actor=actor, action=action, target_type="house_number", target_id=out["id"],
                 after={k: out[k] for k in ("street_id", "building_id", "label", "side", "chainage")},
                 detail=detail)
    return out


def _check_dossier(conn: Connection, dossier_id: int | None) -> None:
    if dossier_id is None:
        return
    if not is_id(dossier_id):
        raise InvalidInput("dossier_id must be a positive integer id")
    if conn.execute(select(lt.dossier.c.id).where(lt.dossier.c.id == dossier_id)).first() is None:
        raise InvalidInput(f"no dossier {dossier_id}")


def number_street(conn: Connection, actor: str, street_id: int, *, max_distance: float = DEFAULT_MAX_DISTANCE,
                  building_ids: list[int] | None = None, dossier_id: int | None = None) -> dict:
    """Number the street's unnumbered buildings; existing numbers are never changed.

    A street without numbers is numbered proportionally to chainage; on a numbered street each new
    building is inserted in chainage order (free number or sub-number). Re-running changes nothing.
    """
    if not isinstance(max_distance, int | float) or not 0 < max_distance <= 200:
        raise InvalidInput("max_distance must be in (0, 200] metres")
    _check_dossier(conn, dossier_id)
    if building_ids is not None and (not isinstance(building_ids, list) or not all(is_id(b) for b in building_ids)):
        raise InvalidInput("building_ids must be a list of positive integer ids")
    row = _street_row(conn, street_id, lock=True)  # one numbering of a street at a time
    line = row["geom"]
    stations, skipped = [], []
    for building_id, footprint in _candidate_buildings(conn, row, max_distance, building_ids):
        point = access_point(footprint, line)
        try:
            stations.append((building_id, point, station(line, point)))
        except RuleViolation as exc:  # the footprint crosses the centreline: an officer must give the point
            skipped.append({"building_id": building_id, "reason": exc.message})
    existing = _active_numbers(conn, street_id)
    assigned = []
    if not existing:
        for side in SIDES:
            items = [s for s in stations if s[2].side == side]
            odd = is_odd_side(side, row["odd_side"])
            numbers = first_numbers([s[2].chainage for s in items], row["metres_per_number"], odd)
            for (building_id, point, st), n in sorted(zip(items, numbers, strict=True), key=lambda x: x[1]):
                assigned.append(_insert_number(conn, actor, row, Label(row["prefix"], n), st, point, building_id,
                                               dossier_id, detail={"mode": "first"}))
    else:
        for building_id, point, st in sorted(stations, key=lambda s: s[2].chainage):
            assigned.append(_insert(conn, actor, row, st, point, building_id, dossier_id))
    return {"street_id": street_id, "assigned": assigned, "skipped": skipped,
            "unchanged": len(existing), "mode": "insert" if existing else "first"}


def _insert(conn: Connection, actor: str, row: dict, st: Station, point, building_id, dossier_id) -> dict:
    side_numbers = [n for n in _active_numbers(conn, row["id"]) if n["side"] == st.side]
    existing = [(n["chainage"], parse_label(n["label"])) for n in side_numbers]
    label = insertion_label(existing, st.chainage, row["metres_per_number"], is_odd_side(st.side, row["odd_side"]),
                            row["prefix"], _taken_labels(conn, row["id"]))
    return _insert_number(conn, actor, row, label, st, point, building_id, dossier_id, detail={"mode": "insert"})


def assign_number(conn: Connection, actor: str, street_id: int, *, building_id: int | None = None,
                  point=None, dossier_id: int | None = None) -> dict:
    """Number one building (its access point from its footprint) or a given access point."""
    _check_dossier(conn, dossier_id)
    row = _street_row(conn, street_id, lock=True)
    if building_id is not None:
        if not is_id(building_id):
            raise InvalidInput("building_id must be a positive integer id")
        if conn.execute(select(H.c.id).where(H.c.building_id == building_id, H.c.status == "active")).first():
            raise Conflict(f"building {building_id} already has a house number")
        found = conn.execute(select(func.ST_AsBinary(B.c.geom)).where(B.c.id == building_id)).scalar()
        if found is None:
            raise NotFound(f"no building {building_id}")
        if point is None:
            point = access_point(from_wkb(found), row["geom"])
    if not isinstance(point, Point):
        raise InvalidInput("give a building_id or an access point (GeoJSON Point)")
    if point.distance(row["geom"]) > 200:
        raise RuleViolation("the access point is more than 200 m from the street",
                            details={"geometry": to_geojson(point)})
    st = station(row["geom"], point)
    if not _active_numbers(conn, street_id):
        label = Label(row["prefix"], proportional_number(st.chainage, row["metres_per_number"],
                                                         is_odd_side(st.side, row["odd_side"])))
        return _insert_number(conn, actor, row, label, st, point, building_id, dossier_id, detail={"mode": "first"})
    return _insert(conn, actor, row, st, point, building_id, dossier_id)


def renumber(conn: Connection, actor: str, number_id: int, new_label: str, *, reason: str,
             dossier_id: int | None = None) -> dict:
    """The explicit, audited change of a number: the old one is retired and points at the new one."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a renumbering needs a reason")
    _check_dossier(conn, dossier_id)
    old = conn.execute(select(*_number_columns()).where(H.c.id == number_id).with_for_update()).mappings().first()
    if old is None:
        raise NotFound(f"no house number {number_id}")
    if old["status"] != "active":
        raise Conflict(f"house number {old['label']} is retired")
    row = _street_row(conn, old["street_id"], lock=True)
    if row["prefix"] and isinstance(new_label, str) and "/" not in new_label:
        new_label = f"{row['prefix']}/{new_label}"  # "9" in alley 12 means 12/9
    label = parse_label(new_label)
    if label.prefix != row["prefix"]:
        raise InvalidInput(f"numbers on this street are labelled {row['prefix'] + '/' if row['prefix'] else ''}<n>")
    if (label.number % 2 == 1) != is_odd_side(old["side"], row["odd_side"]):
        raise RuleViolation(f"{label} has the wrong parity for the {old['side']} side")
    if str(label) in _taken_labels(conn, row["id"]):
        raise Conflict(f"{label} is or was already used on this street")
    _check_order(conn, row["id"], old, label)
    st = Station(old["chainage"], old["lateral_offset"])
    point = from_wkb(conn.execute(select(func.ST_AsBinary(H.c.geom)).where(H.c.id == number_id)).scalar_one())
    # retire first (one active number per building), then link the old number to its successor
    conn.execute(update(H).where(H.c.id == number_id).values(status="retired", retired_at=func.now(),
                                                             retired_reason=reason))
    new = _insert_number(conn, actor, row, label, st, point, old["building_id"], dossier_id,
                         action="house_number.renumber", detail={"replaces": old["label"], "reason": reason})
    conn.execute(update(H).where(H.c.id == number_id).values(replaced_by_id=new["id"]))
    audit.record(conn, actor=actor, action="house_number.retire", target_type="house_number", target_id=number_id,
                 before={"label": old["label"], "status": "active"},
                 after={"status": "retired", "replaced_by": new["id"], "label": new["label"]},
                 detail={"reason": reason, "dossier_id": dossier_id})
    return new


def _check_order(conn: Connection, street_id: int, old: dict, label: Label) -> None:
    others = [n for n in _active_numbers(conn, street_id) if n["side"] == old["side"] and n["id"] != old["id"]]
    before = [parse_label(n["label"]).key for n in others if n["chainage"] <= old["chainage"]]
    after = [parse_label(n["label"]).key for n in others if n["chainage"] > old["chainage"]]
    if (before and max(before) >= label.key) or (after and min(after) <= label.key):
        raise RuleViolation(f"{label} would break the order of numbers along the street")


def retire_number(conn: Connection, actor: str, number_id: int, *, reason: str) -> dict:
    """Retire a number (the building was demolished or merged); the number is never reused."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("retiring a number needs a reason")
    old = conn.execute(select(H.c.id, H.c.label, H.c.status).where(H.c.id == number_id).with_for_update()).first()
    if old is None:
        raise NotFound(f"no house number {number_id}")
    if old.status != "active":
        raise Conflict(f"house number {old.label} is retired already")
    conn.execute(update(H).where(H.c.id == number_id).values(status="retired", retired_at=func.now(),
                                                             retired_reason=reason))
    audit.record(conn, actor=actor, action="house_number.retire", target_type="house_number", target_id=number_id,
                 before={"label": old.label, "status": "active"}, after={"status": "retired"},
                 detail={"reason": reason})
    return get_number(conn, number_id)


def issue_number_certificate(conn: Connection, actor: str, number_id: int, *, dossier_id: int,
                             issued_on: date | None = None) -> dict:
    """Record the house-number certificate (giấy chứng nhận số nhà) issued on a dossier."""
    if dossier_id is None:
        raise InvalidInput("a number certificate is issued on a dossier: give dossier_id")
    _check_dossier(conn, dossier_id)
    number = conn.execute(select(H.c.id, H.c.status, H.c.label).where(H.c.id == number_id)).first()
    if number is None:
        raise NotFound(f"no house number {number_id}")
    if number.status != "active":
        raise Conflict(f"house number {number.label} is retired: no certificate")
    issued_on = issued_on or conn.execute(select(func.current_date())).scalar_one()
    count = conn.execute(select(func.count()).where(C.c.house_number_id == number_id)).scalar_one()
    certificate_no = f"SN{issued_on.year}-{number_id:07d}-{count + 1}"
    row = conn.execute(
        insert(C).values(house_number_id=number_id, certificate_no=certificate_no, dossier_id=dossier_id,
                         issued_on=issued_on, created_by=actor).returning(C)
    ).mappings().one()
    out = {**dict(row), "issued_on": row["issued_on"].isoformat(), "created_at": row["created_at"].isoformat(),
           "label": number.label}
    audit.record(conn, actor=actor, action="house_number.certificate", target_type="house_number",
                 target_id=number_id, after=out)
    return out


def number_certificate(conn: Connection, certificate_id: int) -> dict:
    """A house-number certificate with the number, street and dossier it was issued for."""
    row = conn.execute(
        select(C, H.c.label, H.c.side, H.c.chainage, H.c.status, H.c.building_id, H.c.replaced_by_id,
               func.ST_X(H.c.geom).label("e"), func.ST_Y(H.c.geom).label("n"), S.c.name.label("street_name"),
               S.c.ward_code, S.c.odd_side, lt.dossier.c.code.label("dossier_code"))
        .join(H, H.c.id == C.c.house_number_id).join(S, S.c.id == H.c.street_id)
        .join(lt.dossier, lt.dossier.c.id == C.c.dossier_id).where(C.c.id == certificate_id)
    ).mappings().first()
    if row is None:
        raise NotFound(f"no house-number certificate {certificate_id}")
    out = {k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in row.items()}
    out["x"], out["y"] = out.pop("n"), out.pop("e")  # cadastral convention: X = northing, Y = easting
    out["replaced_by"] = None
    if row["replaced_by_id"] is not None:
        out["replaced_by"] = conn.execute(select(H.c.label).where(H.c.id == row["replaced_by_id"])).scalar()
    return out


def render_number_certificate_html(certificate: dict) -> str:
    from licensing.certificates import template_environment

    return template_environment().get_template("certificate_house_number.html").render(c=certificate)


def number_at(conn: Connection, point: Point, *, within: float = 50.0) -> dict | None:
    """The active number whose access point is nearest to ``point`` (address lookup)."""
    g = to_db(point, multi=False)
    row = conn.execute(
        select(*_number_columns(), S.c.name.label("street_name"))
        .join(S, S.c.id == H.c.street_id)
        .where(H.c.status == "active", func.ST_DWithin(H.c.geom, g, within))
        .order_by(func.ST_Distance(H.c.geom, g)).limit(1)
    ).mappings().first()
    return _number_dict(row) if row else None


__all__ = [
    "Label", "Station", "access_point", "assign_number", "create_alley", "create_street", "first_numbers",
    "get_number", "get_street", "insertion_label", "is_odd_side", "list_numbers", "number_at", "number_street",
    "parse_label", "proportional_number", "renumber", "retire_number", "issue_number_certificate", "station",
    "street_from_road", "number_certificate", "render_number_certificate_html",
]
