"""Health and version."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from gisserver.api import services
from gisserver.errors import DatabaseUnavailable

bp = Blueprint("system", __name__)


@bp.get("/health")
def health():
    try:
        with services().engine.connect() as conn:
            postgis = conn.execute(text("SELECT postgis_lib_version()")).scalar()
    except Exception as exc:  # any driver error means the same thing to a health probe
        raise DatabaseUnavailable(str(exc).splitlines()[0]) from exc
    return jsonify(status="ok", postgis=postgis)
