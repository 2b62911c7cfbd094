"""A lean WSGI path in front of Flask for the hottest read-only requests.

Identify-at-point is what every click on the map sends. Flask's request machinery (request
context, URL routing, session handling, the response object) costs more CPU than the PostGIS
query behind it, so a few such endpoints are also answered here, before Flask, by a handler that
shares the parsing, querying and serialising with the Flask view (one function of the view's
module) and only skips the framework around it.

A handler answers only the plain case and declines (returns ``None``) or raises a
:class:`~gisserver.errors.GISError` for anything else; the request then goes to Flask, which runs
the normal view and turns the error into the usual ``application/problem+json`` answer. So errors
keep one shape and one code path, and the fast path never changes what a client sees. Requests
that carry a cookie (a browser session) always go to Flask.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from urllib.parse import parse_qsl

from gisserver.errors import AuthenticationRequired, GISError
from gisserver.security import ANONYMOUS, Principal, TokenVerifier

#: handler(args, principal) -> (body, headers) for a 200 answer, or None to let Flask answer
FastHandler = Callable[[Mapping[str, str], Principal], "tuple[bytes, list[tuple[str, str]]] | None"]
#: handler of every path under a prefix (e.g. tiles by z/x/y, which also answer 304):
#: handler(environ, principal) -> (status line, headers, body), or None to let Flask answer
PrefixHandler = Callable[[dict, Principal], "tuple[str, list[tuple[str, str]], bytes] | None"]


class FastPath:
    """WSGI middleware: ``app.wsgi_app = FastPath(app.wsgi_app, tokens)``; ``route(path, handler)``."""

    def __init__(self, wsgi_app, tokens: TokenVerifier):
        self.wsgi_app = wsgi_app
        self.tokens = tokens
        self.routes: dict[str, FastHandler] = {}
        self.prefixes: list[tuple[str, PrefixHandler]] = []
        self.answered = 0  # requests answered here (for tests and diagnostics)

    def route(self, path: str, handler: FastHandler) -> None:
        self.routes[path] = handler

    def route_prefix(self, prefix: str, handler: PrefixHandler) -> None:
        self.prefixes.append((prefix, handler))

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET" and "HTTP_COOKIE" not in environ:
            path = environ.get("PATH_INFO", "")
            handler = self.routes.get(path)
            if handler is not None:
                answer = self._answer(handler, environ)
                if answer is not None:
                    body, headers = answer
                    headers.append(("Content-Length", str(len(body))))
                    start_response("200 OK", headers)
                    self.answered += 1
                    return [body]
            for prefix, prefix_handler in self.prefixes:
                if path.startswith(prefix):
                    answer = self._answer_prefix(prefix_handler, environ)
                    if answer is not None:
                        status, headers, body = answer
                        start_response(status, headers)
                        self.answered += 1
                        return [body]
                    break
        return self.wsgi_app(environ, start_response)

    def _answer_prefix(self, handler: PrefixHandler, environ: dict):
        try:
            return handler(environ, self._principal(environ))
        except GISError:
            return None  # Flask answers it again, with the problem document

    def _answer(self, handler: FastHandler, environ: dict):
        args = query_args(environ.get("QUERY_STRING", ""))
        if args is None:
            return None
        try:
            return handler(args, self._principal(environ))
        except GISError:
            return None  # Flask answers it again, with the problem document

    def _principal(self, environ: dict) -> Principal:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header:
            return ANONYMOUS
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationRequired()  # declined: Flask answers the 401
        return self.tokens.verify(token.strip())


def query_args(query_string: str) -> dict[str, str] | None:
    """The query string as a dict, or None when a parameter repeats (Flask's first-wins MultiDict
    then decides) or the string does not decode."""
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    args = dict(pairs)
    return args if len(args) == len(pairs) else None
