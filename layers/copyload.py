"""COPY of prepared text chunks into a table, overlapped with their preparation.

The chunks (COPY text format) are produced in a worker thread while the connection's thread
streams the previous ones to PostgreSQL: reading, reprojecting and validating (GDAL, PROJ and
GEOS release the GIL) run on one core while the server parses and stores rows on the other.
The queue is bounded, so memory stays at a few batches whatever the file size.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

from psycopg2 import sql

_DONE = object()


class _ChunkReader:
    """File-like object for ``copy_expert``: hands over the chunks of a producer thread."""

    def __init__(self, chunks: Iterator[bytes], depth: int = 3):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._buffer = b""
        self._finished = False
        self.error: BaseException | None = None
        self.waited = 0.0  # seconds COPY waited for the next chunk (the producer was the bottleneck)
        self._thread = threading.Thread(target=self._produce, args=(chunks,), daemon=True, name="ingest-prepare")
        self._thread.start()

    def _produce(self, chunks: Iterator[bytes]) -> None:
        try:
            for chunk in chunks:
                if not self._put(chunk):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.error = exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            self._put(_DONE)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def read(self, size: int = -1) -> bytes:
        while not self._buffer and not self._finished:
            t0 = time.perf_counter()
            item = self._queue.get()
            self.waited += time.perf_counter() - t0
            if item is _DONE:
                self._finished = True
                if self.error is not None:
                    raise self.error
            else:
                self._buffer = item
        if size is None or size < 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    readline = read

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
        self._thread.join()


def copy_chunks(dbapi_conn, schema_name: str, table_name: str, columns: list[str], chunks: Iterator[bytes]) -> float:
    """COPY ``chunks`` (text format, UTF-8) into ``schema.table (columns)`` on ``dbapi_conn``.

    Identifiers come from the layer catalogue and are quoted by psycopg2. Returns the seconds
    the COPY spent waiting for input (high: preparation is the bottleneck; low: the server is).
    """
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema_name, table_name), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    reader = _ChunkReader(chunks)
    try:
        with dbapi_conn.cursor() as cur:
            cur.copy_expert(statement, reader, size=1 << 20)
    except BaseException:
        if reader.error is not None:
            raise reader.error from None
        raise
    finally:
        reader.close()
    if reader.error is not None:
        raise reader.error
    return reader.waited
