"""The ASGI front of the server: what gunicorn's ``asgi`` worker serves in production.

    gunicorn --worker-class asgi --workers 2 app:asgi        (``gisserver serve`` does this)

Each worker process runs one event loop (uvloop) that reads requests with gunicorn's HTTP parser
(in C when the optional gunicorn_h1c is installed). The few hottest read-only requests
(identify-at-point: every click on the map) are answered on that loop by an ``async_paths(app)``
handler of their blueprint, which queries PostGIS through a pool of asyncpg connections: no thread
hand-over and no WSGI machinery per request. Every other request goes to the Flask application
(and its WSGI fast path, :mod:`gisserver.fastpath`) in a pool of ``GISSERVER_THREADS`` threads,
through a2wsgi, so map rendering, uploads and exports run as they always did and never block the
loop.

A handler answers only the plain case and returns ``None`` for anything else (a request whose
answer needs a synchronous step, an error, a database failure); the request then goes to Flask,
which answers it as always. So the two paths never differ in what a client sees: errors keep one
shape and one code path. Requests that carry a cookie (a browser session) always go to Flask, and
so do bearer tokens not verified in this process in the last ``GISSERVER_TOKEN_CACHE_SECONDS``
(verifying one reads the database).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from a2wsgi import WSGIMiddleware
from flask import Flask

from gisserver.errors import GISError
from gisserver.fastpath import query_args
from gisserver.security import ANONYMOUS, Principal

log = logging.getLogger(__name__)

#: handler(pool, args, principal) -> (body, headers) of a 200 answer, or None to let Flask answer
AsyncHandler = Callable[..., Awaitable["tuple[bytes, list[tuple[str, str]]] | None"]]

POOL_RETRY_SECONDS = 5.0  # after the pool could not be opened, Flask answers alone for this long


class AsgiFront:
    """ASGI application: async handlers by exact path, Flask (through a2wsgi) for the rest."""

    def __init__(self, flask_app: Flask, threads: int | None = None):
        gis = flask_app.extensions["gisserver"]
        self.engine = gis.engine
        self.tokens = gis.tokens
        self.pool_size = gis.settings.db_pool_size
        self.wsgi = WSGIMiddleware(_input_terminated(flask_app), workers=threads or gis.settings.threads)
        self.routes: dict[str, AsyncHandler] = {}
        self.answered = 0  # requests answered on the loop (for tests and diagnostics)
        self._pool = None
        self._pool_lock: asyncio.Lock | None = None
        self._pool_retry_at = 0.0
        self._finishing: set[asyncio.Future] = set()  # Flask calls still running for a client gone

    def route(self, path: str, handler: AsyncHandler) -> None:
        self.routes[path] = handler

    async def __call__(self, scope: dict, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["method"] == "GET":
                handler = self.routes.get(scope["path"])
                if handler is not None and await self._answered(handler, scope, send):
                    return
            await self._to_flask(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websocket: none served; a2wsgi closes it
            await self.wsgi(scope, receive, send)

    async def _to_flask(self, scope: dict, receive, send) -> None:
        """The request answered by Flask through a2wsgi. When the client leaves (gunicorn cancels
        the request, or send raises OSError) the rest of the response is dropped, so the Flask
        thread finishes; a2wsgi's thread otherwise waits for ever to queue the rest of a large
        response (a file) and the worker loses one of its threads per abandoned download."""
        gone = False
        sending: asyncio.Task | None = None  # a2wsgi's sender task while it waits on ``send``

        async def send_until_gone(message) -> None:
            nonlocal gone, sending
            if gone:
                return
            sending = asyncio.current_task()
            try:
                await send(message)
            except asyncio.CancelledError:
                if not gone:
                    raise  # cancelled for another reason than the client leaving
            except OSError:
                gone = True
            finally:
                sending = None

        flask = asyncio.ensure_future(self.wsgi(scope, receive, send_until_gone))
        try:
            await asyncio.shield(flask)
        except asyncio.CancelledError:
            gone = True
            if sending is not None:
                sending.cancel()  # a send blocked on the gone client: a2wsgi's sender drains the rest
            self._finishing.add(flask)  # a reference until the thread is done
            flask.add_done_callback(_forget_finished(self._finishing))
            raise

    async def _answered(self, handler: AsyncHandler, scope: dict, send) -> bool:
        headers = _headers(scope)
        if "cookie" in headers:
            return False
        caller = self._principal(headers.get("authorization", ""))
        args = query_args(scope["query_string"].decode("latin-1"))
        if caller is None or args is None:
            return False
        pool = await self._get_pool()
        if pool is None:
            return False
        try:
            answer = await handler(pool, args, caller)
        except GISError:
            return False  # Flask answers it again, with the problem document
        except Exception:  # a bug: logged, and Flask answers the request as it would without this path
            log.exception("async handler of %s failed; the request is handed to Flask", scope["path"])
            return False
        if answer is None:
            return False
        body, extra = answer
        out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra]
        out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": body})
        self.answered += 1
        return True

    def _principal(self, header: str) -> Principal | None:
        """The caller when known without the database: anonymous, or a recently verified token."""
        if not header:
            return ANONYMOUS
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.tokens.cached(token.strip())

    async def _get_pool(self):
        """This process's identify pool (asyncpg connections), opened on first use inside the worker's own loop (after
        gunicorn forked it); None while the database cannot be reached."""
        if self._pool is not None:
            return self._pool
        if time.monotonic() < self._pool_retry_at:
            return None
        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            if self._pool is None and time.monotonic() >= self._pool_retry_at:
                from layers.identify_async import create_pool

                dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
                try:
                    self._pool = await create_pool(dsn, self.pool_size)
                except Exception as exc:  # any failure to connect: Flask answers meanwhile
                    log.warning("identify pool not opened (Flask answers meanwhile): %s", exc)
                    self._pool_retry_at = time.monotonic() + POOL_RETRY_SECONDS
        return self._pool

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._pool is not None:
                    await self._pool.close()
                    self._pool = None
                await send({"type": "lifespan.shutdown.complete"})
                return


def _forget_finished(finishing: set):
    def done(task: asyncio.Future) -> None:
        finishing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("request to Flask failed after its client left: %r", task.exception())

    return done


def _input_terminated(wsgi_app):
    """a2wsgi's ``wsgi.input`` ends where the request body ends, but a2wsgi does not say so; without
    ``wsgi.input_terminated`` werkzeug reads nothing of a body sent without Content-Length
    (chunked), so such an upload lost its file (400) instead of being read up to the size limit
    (413), as under gunicorn's WSGI workers, which set it."""

    def app(environ, start_response):
        environ["wsgi.input_terminated"] = True
        return wsgi_app(environ, start_response)

    return app


def _headers(scope: dict) -> Mapping[str, str]:
    """The request headers as Flask reads them: a repeated header's values joined with commas
    (as a2wsgi joins them), so the loop never takes one of two Authorization headers."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key, text = name.decode("latin-1"), value.decode("latin-1")
        headers[key] = headers[key] + "," + text if key in headers else text
    return headers


def create_asgi(flask_app: Flask, threads: int | None = None) -> AsgiFront:
    """The ASGI front of ``flask_app``, with the ``async_paths(app)`` handlers of its blueprints."""
    from gisserver.api import OPTIONAL_BLUEPRINTS

    front = AsgiFront(flask_app, threads)
    for module_name in OPTIONAL_BLUEPRINTS:
        module = __import__(module_name, fromlist=["bp"])
        for path, handler in getattr(module, "async_paths", lambda _app: {})(flask_app).items():
            front.route(path, handler)
    return front
