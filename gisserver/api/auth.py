"""Login (session cookie for the web page), logout, and the caller's identity."""

from __future__ import annotations

from flask import Blueprint, jsonify, request, session

from gisserver.api import services
from gisserver.errors import InvalidInput
from gisserver.security import authenticate_password
from gisserver.web_auth import principal

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.post("/login")
def login():
    body = request.get_json(silent=True) or request.form
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise InvalidInput("username and password are required")
    with services().engine.begin() as conn:
        p = authenticate_password(conn, username, password)
    session.clear()
    session["user"] = {"id": p.user_id, "username": p.username, "role": p.role, "agency_id": p.agency_id}
    return jsonify(username=p.username, role=p.role)


@bp.post("/logout")
def logout():
    session.clear()
    return jsonify(ok=True)


@bp.get("/me")
def me():
    p = principal()
    return jsonify(username=p.username, role=p.role, authenticated=p.is_authenticated, agency_id=p.agency_id)
