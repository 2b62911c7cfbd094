"""The web map application: the page at ``/``, the public dossier status page ``/tra-cuu`` and
the bundled front-end assets (``gisserver/static/app/``, built from ``web/`` by ``npm run build``,
which ``./dev setup`` runs).

These views only serve files; the page gets its data from the other blueprints (tiles, styles,
OGC API Features, queries, auth, licensing, flood).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from gisserver.errors import ConfigurationError, NotFound
from gisserver.openapi import declare

bp = Blueprint("webapp", __name__)

APP_DIR = Path(__file__).resolve().parents[1] / "static" / "app"
#: bundle names carry no content hash, so browsers revalidate them (ETag) instead of caching blindly
ASSET_MAX_AGE = 0
HTML_RESPONSE = {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}


def _page(name: str) -> Response:
    if not (APP_DIR / name).is_file():
        raise ConfigurationError(
            "the web application is not built: run ./dev setup (npm ci && npm run build)"
        )
    resp = send_from_directory(APP_DIR, name, mimetype="text/html", max_age=ASSET_MAX_AGE)
    # the page loads nothing from other origins (no CDN, no remote basemap or glyphs)
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data: blob:; worker-src 'self' blob:; "
        "child-src blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; "
        "base-uri 'self'; frame-ancestors 'self'"
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


@declare("Web map application (HTML)", tags=["web"], responses=HTML_RESPONSE)
@bp.get("/")
def index():
    """The web map application."""
    return _page("index.html")


@declare("Public dossier status lookup page (HTML, no login)", tags=["web"], responses=HTML_RESPONSE)
@bp.get("/tra-cuu")
def dossier_status_page():
    """The public dossier status page."""
    return _page("tra-cuu.html")


@declare("Bundled front-end assets (JavaScript, CSS)", tags=["web"],
         responses={"200": {"description": "Asset file"}, "404": {"$ref": "#/components/responses/Problem"}})
@bp.get("/app/<path:filename>")
def asset(filename: str):
    """A bundled front-end asset."""
    if filename.endswith(".html") or not (APP_DIR / filename).resolve().is_relative_to(APP_DIR):
        raise NotFound(f"no asset {filename!r}")
    if not (APP_DIR / filename).is_file():
        raise NotFound(f"no asset {filename!r}")
    return send_from_directory(APP_DIR, filename, max_age=ASSET_MAX_AGE)
