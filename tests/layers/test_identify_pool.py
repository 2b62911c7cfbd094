"""The ASGI front's pool of asyncpg connections (layers.identify_async.ConnectionPool), on a real
PostgreSQL: never more connections than its size, waiters served in turn, connections the server
dropped or a cancellation left in an unknown state replaced, nothing lent after close."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import text

from layers.identify_async import ConnectionPool, create_pool

NAME = "identify-pool-test"


def backends(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"),
                                 {"n": NAME}).scalars())


def terminate_all(engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n"),
                     {"n": NAME})


async def sleep_query(pool: ConnectionPool, seconds: float) -> int:
    """Borrow a connection as identify_async does: back when done, terminated when cancelled."""
    con = await pool.acquire()
    try:
        await con.execute("SELECT pg_sleep($1)", seconds)
    except BaseException:
        pool.release(con, broken=True)
        raise
    pool.release(con)
    return id(con)


def test_never_more_connections_than_its_size_and_waiters_served(database_url, db_engine):
    async def main():
        pool = await create_pool(database_url, 2, application_name=NAME)
        try:
            used = await asyncio.gather(*(sleep_query(pool, 0.05) for _ in range(8)))
            assert len(set(used)) == 2  # eight requests, two connections, each lent in turn
            assert pool._open == 2 and len(pool._idle) == 2 and not pool._waiters
            assert len(backends(db_engine)) == 2
        finally:
            await pool.close()
        assert pool._open == 0

    asyncio.run(main())
    assert backends(db_engine) == []


def test_connections_the_server_dropped_are_replaced(database_url, db_engine):
    async def main():
        pool = await create_pool(database_url, 2, application_name=NAME)
        try:
            await asyncio.gather(sleep_query(pool, 0.01), sleep_query(pool, 0.01))
            terminate_all(db_engine)
            await asyncio.sleep(0.2)  # the loop sees the sockets close
            con = await pool.acquire()  # the dropped ones are discarded, a new one opened
            try:
                assert await con.fetchval("SELECT 41 + 1") == 42
            finally:
                pool.release(con)
            assert pool._open == 1
            # a connection found dead only when used: the caller releases it as broken
            terminate_all(db_engine)
            con = await pool.acquire()
            with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresError, OSError)):
                await con.fetchval("SELECT pg_sleep(0.2)")
            pool.release(con, broken=True)
            assert pool._open == 0
            assert await sleep_query(pool, 0)
        finally:
            await pool.close()

    asyncio.run(main())


def test_a_cancelled_request_leaves_the_pool_whole(database_url, db_engine):
    async def main():
        pool = await create_pool(database_url, 1, application_name=NAME)
        try:
            busy = asyncio.create_task(sleep_query(pool, 0.3))
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(sleep_query(pool, 0))
            await asyncio.sleep(0.05)
            waiting.cancel()  # cancelled while waiting for the only connection
            busy.cancel()  # cancelled inside its query: that connection is terminated
            for task in (waiting, busy):
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert pool._open == 0 and not pool._idle
            assert await sleep_query(pool, 0)  # a new connection
            assert pool._open == 1
        finally:
            await pool.close()

    asyncio.run(main())


def test_nothing_is_lent_after_close(database_url):
    async def main():
        pool = await create_pool(database_url, 1, application_name=NAME)
        con = await pool.acquire()
        waiter = asyncio.create_task(pool.acquire())
        await asyncio.sleep(0.01)
        await pool.close()
        with pytest.raises(asyncpg.InterfaceError):
            await waiter
        pool.release(con)  # a connection lent before the close is closed on its return
        assert con.is_closed()
        with pytest.raises(asyncpg.InterfaceError):
            await pool.acquire()

    asyncio.run(main())
