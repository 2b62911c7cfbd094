"""Identify-at-point on asyncpg, for the ASGI front of the server (:mod:`gisserver.asgi`).

The same statement as :func:`layers.query.identify` (compiled once per layer version for both
drivers, :class:`layers.query._IdentifyPlan`), sent as a prepared statement on an asyncpg pool
from the worker's event loop: no thread hand-over, no per-request planning in PostgreSQL, rows
decoded in C. Rows become Feature texts through the same :func:`layers.query.feature_text`.

This path answers only what it can answer without blocking the event loop. It returns ``None``
(the caller then hands the request to the synchronous path, which answers it as always, with the
same bytes or the usual error) when a statement is not compiled yet for the layer, the catalogue
changed since it was compiled, the layer is missing, unreadable or restricted for the caller, the
values are out of range, or the database fails or dropped the connection.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from gisserver.security import Principal
from layers.catalogue import readable_from_row
from layers.query import (
    CRS84,
    MAX_IDENTIFY_TOLERANCE,
    CRSRef,
    Point,
    _IdentifyPlan,
    cached_caller_plan,
    feature_text,
    lean_engine,
)

log = logging.getLogger(__name__)


async def create_pool(dsn: str, size: int, application_name: str = "gisserver-identify") -> asyncpg.Pool:
    """An asyncpg pool whose rows decode as psycopg2's do where identify's output could differ:
    json/jsonb parsed, real (float4) from its text form (asyncpg's binary form would give
    1.100000023841858 for 1.1), timestamptz ±infinity as the largest/smallest UTC datetimes.

    A connection is not reset when it goes back to the pool (asyncpg's default costs a round trip,
    ``RESET ALL`` and more, per query): identify runs single statements in autocommit and changes
    no session state, as the lean psycopg2 pool (:func:`layers.query.lean_engine`). Nor is it
    closed after a while unused (asyncpg's inactivity timer is armed and cancelled on every
    release and acquire): the pool is small and lives as long as the worker."""
    return await asyncpg.create_pool(
        dsn, min_size=1, max_size=size, init=_init_connection, reset=_no_reset, command_timeout=60,
        max_inactive_connection_lifetime=0,
        server_settings={"application_name": application_name},
    )


async def _no_reset(con: asyncpg.Connection) -> None:
    return None


async def _init_connection(con: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await con.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await con.set_type_codec("float4", encoder=str, decoder=float, schema="pg_catalog", format="text")
    await con.set_type_codec("timestamptz", encoder=_timestamptz_tuple, decoder=_timestamptz_from_tuple,
                             schema="pg_catalog", format="tuple")


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INFINITY, _MINUS_INFINITY = 2**63 - 1, -(2**63)  # timestamptz's binary form of ±infinity


def _timestamptz_from_tuple(value: tuple[int]) -> datetime:
    """A timestamptz (microseconds since 2000 UTC) as psycopg2 decodes it: asyncpg's own codec
    gives ±infinity as naive datetimes, which identify would write without their 'Z'."""
    micros = value[0]
    if micros == _INFINITY:
        return datetime.max.replace(tzinfo=UTC)
    if micros == _MINUS_INFINITY:
        return datetime.min.replace(tzinfo=UTC)
    return _PG_EPOCH + micros * _MICROSECOND


def _timestamptz_tuple(value: datetime) -> tuple[int]:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return ((aware - _PG_EPOCH) // _MICROSECOND,)


async def identify_async(pool: asyncpg.Pool, engine, layers: list[str], point: Point, principal: Principal | None,
                         *, tolerance: float = 0.0, limit: int = 10,
                         out: CRSRef = CRS84) -> dict[str, list[str]] | None:
    """What :func:`layers.query.identify` returns for the same arguments, or None when this path
    cannot answer it (see the module's documentation)."""
    if not 0 <= tolerance <= MAX_IDENTIFY_TOLERANCE:
        return None
    lean = lean_engine(engine)
    plans: dict[str, _IdentifyPlan] = {}
    for name in layers:
        plan = cached_caller_plan(lean, name, out, principal)
        if plan is None:
            return None
        plans[name] = plan
    x, y = point.xy()
    params = {"x": x, "y": y, "srid": point.crs.srid, "tolerance": tolerance, "limit": limit}
    found: dict[str, list[str]] = {}
    try:
        async with pool.acquire() as con:
            for name, plan in plans.items():
                values = dict(plan.defaults)
                values.update(params)
                values["layer"] = name
                rows = await con.fetch(plan.async_sql, *[values[key] for key in plan.async_order])
                features = _features(rows, plan, name, principal)
                if features is None:
                    return None
                found[name] = features
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # input the database refuses, a dropped connection (asyncpg's pool replaces it): the
        # synchronous path runs the request again and answers it (a 400, or the features)
        log.debug("identify handed to the synchronous path: %s", exc)
        return None
    return found


def _features(rows, plan: _IdentifyPlan, name: str, principal: Principal | None) -> list[str] | None:
    head = rows[0] if rows else None
    info = plan.source.info
    if head is None or head["__layer_version"] != info.data_version or head["__layer_table"] != info.table_name:
        return None  # unknown layer, or the catalogue changed since the statement was compiled
    if principal is not None:
        if not readable_from_row(principal, head["__layer_access"], head["__layer_owner"], head["__layer_grants"]):
            return None
        if head["__layer_access"] == "restricted" and head["__id"] is not None:
            return None  # possibly an area-limited grant: the synchronous path filters by area
    return [feature_text(row, plan.properties, name) for row in rows if row["__id"] is not None]
