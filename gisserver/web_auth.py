"""Who is calling, for each request: bearer token or session login, else anonymous."""

from __future__ import annotations

from functools import wraps

from flask import current_app, g, request, session

from gisserver.errors import AuthenticationRequired, Forbidden
from gisserver.security import ANONYMOUS, Principal


def load_principal() -> None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationRequired("use 'Authorization: Bearer <token>'")
        g.principal = current_app.extensions["gisserver"].tokens.verify(token.strip())
        return
    user = session.get("user")
    if user:
        g.principal = Principal(user["id"], user["username"], user["role"], user.get("agency_id"))
        return
    g.principal = ANONYMOUS


def principal() -> Principal:
    return g.get("principal", ANONYMOUS)


def require_roles(*roles: str):
    """Allow only callers with one of ``roles`` (401 when anonymous, 403 otherwise)."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            p = principal()
            if not p.is_authenticated:
                raise AuthenticationRequired("this operation needs a login or an API token")
            if p.role not in roles:
                raise Forbidden(f"this operation needs one of the roles: {', '.join(roles)}")
            return view(*args, **kwargs)

        wrapper.required_roles = roles
        return wrapper

    return decorator
