"""Identify-at-point on asyncpg, for the ASGI front of the server (:mod:`gisserver.asgi`).

The same statement as :func:`layers.query.identify` (compiled once per layer version for both
drivers, :class:`layers.query._IdentifyPlan`), sent as a prepared statement on a pool of asyncpg connections
from the worker's event loop: no thread hand-over, no per-request planning in PostgreSQL, rows
decoded in C. Rows become Feature texts through the same :func:`layers.query.feature_text`.

This path answers only what it can answer without blocking the event loop. It returns ``None``
(the caller then hands the request to the synchronous path, which answers it as always, with the
same bytes or the usual error) when a statement is not compiled yet for the layer, the catalogue
changed since it was compiled, the layer is missing, unreadable or restricted for the caller, the
values are out of range, or the database fails or dropped the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
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


class ConnectionPool:
    """At most ``size`` asyncpg connections of one event loop, lent last-in first-out.

    asyncpg's own Pool costs 28-41 µs of CPU per acquire and release (a timeout scope, a release
    shielded in a task of its own, an inactivity timer armed and cancelled), ~7 % of an identify's
    server CPU; lending from a list costs ~1 µs. Connections are opened on demand and kept; one
    whose state is unknown after an error or a cancellation, or that the server closed, is
    terminated instead of going back, and its place is opened again by the next request.

    Rows decode as psycopg2's do where identify's output could differ: json/jsonb parsed, real
    (float4) from its text form (asyncpg's binary form would give 1.100000023841858 for 1.1),
    timestamptz ±infinity as the largest/smallest UTC datetimes. Nothing is reset between uses:
    identify runs single statements in autocommit and changes no session state, as the lean
    psycopg2 pool (:func:`layers.query.lean_engine`).
    """

    def __init__(self, dsn: str, size: int, application_name: str = "gisserver-identify"):
        self.dsn, self.size, self.application_name = dsn, max(size, 1), application_name
        self._idle: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future] = deque()
        self._open = 0  # connections lent, idle or being opened
        self._closed = False

    async def acquire(self) -> asyncpg.Connection:
        while True:
            if self._closed:
                raise asyncpg.InterfaceError("the identify pool is closed")
            while self._idle:
                con = self._idle.pop()
                if not con.is_closed():
                    return con
                self._open -= 1
            if self._open < self.size:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    self._hand(None)
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                con = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.release(waiter.result())  # handed over just as the request was cancelled
                raise
            if con is not None:
                return con
            # None: a place was freed by a connection that went away; try again

    def release(self, con: asyncpg.Connection, *, broken: bool = False) -> None:
        """Give ``con`` back; ``broken``: its state is unknown (terminated, its place freed)."""
        if broken or self._closed or con.is_closed():
            self._open -= 1
            if not con.is_closed():
                con.terminate()
            self._hand(None)
        elif not self._hand(con):
            self._idle.append(con)

    def _hand(self, con: asyncpg.Connection | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(con)
                return True
        return False

    async def _connect(self) -> asyncpg.Connection:
        con = await asyncpg.connect(self.dsn, command_timeout=60,
                                    server_settings={"application_name": self.application_name})
        try:
            await _init_connection(con)
        except BaseException:
            con.terminate()
            raise
        return con

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for con in idle:
            self._open -= 1
            await con.close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("the identify pool is closed"))


async def create_pool(dsn: str, size: int, application_name: str = "gisserver-identify") -> ConnectionPool:
    """The identify pool, with one connection opened (so that a database that cannot be reached
    shows here)."""
    pool = ConnectionPool(dsn, size, application_name)
    pool.release(await pool.acquire())
    return pool


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


async def identify_async(pool: ConnectionPool, engine, layers: list[str], point: Point, principal: Principal | None,
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
        con = await pool.acquire()
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        log.debug("identify handed to the synchronous path (no connection): %s", exc)
        return None
    try:
        for name, plan in plans.items():
            values = dict(plan.defaults)
            values.update(params)
            values["layer"] = name
            rows = await con.fetch(plan.async_sql, *[values[key] for key in plan.async_order])
            features = _features(rows, plan, name, principal)
            if features is None:
                pool.release(con)
                return None
            found[name] = features
    except asyncpg.PostgresError as exc:
        # input the database refuses (the connection stays usable; one the server closed is
        # dropped by release): the synchronous path runs the request again and answers it
        pool.release(con)
        log.debug("identify handed to the synchronous path: %s", exc)
        return None
    except (asyncpg.InterfaceError, OSError) as exc:  # a dropped connection
        pool.release(con, broken=True)
        log.debug("identify handed to the synchronous path: %s", exc)
        return None
    except BaseException:  # cancelled (the client went away) or a bug: the connection's state is unknown
        pool.release(con, broken=True)
        raise
    pool.release(con)
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
