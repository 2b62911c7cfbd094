"""Land-use right certificates (giấy chứng nhận quyền sử dụng đất): issue, supersede, history, extract.

A certificate certifies parcels (parcel versions), their holders with shares summing to 100 %,
land-use purposes and terms, and assets attached to land; it is linked to the holders' rights in
the register. It is issued on a dossier of the licensing state machine (kinds below) when the
dossier is ``approved``; issuing moves the dossier to ``issued`` in the same transaction.

A certificate is never edited: a re-issue or a change registration issues a new certificate
whose ``supersedes_id`` points at the old one, which is marked ``superseded``; the chain is the
history. The database enforces it (migration 0006): content columns cannot be updated, holders,
parcels and rights are written only in the issuing transaction, and at commit the shares must sum
to 100 % and at least one parcel must be certified.

The printable extract (HTML page, PDF through WeasyPrint) draws each parcel from its geometry as
inline SVG: vertices numbered clockwise from the north-west corner, their VN-2000 coordinates in
the cadastral convention (X = northing, Y = easting), edge lengths, the numbers of adjacent
current parcels, area, purposes, terms and holders.
"""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal
from functools import lru_cache
from html import escape
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from shapely.geometry import Point, Polygon, box
from shapely.geometry.polygon import orient
from sqlalchemy import and_, func, insert, literal, or_, select, update
from sqlalchemy.engine import Connection

from gisserver import audit, schema
from gisserver.errors import Conflict, InvalidInput, NotFound, RuleViolation
from licensing import register
from licensing import tables as lt
from licensing.allocation import is_id, terms_of_right
from licensing.dossiers import Actor, transition
from licensing.geometry import as_multipolygon, from_wkb, to_db
from licensing.records_tables import (
    USE_FORMS,
    land_certificate,
    land_certificate_holder,
    land_certificate_parcel,
    land_certificate_right,
)
from licensing.rules import publish_rule_version, rule_in_force

GC, GH, GP, GR = land_certificate, land_certificate_holder, land_certificate_parcel, land_certificate_right
P, R, Pa, D = schema.parcel, lt.rrr, lt.party, lt.dossier

#: dossier kind -> (certificate procedure, statutory working days). Days: Decree 101/2024/NĐ-CP
#: Art. 22 (verify); they live in the ``dossier_deadlines`` rule table like every other kind.
CERTIFICATE_DOSSIER_KINDS = {
    "certificate_first_issue": ("first_issue", 20),
    "certificate_reissue": ("reissue", 7),
    "change_registration": ("change_registration", 10),
}
DEADLINES_BASIS = "Certificates: Decree 101/2024/NĐ-CP Art. 22 (verify)"
SHARE_TOLERANCE = Decimal("0.01")
_SERIAL_RE = re.compile(r"^[A-Z]{2} ?[0-9]{6,8}$")
ORIGINS = {
    ("allocation", "none"): "Nhà nước giao đất không thu tiền sử dụng đất",
    ("allocation", "one_off"): "Nhà nước giao đất có thu tiền sử dụng đất",
    ("lease", "annual"): "Nhà nước cho thuê đất trả tiền thuê đất hàng năm",
    ("lease", "one_off"): "Nhà nước cho thuê đất trả tiền thuê đất một lần cho cả thời gian thuê",
}


# --- dossier kinds ------------------------------------------------------------------------------------

def enable_certificate_dossiers(conn: Connection, actor: str, *, effective_from: date | None = None) -> bool:
    """Add the certificate dossier kinds to the ``dossier_deadlines`` rule table (a new version) if
    the version in force lacks them. Returns True when a version was published."""
    on = effective_from or conn.execute(select(func.current_date())).scalar_one()
    current = rule_in_force(conn, "dossier_deadlines", on)
    days = dict(current.data.get("working_days", {}))
    missing = {k: d for k, (_, d) in CERTIFICATE_DOSSIER_KINDS.items() if k not in days}
    if not missing:
        return False
    basis = current.legal_basis
    if DEADLINES_BASIS not in basis:
        basis = f"{basis}; {DEADLINES_BASIS}"
    publish_rule_version(conn, actor, "dossier_deadlines", data={**current.data, "working_days": {**days, **missing}},
                         effective_from=on, legal_basis=basis, verify=True,
                         note="certificate dossier kinds (first issue, re-issue, change registration)")
    return True


# --- reading ------------------------------------------------------------------------------------------

def _iso(value):
    return value.isoformat() if isinstance(value, date) else value


def get_certificate(conn: Connection, certificate_id: int) -> dict:
    row = conn.execute(
        select(GC, D.c.code.label("dossier_code"), D.c.kind.label("dossier_kind")).join(D, D.c.id == GC.c.dossier_id)
        .where(GC.c.id == certificate_id)
    ).mappings().first()
    if row is None:
        raise NotFound(f"no certificate {certificate_id}")
    out = {k: _iso(v) for k, v in row.items()}
    out["holders"] = [
        {"party_id": h["party_id"], "name": h["name"], "kind": h["kind"], "share": float(h["share"])}
        for h in conn.execute(
            select(GH.c.party_id, GH.c.share, Pa.c.name, Pa.c.kind).join(Pa, Pa.c.id == GH.c.party_id)
            .where(GH.c.certificate_id == certificate_id).order_by(GH.c.share.desc(), GH.c.party_id)
        ).mappings()
    ]
    out["parcels"] = [
        {k: _iso(v) for k, v in p.items()}
        for p in conn.execute(
            select(GP, P.c.ward_code, P.c.sheet_no, P.c.parcel_no, P.c.address, P.c.end_lifespan)
            .join(P, P.c.id == GP.c.parcel_id).where(GP.c.certificate_id == certificate_id).order_by(GP.c.parcel_id)
        ).mappings()
    ]
    for p in out["parcels"]:
        p["current"] = p.pop("end_lifespan") is None
    out["rights"] = list(conn.execute(
        select(GR.c.rrr_id).where(GR.c.certificate_id == certificate_id).order_by(GR.c.rrr_id)).scalars())
    out["superseded_by_id"] = conn.execute(select(GC.c.id).where(GC.c.supersedes_id == certificate_id)).scalar()
    return out


def certificate_history(conn: Connection, certificate_id: int) -> list[dict]:
    """The chain of certificates the given one belongs to, oldest first (each superseding the previous)."""
    get_certificate(conn, certificate_id)
    chain = [certificate_id]
    while (prev := conn.execute(select(GC.c.supersedes_id).where(GC.c.id == chain[0])).scalar()) is not None:
        chain.insert(0, prev)
    while (nxt := conn.execute(select(GC.c.id).where(GC.c.supersedes_id == chain[-1])).scalar()) is not None:
        chain.append(nxt)
    rows = conn.execute(
        select(GC.c.id, GC.c.certificate_no, GC.c.serial, GC.c.procedure, GC.c.status, GC.c.issue_date,
               GC.c.superseded_at, GC.c.supersedes_id).where(GC.c.id.in_(chain))
    ).mappings().all()
    by_id = {r["id"]: {k: _iso(v) for k, v in r.items()} for r in rows}
    return [by_id[i] for i in chain]


def certificates_of_parcel(conn: Connection, parcel_id: int, *, include_superseded: bool = False) -> list[dict]:
    stmt = (select(GC.c.id, GC.c.certificate_no, GC.c.serial, GC.c.status, GC.c.issue_date)
            .join(GP, GP.c.certificate_id == GC.c.id).where(GP.c.parcel_id == parcel_id).order_by(GC.c.id))
    if not include_superseded:
        stmt = stmt.where(GC.c.status == "valid")
    return [{k: _iso(v) for k, v in r.items()} for r in conn.execute(stmt).mappings()]


# --- issuing ------------------------------------------------------------------------------------------

def _dossier(conn: Connection, dossier_id) -> dict:
    if not is_id(dossier_id):
        raise InvalidInput("dossier_id must be a positive integer id")
    row = conn.execute(select(D).where(D.c.id == dossier_id).with_for_update()).mappings().first()
    if row is None:
        raise InvalidInput(f"no dossier {dossier_id}")
    if row["kind"] not in CERTIFICATE_DOSSIER_KINDS:
        raise InvalidInput(f"dossier {row['code']} is a {row['kind']} dossier; certificates are issued on "
                           f"{', '.join(CERTIFICATE_DOSSIER_KINDS)} dossiers")
    if row["state"] != "approved":
        raise Conflict(f"dossier {row['code']} is {row['state']}: a certificate is issued on an approved dossier")
    return dict(row)


def _land_use_ok(conn: Connection, code) -> bool:
    return isinstance(code, str) and conn.execute(
        select(schema.land_use_code.c.code).where(schema.land_use_code.c.code == code)).first() is not None


def _parcel_entries(conn: Connection, parcels) -> list[dict]:
    if not isinstance(parcels, list) or not parcels:
        raise InvalidInput("parcels must be a non-empty list of {parcel_id, land_use?, purpose?, term_end?, ...}")
    out, seen = [], set()
    for item in parcels:
        entry = {"parcel_id": item} if is_id(item) else item
        if not isinstance(entry, dict) or not is_id(entry.get("parcel_id")):
            raise InvalidInput("each parcel needs an integer parcel_id")
        unknown = set(entry) - {"parcel_id", "land_use", "purpose", "term_end", "use_form", "origin", "area"}
        if unknown:
            raise InvalidInput(f"unknown parcel fields: {', '.join(sorted(unknown))}")
        if entry["parcel_id"] in seen:
            raise InvalidInput(f"parcel {entry['parcel_id']} is listed twice")
        seen.add(entry["parcel_id"])
        parcel = register.get_parcel(conn, entry["parcel_id"])
        if parcel["end_lifespan"] is not None:
            raise Conflict(f"parcel version {parcel['id']} is not current: certify the current version")
        out.append({**entry, "parcel": parcel})
    return out


def _current_rights(conn: Connection, parcel_ids: list[int]) -> list[dict]:
    return [dict(r) for r in conn.execute(
        select(R.c.id, R.c.parcel_id, R.c.party_id, R.c.share, R.c.type, R.c.source_id)
        .where(R.c.parcel_id.in_(parcel_ids), R.c.kind == "right", R.c.end_lifespan.is_(None)).order_by(R.c.id)
    ).mappings()]


def _holders(conn: Connection, holders, rights: list[dict], *, must_hold: bool = True) -> list[tuple[int, Decimal]]:
    """(party, share %) of the certificate: as given, or from the current rights of the parcels."""
    if holders is None:
        parties: dict[int, float | None] = {}
        for r in rights:
            parties.setdefault(r["party_id"], r["share"])
        if not parties:
            raise RuleViolation("the parcels have no current right in the register: register the rights first")
        if any(s is None for s in parties.values()):
            equal = Decimal(100) / len(parties)
            return [(p, equal.quantize(Decimal("0.0001"))) for p in parties]
        return [(p, (Decimal(str(s)) * 100).quantize(Decimal("0.0001"))) for p, s in parties.items()]
    if not isinstance(holders, list) or not holders:
        raise InvalidInput("holders must be a non-empty list of {party_id, share} (share in percent)")
    out = []
    for h in holders:
        if not isinstance(h, dict) or not is_id(h.get("party_id")) or isinstance(h.get("share"), bool) \
                or not isinstance(h.get("share"), int | float) or not 0 < h["share"] <= 100:
            raise InvalidInput("each holder is {party_id: integer, share: percent in (0, 100]}")
        if conn.execute(select(Pa.c.id).where(Pa.c.id == h["party_id"])).first() is None:
            raise InvalidInput(f"no party {h['party_id']}")
        out.append((h["party_id"], Decimal(str(h["share"])).quantize(Decimal("0.0001"))))
    if len({p for p, _ in out}) != len(out):
        raise InvalidInput("a party is listed twice among the holders")
    holding = {r["party_id"] for r in rights}
    lacking = [p for p, _ in out if p not in holding]
    if lacking and must_hold:
        raise RuleViolation(f"part(ies) {lacking} hold no current right on these parcels in the register",
                            details={"party_ids": lacking})
    return out


def _transfer_rights(conn: Connection, actor: str, parcel_ids: list[int], rights: list[dict],
                     holders: list[tuple[int, Decimal]], transfer: dict) -> list[dict]:
    """Change registration of a transfer (chuyển nhượng, thừa kế, tặng cho ...): the parcels' current
    rights end and the new holders get rights with their shares. A right whose terms come from an
    allocation or lease decision keeps that decision as its source (its terms go with it); the
    transfer document is recorded as a register source otherwise."""
    if not isinstance(transfer, dict) or not isinstance(transfer.get("reference"), str) \
            or not transfer["reference"].strip():
        raise InvalidInput("transfer is {reference, kind?, issued_on?}: the contract or document of the transfer")
    if not rights:
        raise RuleViolation("the parcels have no current right to transfer")
    document = register.create_source(conn, {"kind": transfer.get("kind") or "contract",
                                             "reference": transfer["reference"],
                                             "issued_on": _iso(transfer.get("issued_on")),
                                             "description": "transfer registered on a land-use right certificate"})
    register.end_rrr(conn, actor, [r["id"] for r in rights], reason=f"transfer {transfer['reference']}"[:500])
    for parcel_id in parcel_ids:
        kept = [r for r in rights if r["parcel_id"] == parcel_id]
        right_type = kept[0]["type"] if kept else "land_use_right"
        decision = next((r["source_id"] for r in kept if terms_of_right(conn, r["id"])), None)
        for party_id, share in holders:
            register.add_rrr(conn, actor, parcel_id, kind="right", type=right_type, party_id=party_id,
                             share=float(share / 100), source=decision or document,
                             description=f"transfer {transfer['reference'].strip()}")
    return _current_rights(conn, parcel_ids)


def _check_shares(holders: list[tuple[int, Decimal]]) -> None:
    total = sum(s for _, s in holders)
    if abs(total - 100) > SHARE_TOLERANCE:
        raise RuleViolation(f"the holders' shares sum to {total}%, not 100%", details={"total": float(total)})


def _parcel_row(conn: Connection, entry: dict, rights: list[dict]) -> dict:
    parcel = entry["parcel"]
    terms = next((t for r in rights if r["parcel_id"] == parcel["id"] if (t := terms_of_right(conn, r["id"]))), None)
    # the allocation or lease decision fixes the purpose; else the parcel's registered land use
    land_use = entry.get("land_use") or (terms["land_use"] if terms else parcel["land_use"])
    if not _land_use_ok(conn, land_use):
        raise InvalidInput(f"parcel {parcel['id']}: land-use code {land_use!r} is not in the code list; give land_use")
    use_form = entry.get("use_form") or ("joint" if len({r["party_id"] for r in rights}) > 1 else "private")
    if use_form not in USE_FORMS:
        raise InvalidInput(f"use_form must be one of {', '.join(USE_FORMS)}")
    term_end = entry.get("term_end", terms["term_end"] if terms else None)
    if term_end is not None:
        try:
            term_end = term_end if isinstance(term_end, date) else date.fromisoformat(term_end)
        except (TypeError, ValueError):
            raise InvalidInput("term_end must be a date YYYY-MM-DD (or null for long-term)") from None
    origin = entry.get("origin") or (ORIGINS.get((terms["kind"], terms["payment"]), "") if terms else "")
    area = entry.get("area") or parcel["legal_area"] or round(parcel["geom"].area, 1)
    if not isinstance(area, int | float) or isinstance(area, bool) or not math.isfinite(area) or area <= 0:
        raise InvalidInput("area must be a positive number of m2")
    purpose = entry.get("purpose") or (terms["purpose"] if terms else "")
    if not isinstance(purpose, str) or not isinstance(origin, str):
        raise InvalidInput("purpose and origin are text")
    return {"parcel_id": parcel["id"], "land_use": land_use, "purpose": purpose, "area": float(area),
            "term_end": term_end, "use_form": use_form, "origin": origin}


def _check_supersedes(conn: Connection, procedure: str, supersedes_id, parcel_ids: list[int]) -> dict | None:
    if procedure == "first_issue":
        if supersedes_id is not None:
            raise InvalidInput("a first issue supersedes nothing; use a re-issue or change registration dossier")
        # a parcel that is, or comes from (split, merge, adjustment), certified land needs a change registration
        versions = set(parcel_ids)
        for pid in parcel_ids:
            versions |= {e["parent_id"] for e in register.lineage(conn, pid, direction="ancestors")["edges"]}
        clash = conn.execute(
            select(GC.c.certificate_no, GP.c.parcel_id).join(GP, GP.c.certificate_id == GC.c.id)
            .where(GC.c.status == "valid", GP.c.parcel_id.in_(sorted(versions))).order_by(GC.c.id)
        ).first()
        if clash:
            raise RuleViolation(f"parcel version {clash.parcel_id} is on valid certificate {clash.certificate_no}: "
                                "re-issue or register the change instead",
                                details={"certificate_no": clash.certificate_no, "parcel_id": clash.parcel_id})
        return None
    if not is_id(supersedes_id):
        raise InvalidInput(f"a {procedure} names the certificate it supersedes (supersedes_id)")
    old = conn.execute(select(GC).where(GC.c.id == supersedes_id).with_for_update()).mappings().first()
    if old is None:
        raise InvalidInput(f"no certificate {supersedes_id}")
    if old["status"] != "valid":
        raise Conflict(f"certificate {old['certificate_no']} is {old['status']}: "
                       "only a valid certificate is superseded")
    return dict(old)


def _numbers(conn: Connection, dossier: dict, entries: list[dict], issue_date: date, serial, barcode,
             register_entry_no) -> dict:
    if not isinstance(serial, str) or not _SERIAL_RE.match(serial.strip().upper()):
        raise InvalidInput("serial is the number printed on the blank (số phát hành), e.g. 'DA 123456'")
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(literal("land-certificate")))))
    count = conn.execute(select(func.count()).select_from(GC)).scalar_one()
    ward = "".join(ch for ch in entries[0]["parcel"]["ward_code"] if ch.isdigit())[-5:].rjust(5, "0")
    numbers = {
        "certificate_no": f"GCN-{dossier['code']}",
        "serial": serial.strip().upper(),
        # barcode: ward code, year, sequence (layout to verify against the Ministry's circular)
        "barcode": barcode or f"{ward}{issue_date:%y}{count + 1:06d}",
        "register_entry_no": register_entry_no or f"CS{count + 1:05d}",
    }
    for key in ("serial", "barcode", "register_entry_no"):
        if not isinstance(numbers[key], str) or len(numbers[key]) > 32:
            raise InvalidInput(f"{key} must be text of at most 32 characters")
        if conn.execute(select(GC.c.id).where(getattr(GC.c, key) == numbers[key])).first():
            raise Conflict(f"{key} {numbers[key]} is used by another certificate")
    return numbers


def issue_certificate(conn: Connection, actor: Actor, *, dossier_id: int, parcels: list, serial: str,
                      issuing_authority: str, holders: list | None = None, supersedes_id: int | None = None,
                      issue_date: date | None = None, barcode: str | None = None,
                      register_entry_no: str | None = None, assets: list | None = None, notes: str = "",
                      transfer: dict | None = None) -> dict:
    """Issue a certificate on an approved certificate dossier (which becomes ``issued``).

    A change registration with ``transfer`` ({reference, kind?, issued_on?}) also registers the
    transfer: the parcels' current rights end and the given holders get rights with their shares.
    """
    if actor.role not in ("officer", "admin"):
        raise InvalidInput("certificates are issued by an officer or an admin")
    if not isinstance(issuing_authority, str) or not issuing_authority.strip():
        raise InvalidInput("issuing_authority is required (e.g. Sở Tài nguyên và Môi trường TP.HCM)")
    if assets is not None and (not isinstance(assets, list) or not all(isinstance(a, dict) for a in assets)):
        raise InvalidInput("assets must be a list of objects (kind, description, floor_area ...)")
    if not isinstance(notes, str) or len(notes) > 2000:
        raise InvalidInput("notes must be text of at most 2000 characters")
    dossier = _dossier(conn, dossier_id)
    procedure = CERTIFICATE_DOSSIER_KINDS[dossier["kind"]][0]
    entries = _parcel_entries(conn, parcels)
    parcel_ids = [e["parcel"]["id"] for e in entries]
    old = _check_supersedes(conn, procedure, supersedes_id, parcel_ids)
    if transfer is not None and (procedure != "change_registration" or holders is None):
        raise InvalidInput("a transfer is registered on a change_registration dossier and names the new holders")
    rights = _current_rights(conn, parcel_ids)
    chosen = _holders(conn, holders, rights, must_hold=transfer is None)
    _check_shares(chosen)
    if transfer is not None:
        rights = _transfer_rights(conn, actor.name, parcel_ids, rights, chosen, transfer)
    issue_date = issue_date or conn.execute(select(func.current_date())).scalar_one()
    rows = [_parcel_row(conn, e, rights) for e in entries]
    numbers = _numbers(conn, dossier, entries, issue_date, serial, barcode, register_entry_no)
    if old is not None:
        conn.execute(update(GC).where(GC.c.id == old["id"]).values(status="superseded", superseded_at=func.now()))
    cert_id = conn.execute(
        insert(GC).values(**numbers, issue_date=issue_date, issuing_authority=issuing_authority.strip(),
                          procedure=procedure, dossier_id=dossier_id, supersedes_id=supersedes_id,
                          assets=assets or [], notes=notes, created_by=actor.name)
        .returning(GC.c.id)
    ).scalar_one()
    conn.execute(insert(GH), [{"certificate_id": cert_id, "party_id": p, "share": s} for p, s in chosen])
    conn.execute(insert(GP), [{"certificate_id": cert_id, **r} for r in rows])
    holder_ids = {p for p, _ in chosen}
    linked = sorted({r["id"] for r in rights if r["party_id"] in holder_ids})
    if linked:
        conn.execute(insert(GR), [{"certificate_id": cert_id, "rrr_id": r} for r in linked])
    transition(conn, actor, dossier_id, "issued", note=f"certificate {numbers['certificate_no']} issued")
    out = get_certificate(conn, cert_id)
    audit.record(conn, actor=actor.name, action=f"land_certificate.{procedure}", target_type="land_certificate",
                 target_id=cert_id, after=out, detail={"dossier": dossier["code"]})
    if old is not None:
        audit.record(conn, actor=actor.name, action="land_certificate.superseded", target_type="land_certificate",
                     target_id=old["id"], before={"status": "valid"},
                     after={"status": "superseded", "superseded_by": cert_id}, detail={"dossier": dossier["code"]})
    return out


def cancel_certificate(conn: Connection, actor: str, certificate_id: int, *, reason: str) -> dict:
    """Cancel (thu hồi) a valid certificate without a successor (e.g. by court order). Audited."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a cancellation needs a reason")
    row = conn.execute(select(GC.c.status).where(GC.c.id == certificate_id).with_for_update()).first()
    if row is None:
        raise NotFound(f"no certificate {certificate_id}")
    if row.status != "valid":
        raise Conflict(f"certificate {certificate_id} is {row.status}")
    conn.execute(update(GC).where(GC.c.id == certificate_id).values(status="cancelled", superseded_at=func.now()))
    audit.record(conn, actor=actor, action="land_certificate.cancel", target_type="land_certificate",
                 target_id=certificate_id, before={"status": "valid"}, after={"status": "cancelled"},
                 detail={"reason": reason})
    return get_certificate(conn, certificate_id)


# --- the printable extract ----------------------------------------------------------------------------

NEIGHBOUR_TOLERANCE = 0.05  # m: boundaries closer than this are shared
PLAN_SIZE = 420


def plan_vertices(polygon: Polygon) -> list[tuple[float, float]]:
    """Exterior vertices clockwise, starting at the north-west corner (largest N, then smallest E)."""
    ring = list(orient(polygon, sign=-1.0).exterior.coords)[:-1]
    start = max(range(len(ring)), key=lambda i: (round(ring[i][1] - ring[i][0], 3), -ring[i][0]))
    return ring[start:] + ring[:start]


def _neighbours(conn: Connection, parcel: dict, at=None) -> list[dict]:
    """Parcels sharing a boundary with ``parcel``: current ones, or those alive at ``at``."""
    g = to_db(parcel["geom"])
    alive = P.c.end_lifespan.is_(None) if at is None else and_(
        P.c.begin_lifespan <= at, or_(P.c.end_lifespan.is_(None), P.c.end_lifespan > at))
    rows = conn.execute(
        select(P.c.id, P.c.ward_code, P.c.sheet_no, P.c.parcel_no, func.ST_AsBinary(P.c.geom).label("wkb"))
        .where(alive, P.c.id != parcel["id"], func.ST_DWithin(P.c.geom, g, NEIGHBOUR_TOLERANCE))
        .order_by(P.c.sheet_no, P.c.parcel_no)
    ).mappings()
    out = []
    for r in rows:
        geom = from_wkb(r["wkb"])
        shared = parcel["geom"].boundary.intersection(geom.buffer(NEIGHBOUR_TOLERANCE))
        if shared.length < 0.1:
            continue  # touches at a corner only
        label = str(r["parcel_no"]) if r["sheet_no"] == parcel["sheet_no"] else f"{r['parcel_no']} (tờ {r['sheet_no']})"
        out.append({"id": r["id"], "label": label, "geom": geom, "shared": shared})
    return out


ROAD_SEARCH_M = 40.0


def _road_along(conn: Connection, point: Point) -> str | None:
    """Name of the road whose right of way reaches ``point`` (half its width plus 1 m from the centreline)."""
    road = schema.road
    g = to_db(point, multi=False)
    distance = func.ST_Distance(road.c.geom, g)
    return conn.execute(
        select(road.c.name)
        .where(func.ST_DWithin(road.c.geom, g, ROAD_SEARCH_M), road.c.name.is_not(None),
               distance <= func.coalesce(road.c.row_width, 0.0) / 2 + 1.0)
        .order_by(distance).limit(1)
    ).scalar()


def parcel_plan(conn: Connection, parcel_id: int, *, at=None) -> dict:
    """Vertices (numbered, X = N, Y = E), edges with lengths and neighbours (current, or alive at
    ``at``), area, of a parcel version."""
    parcel = register.get_parcel(conn, parcel_id)
    neighbours = _neighbours(conn, parcel, at)
    vertices, edges, n = [], [], 0
    for polygon in as_multipolygon(parcel["geom"]).geoms:
        ring = plan_vertices(polygon)
        first = n + 1
        for i, (e, north) in enumerate(ring):
            n += 1
            vertices.append({"no": n, "x": round(north, 3), "y": round(e, 3), "e": e, "n": north})
            e2, n2 = ring[(i + 1) % len(ring)]
            mid = ((e + e2) / 2, (north + n2) / 2)
            nbr = next((b for b in neighbours if b["geom"].buffer(NEIGHBOUR_TOLERANCE).contains(Point(mid))), None)
            edges.append({"from": n, "to": first if i == len(ring) - 1 else n + 1,
                          "length": round(math.hypot(e2 - e, n2 - north), 2), "mid": mid,
                          "neighbour": nbr["label"] if nbr else None})
    for edge in edges:
        edge["road"] = None if edge["neighbour"] else _road_along(conn, Point(edge["mid"]))
    return {
        "parcel": register.parcel_dict(parcel, with_geometry=False), "geom": parcel["geom"],
        "area": round(parcel["geom"].area, 1), "vertices": vertices, "edges": edges,
        "neighbours": [{"id": b["id"], "label": b["label"], "geom": b["geom"], "shared": b["shared"]}
                       for b in neighbours],
    }


class _Frame:
    """City-CRS metres -> SVG pixels (north up), around the parcel with a margin for labels."""

    def __init__(self, geom, size: int = PLAN_SIZE):
        minx, miny, maxx, maxy = geom.bounds
        pad = max(maxx - minx, maxy - miny) * 0.35 + 2.0
        self.minx, self.maxy = minx - pad, maxy + pad
        self.scale = size / max(maxx - minx + 2 * pad, maxy - miny + 2 * pad)
        self.width = (maxx - minx + 2 * pad) * self.scale
        self.height = (maxy - miny + 2 * pad) * self.scale
        self.extent = (self.minx, self.maxy - self.height / self.scale, self.minx + self.width / self.scale, self.maxy)

    def px(self, x, y) -> tuple[float, float]:
        return (x - self.minx) * self.scale, (self.maxy - y) * self.scale

    def path(self, geom) -> str:
        parts = []
        for polygon in as_multipolygon(geom).geoms:
            for ring in (polygon.exterior, *polygon.interiors):
                parts.append("M" + " L".join("{:.1f},{:.1f}".format(*self.px(x, y)) for x, y in ring.coords) + " Z")
        return " ".join(parts)


def plan_svg(plan: dict) -> str:
    """The parcel plan as inline SVG: neighbours, the parcel, numbered vertices, edge lengths, north arrow."""
    frame = _Frame(plan["geom"])
    view = box(*frame.extent)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{frame.width:.0f}" height="{frame.height:.0f}" '
           f'viewBox="0 0 {frame.width:.1f} {frame.height:.1f}" class="plan" font-family="DejaVu Sans, sans-serif">']
    centroid = plan["geom"].centroid
    for nbr in plan["neighbours"]:
        clipped = nbr["geom"].intersection(view)
        if clipped.is_empty:
            continue
        out.append(f'<path d="{frame.path(clipped)}" fill="#eee" stroke="#999" stroke-width="0.8"/>')
        # inside the visible part of the neighbour, near the shared boundary
        near = clipped.intersection(nbr["shared"].buffer(40 / frame.scale))
        spot = (near if not near.is_empty else clipped).representative_point()
        lx, ly = frame.px(spot.x, spot.y)
        minx, _, maxx, _ = plan["geom"].bounds
        anchor = "middle"
        if spot.x < minx:  # west of the parcel: the text ends just short of its boundary
            anchor, lx = "end", frame.px(minx, 0)[0] - 6
        elif spot.x > maxx:
            anchor, lx = "start", frame.px(maxx, 0)[0] + 6
        out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="12" text-anchor="{anchor}" fill="#555" '
                   f'class="neighbour">{escape(nbr["label"])}</text>')
    out.append(f'<path d="{frame.path(plan["geom"])}" fill="#fff8dc" stroke="#000" stroke-width="1.6"/>')
    for edge in plan["edges"]:
        # just inside the parcel, beside the middle of the edge
        x, y = frame.px(*edge["mid"])
        cx, cy = frame.px(centroid.x, centroid.y)
        dx, dy = cx - x, cy - y
        norm = math.hypot(dx, dy) or 1.0
        anchor = "start" if dx / norm > 0.5 else "end" if dx / norm < -0.5 else "middle"
        out.append(f'<text x="{x + dx / norm * 5:.1f}" y="{y + dy / norm * 9 + 3:.1f}" font-size="10" '
                   f'text-anchor="{anchor}" class="edge">{edge["length"]:.2f}</text>')
    for v in plan["vertices"]:
        x, y = frame.px(v["e"], v["n"])
        dx, dy = v["e"] - centroid.x, v["n"] - centroid.y
        norm = math.hypot(dx, dy) or 1.0
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#c00"/>')
        out.append(f'<text x="{x + dx / norm * 10:.1f}" y="{y - dy / norm * 10 + 4:.1f}" font-size="11" '
                   f'font-weight="bold" text-anchor="middle" fill="#c00" class="vertex">{v["no"]}</text>')
    area_x, area_y = frame.px(centroid.x, centroid.y)
    out.append(f'<text x="{area_x:.1f}" y="{area_y:.1f}" font-size="12" text-anchor="middle">'
               f'{escape(str(plan["parcel"]["parcel_no"]))}</text>')
    out.append(f'<text x="{area_x:.1f}" y="{area_y + 14:.1f}" font-size="11" text-anchor="middle">'
               f'{plan["area"]:.1f} m²</text>')
    out.append(f'<g transform="translate({frame.width - 24:.0f},28)"><path d="M0,-18 L6,4 L0,0 L-6,4 Z" fill="#000"/>'
               '<text x="0" y="16" font-size="11" text-anchor="middle">N</text></g>')
    out.append("</svg>")
    return "".join(out)


def certificate_extract(conn: Connection, certificate_id: int) -> dict:
    """Everything the printable extract shows, with one plan per certified parcel; the neighbours are
    those of the day the certificate was issued (the extract reproduces the certificate)."""
    cert = get_certificate(conn, certificate_id)
    issued_at = conn.execute(select(GC.c.created_at).where(GC.c.id == certificate_id)).scalar_one()
    plans = []
    for p in cert["parcels"]:
        plan = parcel_plan(conn, p["parcel_id"], at=issued_at)
        plans.append({**plan, "entry": p, "svg": Markup(plan_svg(plan))})
    return {"certificate": cert, "plans": plans}


TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def template_environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))


def render_extract_html(extract: dict) -> str:
    template = template_environment().get_template("certificate_extract.html")
    return template.render(c=extract["certificate"], plans=extract["plans"])


def render_extract_pdf(extract: dict) -> bytes:
    """The same page as PDF (WeasyPrint, offline: the page references no external resource)."""
    from weasyprint import HTML

    return HTML(string=render_extract_html(extract)).write_pdf()


def extract_json(extract: dict) -> dict:
    """The extract without geometry objects (for the JSON API)."""
    return {
        "certificate": extract["certificate"],
        "plans": [
            {"parcel_id": p["parcel"]["id"], "area": p["area"],
             "vertices": [{k: v[k] for k in ("no", "x", "y")} for v in p["vertices"]],
             "edges": [{k: e[k] for k in ("from", "to", "length", "neighbour", "road")} for e in p["edges"]],
             "neighbours": [{"id": b["id"], "label": b["label"]} for b in p["neighbours"]]}
            for p in extract["plans"]
        ],
    }
