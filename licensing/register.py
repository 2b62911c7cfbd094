"""The parcel register: parcel versions in time, lineage, validated change operations, as-of queries.

Every row of ``parcel`` is one version of a parcel (LADM SpatialUnit version): a change retires
the versions it replaces (``end_lifespan`` = the change's time) and inserts new versions that
begin at the same instant, linked by ``parcel_lineage`` rows carrying the area passed on. Nothing
is ever deleted, so the register can be reconstructed at any past instant.

Each operation runs in the caller's transaction and validates before it returns: a failed rule
raises :class:`RuleViolation` (422) with the reason and the offending geometry, and the caller's
rollback leaves nothing changed. Changes in one ward are serialised by an advisory lock so two
concurrent edits cannot both pass the neighbour-overlap check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from shapely.geometry import LineString, MultiLineString
from shapely.ops import split, unary_union
from sqlalchemy import and_, func, insert, literal, or_, select, update
from sqlalchemy.engine import Connection

from gisserver import audit, schema
from gisserver.errors import Conflict, InvalidInput, NotFound, RuleViolation
from licensing import tables as lt
from licensing.geometry import as_multipolygon, drop_slivers, from_wkb, to_db, to_geojson

P = schema.parcel
EDITABLE_FIELDS = ("legal_area", "address", "land_use", "owner_name", "attributes")
LAYER_NAME = "parcels"


@dataclass(frozen=True)
class Tolerances:
    """Register tolerances (survey practice, not law): overlaps and area differences below them are noise."""

    overlap_m2: float = 0.05
    area_abs_m2: float = 0.05
    area_rel: float = 1e-6
    min_part_m2: float = 1.0

    def area(self, total: float) -> float:
        return max(self.area_abs_m2, self.area_rel * total)


DEFAULT_TOLERANCES = Tolerances()


# --- reading -----------------------------------------------------------------------------------------

def _columns():
    return [
        P.c.id, P.c.ward_code, P.c.sheet_no, P.c.parcel_no, P.c.area, P.c.legal_area, P.c.address,
        P.c.land_use, P.c.owner_name, P.c.status, P.c.begin_lifespan, P.c.end_lifespan, P.c.attributes,
        func.ST_AsBinary(P.c.geom).label("wkb"),
    ]


def _row(row) -> dict:
    d = dict(row)
    d["geom"] = from_wkb(d.pop("wkb"))
    return d


def parcel_columns() -> list:
    """Columns of a parcel version as the register reads it (geometry as WKB in ``wkb``)."""
    return _columns()


def parcel_row(row) -> dict:
    """A parcel version dict (shapely ``geom``) from a row with :func:`parcel_columns`; extra keys ignored."""
    names = [c.name for c in _columns()]
    return _row({k: row[k] for k in names})


def parcel_dict(parcel: dict, *, with_geometry: bool = True) -> dict:
    """JSON-ready view of a parcel version (geometry as GeoJSON in the city CRS)."""
    out = {k: v for k, v in parcel.items() if k != "geom"}
    for key in ("begin_lifespan", "end_lifespan"):
        if isinstance(out.get(key), datetime):
            out[key] = out[key].isoformat()
    out["current"] = parcel.get("end_lifespan") is None
    if with_geometry:
        out["geometry"] = to_geojson(parcel.get("geom"))
    return out


def get_parcel(conn: Connection, parcel_id: int) -> dict:
    row = conn.execute(select(*_columns()).where(P.c.id == parcel_id)).mappings().first()
    if row is None:
        raise NotFound(f"no parcel version {parcel_id}")
    return _row(row)


def find_parcel(conn: Connection, ward_code: str, sheet_no: int, parcel_no: int, *, at: datetime | None = None) -> dict:
    """The version of a parcel number current now, or at ``at``."""
    stmt = select(*_columns()).where(P.c.ward_code == ward_code, P.c.sheet_no == sheet_no, P.c.parcel_no == parcel_no)
    stmt = stmt.where(_alive_at(at)).order_by(P.c.begin_lifespan.desc()).limit(1)
    row = conn.execute(stmt).mappings().first()
    if row is None:
        when = f" at {at.isoformat()}" if at else ""
        raise NotFound(f"no parcel {ward_code}/{sheet_no}/{parcel_no}{when}")
    return _row(row)


def _alive_at(at: datetime | None):
    if at is None:
        return P.c.end_lifespan.is_(None)
    return and_(P.c.begin_lifespan <= at, or_(P.c.end_lifespan.is_(None), P.c.end_lifespan > at))


def parcels_as_of(conn: Connection, at: datetime | None, *, ward_code: str | None = None,
                  bbox: tuple[float, float, float, float] | None = None, limit: int = 1000) -> list[dict]:
    """The register as it stood at ``at`` (None: now), optionally in one ward or a city-CRS bbox."""
    stmt = select(*_columns()).where(_alive_at(at))
    if ward_code:
        stmt = stmt.where(P.c.ward_code == ward_code)
    if bbox:
        stmt = stmt.where(P.c.geom.intersects(func.ST_MakeEnvelope(*bbox, schema.CITY_SRID)))
    stmt = stmt.order_by(P.c.ward_code, P.c.sheet_no, P.c.parcel_no).limit(limit)
    return [_row(r) for r in conn.execute(stmt).mappings()]


def parcel_versions(conn: Connection, ward_code: str, sheet_no: int, parcel_no: int) -> list[dict]:
    stmt = select(*_columns()).where(
        P.c.ward_code == ward_code, P.c.sheet_no == sheet_no, P.c.parcel_no == parcel_no
    ).order_by(P.c.begin_lifespan, P.c.id)
    return [_row(r) for r in conn.execute(stmt).mappings()]


def lineage(conn: Connection, parcel_id: int, *, direction: str = "ancestors", max_depth: int = 100) -> dict:
    """Ancestors (versions it came from) or descendants (versions that came from it) of a version.

    Returns ``{"root": id, "edges": [{parent_id, child_id, area_carried, operation, at, depth}],
    "parcels": {id: summary}}``; attribute changes appear as one-to-one edges.
    """
    if direction not in ("ancestors", "descendants"):
        raise InvalidInput("direction must be ancestors or descendants")
    get_parcel(conn, parcel_id)  # NotFound for unknown ids
    L, C = lt.parcel_lineage, lt.parcel_change
    near = L.c.child_id if direction == "ancestors" else L.c.parent_id
    base = (
        select(L.c.parent_id, L.c.child_id, L.c.area_carried, L.c.change_id, literal(1).label("depth"))
        .where(near == parcel_id)
        .cte("walk", recursive=True)
    )
    step_near = L.c.child_id if direction == "ancestors" else L.c.parent_id
    base_far = base.c.parent_id if direction == "ancestors" else base.c.child_id
    walk = base.union(
        select(L.c.parent_id, L.c.child_id, L.c.area_carried, L.c.change_id, (base.c.depth + 1).label("depth"))
        .where(step_near == base_far, base.c.depth < max_depth)
    )
    rows = conn.execute(
        select(walk, C.c.operation, C.c.at).join(C, C.c.id == walk.c.change_id).order_by(walk.c.depth, walk.c.parent_id)
    ).mappings().all()
    ids = {parcel_id} | {r["parent_id"] for r in rows} | {r["child_id"] for r in rows}
    summaries = conn.execute(
        select(P.c.id, P.c.ward_code, P.c.sheet_no, P.c.parcel_no, P.c.area, P.c.begin_lifespan, P.c.end_lifespan)
        .where(P.c.id.in_(ids))
    ).mappings().all()
    return {
        "root": parcel_id,
        "direction": direction,
        "edges": [
            {"parent_id": r["parent_id"], "child_id": r["child_id"], "area_carried": r["area_carried"],
             "operation": r["operation"], "at": r["at"].isoformat(), "depth": r["depth"]}
            for r in rows
        ],
        "parcels": {
            s["id"]: {
                "ward_code": s["ward_code"], "sheet_no": s["sheet_no"], "parcel_no": s["parcel_no"],
                "area": s["area"], "begin_lifespan": s["begin_lifespan"].isoformat(),
                "end_lifespan": s["end_lifespan"].isoformat() if s["end_lifespan"] else None,
            }
            for s in summaries
        },
    }


def parcel_history(conn: Connection, parcel_id: int, *, limit: int = 500) -> list[dict]:
    """Audit entries of a parcel: every version of its number (creation, changes, RRRs), newest first."""
    p = get_parcel(conn, parcel_id)
    ids = [str(v["id"]) for v in parcel_versions(conn, p["ward_code"], p["sheet_no"], p["parcel_no"])]
    a = schema.audit_log
    rows = conn.execute(
        select(a).where(a.c.target_type == "parcel", a.c.target_id.in_(ids))
        .order_by(a.c.at.desc(), a.c.id.desc()).limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


# --- input validation (bad input is a 400, never a database error) -----------------------------

def _text(value, name: str, *, max_len: int = 2000, required: bool = False) -> str | None:
    if value is None or (value == "" and not required):
        if required:
            raise InvalidInput(f"{name} is required")
        return value
    if not isinstance(value, str) or len(value) > max_len or (required and not value.strip()):
        raise InvalidInput(f"{name} must be text of at most {max_len} characters")
    return value


def _iso_date(value, name: str):
    if value is None or isinstance(value, date):  # a datetime is a date too
        return value.date() if isinstance(value, datetime) else value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be an ISO date (YYYY-MM-DD)") from None


def check_parcel_values(values: dict) -> dict:
    """Validate the editable attributes of a parcel version (types and column sizes)."""
    _text(values.get("land_use"), "land_use", max_len=32)
    _text(values.get("address"), "address")
    _text(values.get("owner_name"), "owner_name")
    legal_area = values.get("legal_area")
    if legal_area is not None and (isinstance(legal_area, bool) or not isinstance(legal_area, int | float)
                                   or not legal_area > 0):
        raise InvalidInput("legal_area must be a positive number")
    if values.get("attributes") is not None and not isinstance(values["attributes"], dict):
        raise InvalidInput("attributes must be an object")
    return values


# --- parties, sources, RRR ------------------------------------------------------------------

def create_source(conn: Connection, source: dict) -> int:
    kind = source.get("kind")
    if kind not in lt.SOURCE_KINDS:
        raise InvalidInput(f"source kind must be one of {', '.join(lt.SOURCE_KINDS)}")
    reference = _text(source.get("reference"), "source reference (decision or survey number)", max_len=200,
                      required=True)
    return conn.execute(
        insert(lt.register_source).values(
            kind=kind, reference=reference.strip(), issued_on=_iso_date(source.get("issued_on"), "issued_on"),
            issuer=_text(source.get("issuer"), "issuer", max_len=500),
            description=_text(source.get("description"), "description") or "",
        ).returning(lt.register_source.c.id)
    ).scalar_one()


def _source_id(conn: Connection, source) -> int | None:
    if source is None:
        return None
    if isinstance(source, int) and not isinstance(source, bool):
        if conn.execute(select(lt.register_source.c.id).where(lt.register_source.c.id == source)).first() is None:
            raise InvalidInput(f"no source {source}")
        return source
    if isinstance(source, dict):
        return create_source(conn, source)
    raise InvalidInput("source must be a source id or an object {kind, reference, ...}")


def create_party(conn: Connection, actor: str, *, name: str, kind: str = "person", id_number: str | None = None,
                 address: str | None = None) -> int:
    _text(name, "party name", max_len=500, required=True)
    _text(id_number, "id_number", max_len=64)
    _text(address, "address", max_len=500)
    if kind not in ("person", "organization", "state"):
        raise InvalidInput("party kind must be person, organization or state")
    party_id = conn.execute(
        insert(lt.party).values(kind=kind, name=name.strip(), id_number=id_number, address=address)
        .returning(lt.party.c.id)
    ).scalar_one()
    audit.record(conn, actor=actor, action="party.create", target_type="party", target_id=party_id,
                 after={"kind": kind, "name": name})
    return party_id


def add_rrr(conn: Connection, actor: str, parcel_id: int, *, kind: str, type: str, party_id: int | None = None,
            share: float | None = None, description: str = "", source=None) -> int:
    """Attach a right, restriction or responsibility to the current version of a parcel."""
    if kind not in lt.RRR_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(lt.RRR_KINDS)}")
    if not isinstance(type, str) or not type.strip() or len(type) > 32:
        raise InvalidInput("type is required (at most 32 characters), e.g. land_use_right, mortgage, easement")
    _text(description, "description")
    if share is not None and (isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1):
        raise InvalidInput("share must be a number in (0, 1]")
    if kind == "right" and party_id is None:
        raise InvalidInput("a right needs a party")
    if party_id is not None and conn.execute(select(lt.party.c.id).where(lt.party.c.id == party_id)).first() is None:
        raise InvalidInput(f"no party {party_id}")
    _current_versions(conn, [parcel_id])
    rrr_id = conn.execute(
        insert(lt.rrr).values(parcel_id=parcel_id, party_id=party_id, kind=kind, type=type.strip(), share=share,
                              description=description, source_id=_source_id(conn, source))
        .returning(lt.rrr.c.id)
    ).scalar_one()
    audit.record(conn, actor=actor, action="rrr.create", target_type="parcel", target_id=parcel_id,
                 after={"rrr_id": rrr_id, "kind": kind, "type": type, "party_id": party_id, "share": share})
    return rrr_id


def end_rrr(conn: Connection, actor: str, rrr_ids: list[int], *, reason: str = "") -> int:
    """End current rights/restrictions/responsibilities (transfer, release of a mortgage ...); audited.

    The rows stay (history is never deleted); ``end_lifespan`` is set to the transaction's time.
    """
    if not isinstance(rrr_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in rrr_ids):
        raise InvalidInput("rrr_ids must be a list of ids")
    _text(reason, "reason")
    R = lt.rrr
    rows = conn.execute(
        update(R).where(R.c.id.in_(rrr_ids), R.c.end_lifespan.is_(None)).values(end_lifespan=func.now())
        .returning(R.c.id, R.c.parcel_id, R.c.kind, R.c.type, R.c.party_id)
    ).mappings().all()
    for row in rows:
        audit.record(conn, actor=actor, action="rrr.end", target_type="parcel", target_id=row["parcel_id"],
                     before=dict(row), detail={"reason": reason})
    return len(rows)


def list_rrr(conn: Connection, parcel_id: int, *, include_ended: bool = False) -> list[dict]:
    R, Pa = lt.rrr, lt.party
    stmt = (
        select(R.c.id, R.c.kind, R.c.type, R.c.share, R.c.description, R.c.party_id, Pa.c.name.label("party_name"),
               R.c.source_id, R.c.begin_lifespan, R.c.end_lifespan)
        .select_from(R.outerjoin(Pa, Pa.c.id == R.c.party_id))
        .where(R.c.parcel_id == parcel_id)
        .order_by(R.c.id)
    )
    if not include_ended:
        stmt = stmt.where(R.c.end_lifespan.is_(None))
    return [dict(r) for r in conn.execute(stmt).mappings()]


# --- validation helpers ---------------------------------------------------------------------------

def _violation(reason: str, geometry=None, **extra) -> RuleViolation:
    return RuleViolation(reason, details={"reason": reason, "geometry": to_geojson(geometry), **extra})


def _check_polygonal(geom, what: str, tol: Tolerances):
    if geom is None or geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise _violation(f"{what} is not a polygon", geom)
    if not geom.is_valid:
        raise _violation(f"{what} is not a valid polygon", geom)
    if geom.area < tol.min_part_m2:
        raise _violation(f"{what} is smaller than {tol.min_part_m2} m2", geom, area=geom.area)


def _check_no_overlap(conn: Connection, geoms: list, exclude_ids: list[int], tol: Tolerances) -> None:
    """New geometries must not overlap each other nor current neighbours (beyond the tolerance)."""
    for i, a in enumerate(geoms):
        for b in geoms[i + 1:]:
            inter = a.intersection(b)
            if inter.area > tol.overlap_m2:
                raise _violation("the new parcels overlap each other", inter, overlap_m2=inter.area)
    for geom in geoms:
        g = to_db(geom)
        ix = func.ST_Intersection(P.c.geom, g)
        stmt = select(P.c.id, P.c.ward_code, P.c.sheet_no, P.c.parcel_no, func.ST_Area(ix).label("overlap"),
                      func.ST_AsBinary(ix).label("wkb"))
        stmt = stmt.where(P.c.end_lifespan.is_(None), func.ST_Intersects(P.c.geom, g))
        if exclude_ids:
            stmt = stmt.where(P.c.id.not_in(exclude_ids))
        hits = [r for r in conn.execute(stmt).mappings() if r["overlap"] > tol.overlap_m2]
        if hits:
            names = ", ".join(f"{r['ward_code']}/{r['sheet_no']}/{r['parcel_no']}" for r in hits)
            total = sum(r["overlap"] for r in hits)
            raise _violation(
                f"overlaps current parcel(s) {names} by {total:.2f} m2",
                unary_union([from_wkb(r["wkb"]) for r in hits]),
                neighbour_ids=[r["id"] for r in hits], overlap_m2=total,
            )


def _check_area_conserved(before: float, after: float, tol: Tolerances, geometry=None) -> None:
    if abs(before - after) > tol.area(before):
        raise _violation(
            f"area not conserved: {before:.3f} m2 before, {after:.3f} m2 after", geometry,
            area_before=before, area_after=after,
        )


# --- writing helpers -----------------------------------------------------------------------------

def _lock_ward(conn: Connection, ward_code: str) -> None:
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(literal("parcel-register:") + ward_code))))


def _lock_for_change(conn: Connection, ids: list[int]) -> list[dict]:
    """Take the ward locks (always before row locks, in a fixed order), then lock the versions."""
    wards = conn.execute(select(P.c.ward_code).where(P.c.id.in_(ids)).distinct()).scalars().all()
    for ward in sorted(wards):
        _lock_ward(conn, ward)
    return _current_versions(conn, ids)


def _current_versions(conn: Connection, ids: list[int]) -> list[dict]:
    """The versions, locked, in the given order; NotFound if unknown, Conflict if already retired."""
    rows = {r["id"]: _row(r) for r in conn.execute(
        select(*_columns()).where(P.c.id.in_(ids)).with_for_update(of=P)
    ).mappings()}
    out = []
    for pid in ids:
        if pid not in rows:
            raise NotFound(f"no parcel version {pid}")
        if rows[pid]["end_lifespan"] is not None:
            raise Conflict(f"parcel version {pid} is not current (retired {rows[pid]['end_lifespan'].isoformat()})")
        out.append(rows[pid])
    return out


def _begin_change(conn: Connection, operation: str, actor: str, source, note: str,
                  detail: dict) -> tuple[int, datetime]:
    _text(note, "note")
    row = conn.execute(
        insert(lt.parcel_change).values(operation=operation, actor=actor, source_id=_source_id(conn, source),
                                        note=note or "", detail=detail)
        .returning(lt.parcel_change.c.id, lt.parcel_change.c.at)
    ).one()
    return row[0], row[1]


def _next_numbers(conn: Connection, ward_code: str, sheet_no: int, count: int) -> list[int]:
    """Fresh parcel numbers on a sheet: never reuse a number, even a retired one."""
    top = conn.execute(
        select(func.coalesce(func.max(P.c.parcel_no), 0)).where(P.c.ward_code == ward_code, P.c.sheet_no == sheet_no)
    ).scalar_one()
    return list(range(top + 1, top + 1 + count))


def _retire(conn: Connection, parents: list[dict], at: datetime) -> None:
    conn.execute(
        update(P).where(P.c.id.in_([p["id"] for p in parents])).values(end_lifespan=at, status="retired")
    )


def _insert_version(conn: Connection, values: dict, geom, at: datetime) -> int:
    fields = {k: values.get(k) for k in ("ward_code", "sheet_no", "parcel_no", *EDITABLE_FIELDS)}
    fields["attributes"] = fields.get("attributes") or {}
    return conn.execute(
        insert(P).values(**fields, status="current", begin_lifespan=at, geom=to_db(geom)).returning(P.c.id)
    ).scalar_one()


def _link(conn: Connection, change_id: int, parent: dict, child_id: int, child_geom) -> None:
    carried = parent["geom"].intersection(child_geom).area
    if carried <= 0:
        return
    conn.execute(insert(lt.parcel_lineage).values(change_id=change_id, parent_id=parent["id"], child_id=child_id,
                                                  area_carried=carried))


def _carry_rrr(conn: Connection, parents: list[dict], child_ids: list[int], at: datetime) -> None:
    """Current RRRs of the retired versions end and continue on every new version."""
    R = lt.rrr
    rows = conn.execute(
        select(R).where(R.c.parcel_id.in_([p["id"] for p in parents]), R.c.end_lifespan.is_(None))
    ).mappings().all()
    if not rows:
        return
    conn.execute(update(R).where(R.c.id.in_([r["id"] for r in rows])).values(end_lifespan=at))
    copies = [
        {k: r[k] for k in ("party_id", "kind", "type", "share", "description", "source_id")}
        | {"parcel_id": child, "begin_lifespan": at}
        for r in rows for child in child_ids
    ]
    conn.execute(insert(R), copies)


def _finish(conn: Connection, actor: str, operation: str, change_id: int, at: datetime,
            parents: list[dict], child_ids: list[int], detail: dict | None = None) -> dict:
    children = [get_parcel(conn, cid) for cid in child_ids]
    for p in parents:
        audit.record(conn, actor=actor, action=f"parcel.{operation}", target_type="parcel", target_id=p["id"],
                     before=parcel_dict(p, with_geometry=False), after={"retired_at": at, "successors": child_ids},
                     detail={"change_id": change_id, **(detail or {})})
    for c in children:
        audit.record(conn, actor=actor, action=f"parcel.{operation}", target_type="parcel", target_id=c["id"],
                     before={"predecessors": [p["id"] for p in parents]}, after=parcel_dict(c, with_geometry=False),
                     detail={"change_id": change_id, **(detail or {})})
    _bump_layer(conn, parents, children)
    return {
        "change_id": change_id, "operation": operation, "at": at.isoformat(),
        "retired": [p["id"] for p in parents], "created": [parcel_dict(c) for c in children],
    }


def _bump_layer(conn: Connection, retired: list[dict], created: list[dict]) -> None:
    """New version of the parcels layer; the change (counts, the box of the old and new shapes)
    updates the catalogue without a table scan and invalidates only the tiles it touches."""
    from layers.catalogue import LayerChange, bump_version

    bounds = [p["geom"].bounds for p in (*retired, *created) if p["geom"] is not None and not p["geom"].is_empty]
    bbox = (min(b[0] for b in bounds), min(b[1] for b in bounds), max(b[2] for b in bounds),
            max(b[3] for b in bounds)) if bounds else None
    try:
        bump_version(conn, LAYER_NAME, LayerChange(added=len(created), removed=len(retired), bbox=bbox))
    except NotFound:  # the catalogue is not set up (bare database): nothing to invalidate
        pass


def _check_number(ward_code, sheet_no, parcel_no) -> None:
    if not isinstance(ward_code, str) or not ward_code.strip() or len(ward_code) > 16:
        raise InvalidInput("ward_code is required (at most 16 characters)")
    for name, value in (("sheet_no", sheet_no), ("parcel_no", parcel_no)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput(f"{name} must be a positive integer")


def _number_taken(conn: Connection, ward_code: str, sheet_no: int, parcel_no: int) -> bool:
    return conn.execute(
        select(P.c.id).where(P.c.ward_code == ward_code, P.c.sheet_no == sheet_no, P.c.parcel_no == parcel_no,
                             P.c.end_lifespan.is_(None))
    ).first() is not None


# --- change operations -------------------------------------------------------------------------------

def create_parcel(conn: Connection, actor: str, *, ward_code: str, sheet_no: int, parcel_no: int, geom,
                  land_use: str | None = None, legal_area: float | None = None, address: str | None = None,
                  owner_name: str | None = None, attributes: dict | None = None, source=None, note: str = "",
                  tol: Tolerances = DEFAULT_TOLERANCES) -> dict:
    """Register a new parcel (first registration)."""
    _check_number(ward_code, sheet_no, parcel_no)
    check_parcel_values({"land_use": land_use, "legal_area": legal_area, "address": address,
                         "owner_name": owner_name, "attributes": attributes})
    _lock_ward(conn, ward_code)
    _check_polygonal(geom, "the parcel", tol)
    if _number_taken(conn, ward_code, sheet_no, parcel_no):
        raise Conflict(f"parcel {ward_code}/{sheet_no}/{parcel_no} exists")
    _check_no_overlap(conn, [geom], [], tol)
    change_id, at = _begin_change(conn, "create", actor, source, note, {})
    values = {"ward_code": ward_code, "sheet_no": sheet_no, "parcel_no": parcel_no, "land_use": land_use,
              "legal_area": legal_area, "address": address, "owner_name": owner_name, "attributes": attributes}
    child = _insert_version(conn, values, geom, at)
    return _finish(conn, actor, "create", change_id, at, [], [child])


def _split_pieces(geom, line, tol: Tolerances) -> list:
    pieces = []
    for poly in as_multipolygon(geom).geoms:
        pieces.extend(g for g in split(poly, line).geoms if g.area > 0)
    if len(pieces) < 2:
        raise _violation("the line does not cross the parcel from boundary to boundary", line)
    small = [p for p in pieces if p.area < tol.min_part_m2]
    if small:
        raise _violation(f"the split leaves a piece smaller than {tol.min_part_m2} m2", small[0], area=small[0].area)
    return sorted(pieces, key=lambda g: (round(g.centroid.x, 3), round(g.centroid.y, 3)))


def split_parcel(conn: Connection, actor: str, parcel_id: int, line, *, numbers: list[int] | None = None,
                 source=None, note: str = "", tol: Tolerances = DEFAULT_TOLERANCES) -> dict:
    """Split a parcel along a line into two or more parcels (new numbers on the same sheet)."""
    if not isinstance(line, LineString | MultiLineString):
        raise InvalidInput("the split line must be a LineString or MultiLineString")
    (parent,) = _lock_for_change(conn, [parcel_id])
    pieces = _split_pieces(parent["geom"], line, tol)
    _check_area_conserved(parent["geom"].area, sum(p.area for p in pieces), tol, parent["geom"])
    if numbers is None:
        numbers = _next_numbers(conn, parent["ward_code"], parent["sheet_no"], len(pieces))
    if len(numbers) != len(pieces):
        raise InvalidInput(f"the line makes {len(pieces)} parcels but {len(numbers)} numbers were given")
    _check_no_overlap(conn, pieces, [parent["id"]], tol)
    change_id, at = _begin_change(conn, "split", actor, source, note, {"line": to_geojson(line)})
    _retire(conn, [parent], at)
    child_ids = []
    for number, piece in zip(numbers, pieces, strict=True):
        _check_number(parent["ward_code"], parent["sheet_no"], number)
        if _number_taken(conn, parent["ward_code"], parent["sheet_no"], number):
            raise Conflict(f"parcel number {number} is taken on sheet {parent['sheet_no']}")
        values = {**parent, "parcel_no": number, "legal_area": None}
        child_ids.append(_insert_version(conn, values, piece, at))
        _link(conn, change_id, parent, child_ids[-1], piece)
    _carry_rrr(conn, [parent], child_ids, at)
    return _finish(conn, actor, "split", change_id, at, [parent], child_ids)


def merge_parcels(conn: Connection, actor: str, parcel_ids: list[int], *, parcel_no: int | None = None,
                  land_use: str | None = None, source=None, note: str = "",
                  tol: Tolerances = DEFAULT_TOLERANCES) -> dict:
    """Merge adjacent parcels of one ward and sheet into one."""
    if not isinstance(parcel_ids, list) or len(set(parcel_ids)) < 2:
        raise InvalidInput("a merge needs at least two different parcel versions")
    parents = _lock_for_change(conn, list(dict.fromkeys(parcel_ids)))
    first = parents[0]
    if len({(p["ward_code"], p["sheet_no"]) for p in parents}) > 1:
        raise _violation("merged parcels must be on the same ward and map sheet",
                         unary_union([p["geom"] for p in parents]))
    uses = {p["land_use"] for p in parents}
    if land_use is None and len(uses) > 1:
        raise _violation(f"the parcels have different land uses ({', '.join(sorted(map(str, uses)))}); give land_use",
                         unary_union([p["geom"] for p in parents]))
    merged = drop_slivers(unary_union([p["geom"] for p in parents]), tol.min_part_m2)
    if merged.geom_type != "Polygon":
        raise _violation("the parcels are not adjacent: the merge would not be one polygon", merged)
    _check_area_conserved(sum(p["geom"].area for p in parents), merged.area, tol, merged)
    _check_no_overlap(conn, [merged], [p["id"] for p in parents], tol)
    change_id, at = _begin_change(conn, "merge", actor, source, note, {"parents": [p["id"] for p in parents]})
    _retire(conn, parents, at)
    number = parcel_no if parcel_no is not None else _next_numbers(conn, first["ward_code"], first["sheet_no"], 1)[0]
    _check_number(first["ward_code"], first["sheet_no"], number)
    if _number_taken(conn, first["ward_code"], first["sheet_no"], number):
        raise Conflict(f"parcel number {number} is taken on sheet {first['sheet_no']}")
    values = {**first, "parcel_no": number, "legal_area": None, "land_use": land_use or first["land_use"]}
    child = _insert_version(conn, values, merged, at)
    for p in parents:
        _link(conn, change_id, p, child, merged)
    _carry_rrr(conn, parents, [child], at)
    return _finish(conn, actor, "merge", change_id, at, parents, [child])


def adjust_boundary(conn: Connection, actor: str, parcel_id: int, neighbour_id: int, new_geom, *, source=None,
                    note: str = "", tol: Tolerances = DEFAULT_TOLERANCES) -> dict:
    """Move the common boundary of two neighbours: ``new_geom`` is the parcel's new shape, the
    neighbour gets the rest of their union. Both keep their numbers (new versions)."""
    if parcel_id == neighbour_id:
        raise InvalidInput("a boundary adjustment needs two different parcels")
    a, b = _lock_for_change(conn, [parcel_id, neighbour_id])
    if a["geom"].distance(b["geom"]) > 0.01:
        raise _violation("the two parcels are not neighbours", b["geom"])
    _check_polygonal(new_geom, "the new parcel shape", tol)
    both = unary_union([a["geom"], b["geom"]])
    outside = drop_slivers(new_geom.difference(both), tol.overlap_m2)
    if not outside.is_empty:
        raise _violation(f"the new shape takes {outside.area:.2f} m2 outside the two parcels", outside,
                         outside_m2=outside.area)
    new_a = as_multipolygon(drop_slivers(new_geom.intersection(both), tol.overlap_m2))
    new_b = drop_slivers(both.difference(new_a), tol.overlap_m2)
    _check_polygonal(new_b, "the neighbour's remaining shape", tol)
    if new_b.geom_type != "Polygon" and len(as_multipolygon(new_b).geoms) > len(as_multipolygon(b["geom"]).geoms):
        raise _violation("the adjustment would cut the neighbour into pieces", new_b)
    _check_area_conserved(a["geom"].area + b["geom"].area, new_a.area + new_b.area, tol, new_b)
    _check_no_overlap(conn, [new_a, new_b], [a["id"], b["id"]], tol)
    change_id, at = _begin_change(conn, "adjust", actor, source, note, {"parcels": [a["id"], b["id"]]})
    _retire(conn, [a, b], at)
    child_a = _insert_version(conn, a, new_a, at)
    child_b = _insert_version(conn, b, new_b, at)
    for parent in (a, b):
        _link(conn, change_id, parent, child_a, new_a)
        _link(conn, change_id, parent, child_b, new_b)
    _carry_rrr(conn, [a], [child_a], at)
    _carry_rrr(conn, [b], [child_b], at)
    moved = a["geom"].area - new_a.area
    return _finish(conn, actor, "adjust", change_id, at, [a, b], [child_a, child_b], {"area_moved_m2": moved})


def change_attributes(conn: Connection, actor: str, parcel_id: int, changes: dict, *, source=None,
                      note: str = "") -> dict:
    """A new version of a parcel with changed attributes (same number and geometry)."""
    if not isinstance(changes, dict) or not changes:
        raise InvalidInput(f"give at least one of {', '.join(EDITABLE_FIELDS)} to change")
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}; editable: {', '.join(EDITABLE_FIELDS)}")
    check_parcel_values(changes)
    (parent,) = _lock_for_change(conn, [parcel_id])
    if all(parent.get(k) == v for k, v in changes.items()):
        raise InvalidInput("nothing changes: the values are the current ones")
    change_id, at = _begin_change(conn, "attributes", actor, source, note, {"fields": sorted(changes)})
    _retire(conn, [parent], at)
    child = _insert_version(conn, {**parent, **changes}, parent["geom"], at)
    _link(conn, change_id, parent, child, parent["geom"])
    _carry_rrr(conn, [parent], [child], at)
    return _finish(conn, actor, "attributes", change_id, at, [parent], [child],
                   {"changed": {k: [parent.get(k), v] for k, v in changes.items()}})


__all__ = [
    "DEFAULT_TOLERANCES", "Tolerances", "add_rrr", "adjust_boundary", "change_attributes", "create_parcel",
    "create_party", "create_source", "find_parcel", "get_parcel", "lineage", "list_rrr", "merge_parcels",
    "parcel_dict", "parcel_history", "parcel_versions", "parcels_as_of", "split_parcel",
]
