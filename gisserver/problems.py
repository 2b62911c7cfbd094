"""HTTP mapping of the project's errors: one table, one response shape (RFC 9457 problem+json)."""

from __future__ import annotations

import logging

from flask import Flask, json, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gisserver.errors import GISError, PayloadTooLarge

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://hcmc-gisserver.example/problems/"


def problem_response(status: int, code: str, title: str, detail: str, extra: dict | None = None):
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.path if request else None,
    }
    if extra:
        body.update(extra)
    from flask import current_app

    resp = current_app.response_class(
        json.dumps(body, ensure_ascii=False), status=status, mimetype="application/problem+json"
    )
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="gisserver"'
    return resp


def gis_error_response(exc: GISError):
    return problem_response(exc.status, exc.code, exc.title, exc.message, exc.details or None)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(GISError)
    def _gis_error(exc: GISError):
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        return gis_error_response(exc)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return gis_error_response(
            PayloadTooLarge(f"the upload exceeds the limit of {limit // (1024 * 1024)} MiB")
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return problem_response(
            exc.code or 500, f"http-{exc.code}", exc.name, exc.description or exc.name
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # a bug: log it, never leak internals
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "internal-error", "Internal error", "an internal error occurred")
