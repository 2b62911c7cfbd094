"""Autocommit database connections for the read-only tile queries.

A tile miss is one ``SELECT ST_AsMVT(...)``. Through the SQLAlchemy pool it costs three round
trips (the pool's pre-ping, the query, the rollback when the connection is returned), and on a
loaded machine each round trip waits for the scheduler: measured in ``bench/tiles_mvt.py``, that
overhead was a third of the query time. These connections stay open in autocommit mode (a single
read-only statement needs no transaction) and run statements compiled once to SQL text with bound
parameters, so a miss is one round trip, like the hand-written query it is measured against.

A connection that fails (the server restarted, the network dropped) is discarded and the query
retried once on a new one. Idle connections are kept in a small free list, so any threading model
works (sync workers, gthread workers, the ASGI front's a2wsgi threads, the development server's
thread per request).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import psycopg2
from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class CompiledQuery:
    """SQL text with named (pyformat) parameters and the values of its constant parameters."""

    sql: str
    constants: dict

    @classmethod
    def of(cls, stmt, engine: Engine) -> CompiledQuery:
        compiled = stmt.compile(dialect=engine.dialect)
        return cls(str(compiled), {k: v for k, v in compiled.params.items() if v is not None})


class ReadConnections:
    """A free list of autocommit DBAPI connections to the engine's database."""

    def __init__(self, engine: Engine, max_idle: int = 4, application_name: str = "gisserver-tiles"):
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        self._cargs = cargs
        self._cparams = {**cparams, "application_name": application_name, "connect_timeout": 10}
        self._idle: list = []
        self._lock = threading.Lock()
        self.max_idle = max_idle

    def _connect(self):
        conn = psycopg2.connect(*self._cargs, **self._cparams)
        conn.autocommit = True
        return conn

    def _take(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _give_back(self, conn) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle and not conn.closed:
                self._idle.append(conn)
                return
        conn.close()

    def scalar(self, query: CompiledQuery, params: dict):
        """The first column of the first row of ``query`` run with ``params`` (plus its constants)."""
        values = {**query.constants, **params}
        conn = self._take()
        try:
            return self._run(conn, query.sql, values)
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            lost = bool(conn.closed)  # psycopg2 marks a connection the server dropped as closed
            conn.close()
            if not lost:
                raise
        except BaseException:
            conn.close()
            raise
        conn = self._connect()  # the idle connection was lost (server restart): once more
        try:
            return self._run(conn, query.sql, values)
        except BaseException:
            conn.close()
            raise

    def _run(self, conn, sql: str, values: dict):
        with conn.cursor() as cur:
            cur.execute(sql, values)
            row = cur.fetchone()
        self._give_back(conn)
        return None if row is None else row[0]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
