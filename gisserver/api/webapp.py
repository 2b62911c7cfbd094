"""The web map application: the page at ``/``, the public dossier status page ``/tra-cuu`` and
the bundled front-end assets (``gisserver/static/app/``, built from ``web/`` by ``npm run build``,
which ``./dev setup`` runs).

These views only serve files; the page gets its data from the other blueprints (tiles, styles,
OGC API Features, queries, auth, licensing, flood). The map label glyphs (signed-distance-field
ranges built from DejaVu Sans by ``web/glyphs.mjs``) are served at ``/glyphs/{fontstack}/{range}.pbf``
for MapLibre styles, so labels need no remote glyph server.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from gisserver.errors import ConfigurationError, InvalidParameter, NotFound
from gisserver.openapi import declare

bp = Blueprint("webapp", __name__)

APP_DIR = Path(__file__).resolve().parents[1] / "static" / "app"
GLYPH_DIR = APP_DIR / "glyphs"
GLYPH_RANGE = re.compile(r"^(\d{1,5})-(\d{1,5})$")
#: glyph ranges change only with the font: browsers may reuse them for a day
GLYPH_MAX_AGE = 86400
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


def glyph_range(text: str) -> str:
    """A MapLibre glyph range "start-end" (256 code points from a multiple of 256); else a 400."""
    match = GLYPH_RANGE.match(text)
    start, end = (int(match[1]), int(match[2])) if match else (-1, -1)
    if start < 0 or start % 256 or end != start + 255 or end > 65535:
        raise InvalidParameter("range", "must be start-end with start a multiple of 256 and end = start + 255")
    return f"{start}-{end}"


def glyph_font(fontstack: str) -> str:
    """The first font of a comma-separated font stack that the server has glyphs for; else a 404."""
    available = {p.name for p in GLYPH_DIR.iterdir() if p.is_dir()} if GLYPH_DIR.is_dir() else set()
    for font in (f.strip() for f in fontstack.split(",")):
        if font in available:
            return font
    fonts = ", ".join(sorted(available)) or "none (build the web app)"
    raise NotFound(f"no glyphs for font stack {fontstack!r}; fonts: {fonts}")


@declare("Map label glyphs: a 256-code-point SDF glyph range of a font stack (MapLibre glyphs)", tags=["web"],
         responses={"200": {"description": "Glyph range (protocol buffer)",
                            "content": {"application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}}},
                    "400": {"$ref": "#/components/responses/Problem"},
                    "404": {"$ref": "#/components/responses/Problem"}})
@bp.get("/glyphs/<fontstack>/<codepoints>.pbf")
def glyphs(fontstack: str, codepoints: str):
    """One glyph range of the first available font of ``fontstack``."""
    name = glyph_range(codepoints)
    font = glyph_font(fontstack)
    resp = send_from_directory(GLYPH_DIR / font, f"{name}.pbf", mimetype="application/x-protobuf",
                               max_age=GLYPH_MAX_AGE)
    resp.headers["Access-Control-Allow-Origin"] = "*"  # styles of other map clients may use them
    return resp
