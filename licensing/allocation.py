"""Land allocation and lease (giao đất, cho thuê đất): decisions that create rights with terms.

A decision allocates or leases land (current parcels, or a polygon) to a party for a land-use
purpose and a term. It is recorded as a register source (kind ``decision``) and creates one right
per parcel it covers (``land_use_right`` for an allocation, ``land_lease_right`` for a lease) whose
``source_id`` is that source: after a split or merge the register copies rights with their source,
so every right still finds its terms here (:func:`terms_of_right`).

Rules (Land Law 2024, Art. 116-120 and 172, verify):
- a lease has an end date and is paid annually or once for the whole term; an allocation is free
  of land-use levy (``none``) or paid once (``one_off``); an allocation may be long-term (no end);
- land may not be allocated or leased twice for overlapping periods: a decision whose land
  overlaps an active allocation or lease in force during its term is refused (RuleViolation 422
  with the conflicting decision and the overlap geometry). Decisions are serialised by an
  advisory lock so two concurrent decisions cannot both pass the check.
"""

from __future__ import annotations

from datetime import date, timedelta

from shapely.ops import unary_union
from sqlalchemy import and_, func, insert, literal, or_, select, update
from sqlalchemy.engine import Connection

from gisserver import audit, schema
from gisserver.errors import Conflict, InvalidInput, NotFound, RuleViolation
from licensing import register
from licensing import tables as lt
from licensing.geometry import as_multipolygon, from_wkb, to_db, to_geojson
from licensing.records_tables import ALLOCATION_KINDS, PAYMENTS, land_allocation, land_allocation_parcel

A, AP, P = land_allocation, land_allocation_parcel, schema.parcel
RIGHT_TYPES = {"allocation": "land_use_right", "lease": "land_lease_right"}
#: overlaps below this are digitising noise, not a conflict (m2)
OVERLAP_TOLERANCE_M2 = 0.05
#: a parcel is covered by a decision when this share of its area lies inside the decision's land
COVERED_SHARE = 0.99


MAX_ID = 2**63 - 1


def is_id(value) -> bool:
    """An integer that can be a BIGINT key (a larger one can only be unknown)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def parse_date(name: str, value, *, required: bool = True) -> date | None:
    """A date given as a ``date`` or an ISO string (InvalidInput otherwise)."""
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{name} is required (YYYY-MM-DD)")
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidInput(f"{name} must be a date YYYY-MM-DD")


def _check_terms(kind, payment, term_start: date, term_end: date | None) -> None:
    if kind not in ALLOCATION_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(ALLOCATION_KINDS)}")
    if payment not in PAYMENTS:
        raise InvalidInput(f"payment must be one of {', '.join(PAYMENTS)}")
    if kind == "lease" and term_end is None:
        raise InvalidInput("a lease needs term_end")
    if kind == "lease" and payment == "none":
        raise InvalidInput("a lease is paid annually or once for the whole term (payment annual or one_off)")
    if kind == "allocation" and payment == "annual":
        raise InvalidInput("an allocation has no annual rent: payment none or one_off (lease land for annual rent)")
    if term_end is not None and term_end <= term_start:
        raise InvalidInput("term_end must be after term_start")


def _check_refs(conn: Connection, party_id, land_use) -> None:
    if not is_id(party_id):
        raise InvalidInput("party_id must be a positive integer id")
    if conn.execute(select(lt.party.c.id).where(lt.party.c.id == party_id)).first() is None:
        raise InvalidInput(f"no party {party_id}")
    if not isinstance(land_use, str) or conn.execute(
        select(schema.land_use_code.c.code).where(schema.land_use_code.c.code == land_use)
    ).first() is None:
        raise InvalidInput(f"unknown land-use code {land_use!r} (e.g. ODT, TMD, SKC)")


def _land(conn: Connection, parcel_ids, geom):
    """(geometry, [current parcel versions named]) of the decision's land."""
    if (parcel_ids is None) == (geom is None):
        raise InvalidInput("give either parcel_ids or a polygon (geometry), not both")
    if parcel_ids is not None:
        if not isinstance(parcel_ids, list) or not parcel_ids or not all(is_id(p) for p in parcel_ids):
            raise InvalidInput("parcel_ids must be a non-empty list of parcel version ids")
        parcels = [register.get_parcel(conn, pid) for pid in dict.fromkeys(parcel_ids)]
        retired = [p["id"] for p in parcels if p["end_lifespan"] is not None]
        if retired:
            raise Conflict(f"parcel version(s) {retired} are not current")
        return as_multipolygon(unary_union([p["geom"] for p in parcels])), parcels
    if geom.geom_type not in ("Polygon", "MultiPolygon") or not geom.is_valid or geom.area < 1.0:
        raise InvalidInput("the land must be a valid polygon of at least 1 m2")
    return as_multipolygon(geom), None


def _conflicts(conn: Connection, geom, term_start: date, term_end: date | None) -> None:
    g = to_db(geom)
    ix = func.ST_Intersection(A.c.geom, g)
    # terms are inclusive: a lease "until 31/01/2076" is in force on that day
    in_force = and_(
        A.c.status == "active",
        or_(A.c.term_end.is_(None), A.c.term_end >= term_start),
        literal(True) if term_end is None else A.c.term_start <= term_end,
    )
    rows = conn.execute(
        select(A.c.id, A.c.decision_no, A.c.kind, A.c.term_start, A.c.term_end, func.ST_Area(ix).label("overlap"),
               func.ST_AsBinary(ix).label("wkb"))
        .where(in_force, func.ST_Intersects(A.c.geom, g))
        .order_by(A.c.id)
    ).mappings().all()
    hits = [r for r in rows if r["overlap"] > OVERLAP_TOLERANCE_M2]
    if hits:
        first = hits[0]
        raise RuleViolation(
            f"the land overlaps {first['kind']} decision {first['decision_no']} in force "
            f"{first['term_start'].isoformat()} - {first['term_end'].isoformat() if first['term_end'] else 'long-term'}"
            f" by {sum(h['overlap'] for h in hits):.2f} m2",
            details={
                "reason": "overlaps an active allocation or lease",
                "conflicts": [
                    {"allocation_id": h["id"], "decision_no": h["decision_no"], "kind": h["kind"],
                     "term_start": h["term_start"].isoformat(),
                     "term_end": h["term_end"].isoformat() if h["term_end"] else None,
                     "overlap_m2": round(h["overlap"], 3)}
                    for h in hits
                ],
                "geometry": to_geojson(unary_union([from_wkb(h["wkb"]) for h in hits])),
            },
        )


def _covered_parcels(conn: Connection, geom) -> tuple[list[tuple[int, float]], list[dict]]:
    """Current parcels (id, covered area) wholly inside the land, and those only partly inside."""
    g = to_db(geom)
    covered = func.ST_Area(func.ST_Intersection(P.c.geom, g))
    rows = conn.execute(
        select(P.c.id, P.c.ward_code, P.c.sheet_no, P.c.parcel_no, P.c.area, covered.label("covered"))
        .where(P.c.end_lifespan.is_(None), func.ST_Intersects(P.c.geom, g)).order_by(P.c.id)
    ).mappings().all()
    whole = [(r["id"], r["covered"]) for r in rows if r["covered"] >= COVERED_SHARE * r["area"]]
    partial = [
        {"parcel_id": r["id"], "number": f"{r['ward_code']}/{r['sheet_no']}/{r['parcel_no']}",
         "covered_m2": round(r["covered"], 3), "area": round(r["area"], 3)}
        for r in rows if OVERLAP_TOLERANCE_M2 < r["covered"] < COVERED_SHARE * r["area"]
    ]
    return whole, partial


def _held_by_others(conn: Connection, parcel_ids: list[int], party_id: int) -> None:
    """Land under another party's right that no allocation or lease decision limits in time (a
    household's long-term right from first registration, a transfer ...) must be recovered
    (thu hồi) before the State allocates or leases it again."""
    if not parcel_ids:
        return
    R = lt.rrr
    rows = conn.execute(
        select(R.c.id, R.c.parcel_id, R.c.type, lt.party.c.name, P.c.ward_code, P.c.sheet_no, P.c.parcel_no,
               func.ST_AsBinary(P.c.geom).label("wkb"))
        .join(lt.party, lt.party.c.id == R.c.party_id).join(P, P.c.id == R.c.parcel_id)
        .where(R.c.parcel_id.in_(parcel_ids), R.c.kind == "right", R.c.end_lifespan.is_(None),
               R.c.party_id != party_id,
               or_(R.c.source_id.is_(None), R.c.source_id.not_in(select(A.c.source_id))))
        .order_by(R.c.id)
    ).mappings().all()
    if rows:
        names = ", ".join(f"{r['ward_code']}/{r['sheet_no']}/{r['parcel_no']} ({r['name']})" for r in rows)
        raise RuleViolation(
            f"the land is held under another party's right: {names}; recover it first",
            details={"reason": "held by another party",
                     "rights": [{"rrr_id": r["id"], "parcel_id": r["parcel_id"], "type": r["type"],
                                 "party": r["name"]} for r in rows],
                     "geometry": to_geojson(unary_union([from_wkb(r["wkb"]) for r in rows]))},
        )


def _term_text(kind: str, term_start: date, term_end: date | None) -> str:
    end = term_end.isoformat() if term_end else "lâu dài (long-term)"
    return f"{'giao đất' if kind == 'allocation' else 'thuê đất'} {term_start.isoformat()} - {end}"


def allocate(conn: Connection, actor: str, *, decision_no: str, decision_date, kind: str, payment: str,
             party_id: int, land_use: str, term_start, term_end=None, purpose: str = "",
             parcel_ids: list[int] | None = None, geom=None, issuer: str | None = None) -> dict:
    """Record an allocation or lease decision and create its rights in the register."""
    if not isinstance(decision_no, str) or not decision_no.strip() or len(decision_no) > 100:
        raise InvalidInput("decision_no is required (at most 100 characters)")
    if not isinstance(purpose, str) or len(purpose) > 500:
        raise InvalidInput("purpose must be text of at most 500 characters")
    decision_date = parse_date("decision_date", decision_date)
    term_start = parse_date("term_start", term_start)
    term_end = parse_date("term_end", term_end, required=False)
    _check_terms(kind, payment, term_start, term_end)
    _check_refs(conn, party_id, land_use)
    land, named = _land(conn, parcel_ids, geom)
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(literal("land-allocation")))))
    if conn.execute(select(A.c.id).where(A.c.decision_no == decision_no.strip())).first():
        raise Conflict(f"decision {decision_no} is recorded already")
    _conflicts(conn, land, term_start, term_end)
    if named is not None:
        covered, partial = [(p["id"], p["geom"].area) for p in named], []
    else:
        covered, partial = _covered_parcels(conn, land)
    _held_by_others(conn, [pid for pid, _ in covered], party_id)
    source_id = register.create_source(conn, {
        "kind": "decision", "reference": decision_no.strip(), "issued_on": decision_date.isoformat(), "issuer": issuer,
        "description": f"{_term_text(kind, term_start, term_end)}; {land_use} {purpose}".strip(),
    })
    row = conn.execute(
        insert(A).values(decision_no=decision_no.strip(), decision_date=decision_date, kind=kind, payment=payment,
                         party_id=party_id, land_use=land_use, purpose=purpose, term_start=term_start,
                         term_end=term_end, source_id=source_id, created_by=actor, geom=to_db(land))
        .returning(A.c.id)
    ).scalar_one()
    for parcel_id, area in covered:
        rrr_id = register.add_rrr(conn, actor, parcel_id, kind="right", type=RIGHT_TYPES[kind], party_id=party_id,
                                  share=1.0, description=f"{_term_text(kind, term_start, term_end)}; {land_use}",
                                  source=source_id)
        conn.execute(insert(AP).values(allocation_id=row, parcel_id=parcel_id, rrr_id=rrr_id, covered_area=area))
    out = get_allocation(conn, row)
    out["partially_covered_parcels"] = partial
    audit.record(conn, actor=actor, action=f"land_allocation.{kind}", target_type="land_allocation", target_id=row,
                 after={k: v for k, v in out.items() if k != "geometry"})
    return out


_COLUMNS = [c for c in A.c if c.name != "geom"]


def _allocation_dict(row) -> dict:
    out = dict(row)
    geom = from_wkb(out.pop("wkb", None))
    for key, value in out.items():
        if isinstance(value, date):
            out[key] = value.isoformat()
    if geom is not None:
        out["geometry"] = to_geojson(geom)
    return out


def get_allocation(conn: Connection, allocation_id: int) -> dict:
    row = conn.execute(
        select(*_COLUMNS, lt.party.c.name.label("party_name"), func.ST_AsBinary(A.c.geom).label("wkb"))
        .join(lt.party, lt.party.c.id == A.c.party_id).where(A.c.id == allocation_id)
    ).mappings().first()
    if row is None:
        raise NotFound(f"no allocation or lease {allocation_id}")
    out = _allocation_dict(row)
    out["parcels"] = [
        dict(r) for r in conn.execute(
            select(AP.c.parcel_id, AP.c.rrr_id, AP.c.covered_area, P.c.ward_code, P.c.sheet_no, P.c.parcel_no)
            .join(P, P.c.id == AP.c.parcel_id).where(AP.c.allocation_id == allocation_id).order_by(AP.c.parcel_id)
        ).mappings()
    ]
    return out


def list_allocations(conn: Connection, *, kind: str | None = None, status: str | None = None,
                     party_id: int | None = None, limit: int = 500) -> list[dict]:
    stmt = select(*_COLUMNS).order_by(A.c.id).limit(limit)
    if kind is not None:
        if kind not in ALLOCATION_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(ALLOCATION_KINDS)}")
        stmt = stmt.where(A.c.kind == kind)
    if status is not None:
        if status not in ("active", "revoked"):
            raise InvalidInput("status must be active or revoked")
        stmt = stmt.where(A.c.status == status)
    if party_id is not None:
        stmt = stmt.where(A.c.party_id == party_id)
    return [_allocation_dict(r) for r in conn.execute(stmt).mappings()]


def _today(conn: Connection, today: date | None) -> date:
    return today or conn.execute(select(func.current_date())).scalar_one()


def expiring(conn: Connection, within_days: int, *, today: date | None = None, kind: str | None = None) -> list[dict]:
    """Active leases and allocations whose term ends within ``within_days`` from ``today`` (soonest first)."""
    if not isinstance(within_days, int) or isinstance(within_days, bool) or not 0 <= within_days <= 36500:
        raise InvalidInput("within_days must be an integer from 0 to 36500")
    today = _today(conn, today)
    stmt = select(*_COLUMNS).where(
        A.c.status == "active", A.c.term_end >= today, A.c.term_end <= today + timedelta(days=within_days)
    ).order_by(A.c.term_end, A.c.id)
    if kind is not None:
        stmt = stmt.where(A.c.kind == kind)
    return [{**_allocation_dict(r), "days_left": (r["term_end"] - today).days} for r in conn.execute(stmt).mappings()]


def expired(conn: Connection, *, today: date | None = None, kind: str | None = None) -> list[dict]:
    """Active (not revoked, not renewed) leases and allocations whose term has ended."""
    today = _today(conn, today)
    stmt = select(*_COLUMNS).where(A.c.status == "active", A.c.term_end < today).order_by(A.c.term_end, A.c.id)
    if kind is not None:
        stmt = stmt.where(A.c.kind == kind)
    return [{**_allocation_dict(r), "days_expired": (today - r["term_end"]).days}
            for r in conn.execute(stmt).mappings()]


def terms_of_right(conn: Connection, rrr_id: int) -> dict | None:
    """The allocation or lease terms of a right (also of its copies after parcel changes), or None."""
    R = lt.rrr
    row = conn.execute(
        select(*_COLUMNS).join(R, R.c.source_id == A.c.source_id).where(R.c.id == rrr_id)
    ).mappings().first()
    return _allocation_dict(row) if row else None


def revoke(conn: Connection, actor: str, allocation_id: int, *, reason: str) -> dict:
    """Revoke (thu hồi) or end an allocation/lease: its current rights end now. Audited."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a revocation needs a reason (and the decision number in it)")
    row = conn.execute(select(A.c.id, A.c.status, A.c.source_id).where(A.c.id == allocation_id)
                       .with_for_update()).first()
    if row is None:
        raise NotFound(f"no allocation or lease {allocation_id}")
    if row.status != "active":
        raise Conflict(f"allocation {allocation_id} is {row.status} already")
    conn.execute(update(A).where(A.c.id == allocation_id).values(status="revoked", revoked_at=func.now(),
                                                                 revoked_reason=reason))
    R = lt.rrr
    ended = list(conn.execute(
        select(R.c.id).where(R.c.source_id == row.source_id, R.c.end_lifespan.is_(None)).order_by(R.c.id)
    ).scalars())
    register.end_rrr(conn, actor, ended, reason=f"allocation {allocation_id} revoked: {reason}"[:500])
    audit.record(conn, actor=actor, action="land_allocation.revoke", target_type="land_allocation",
                 target_id=allocation_id, before={"status": "active"}, after={"status": "revoked"},
                 detail={"reason": reason, "rights_ended": ended})
    return get_allocation(conn, allocation_id)
