"""Users, roles, API tokens and layer access levels (no Flask).

Tokens look like ``gis_<id>_<secret>``: the id finds the row, the secret is stored only as an
argon2 hash. Verifying argon2 on every request would cost tens of milliseconds, so a verified
token is remembered in-process (keyed by a SHA-256 of the whole token) for a short, configured
time; revocation is seen by all workers within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from gisserver import schema
from gisserver.errors import AuthenticationRequired, Conflict, InvalidInput

ROLE_RANK = {"public": 0, "planner": 1, "officer": 1, "admin": 2}
STAFF_ROLES = frozenset({"officer", "planner", "admin"})
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``user_id`` is None for anonymous callers."""

    user_id: int | None
    username: str
    role: str
    agency_id: int | None = None

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Principal(user_id=None, username="anonymous", role="public")


def can_read(principal: Principal, access_level: str, owner_agency_id: int | None = None,
             reader_agencies: frozenset[int] | tuple = ()) -> bool:
    """Layer access: public to all; internal to staff; restricted to admins, the owner agency's
    staff and the staff of agencies the owner granted read (or edit) access to."""
    if access_level == "public":
        return True
    if access_level == "internal":
        return principal.is_staff
    if access_level == "restricted":
        if principal.is_admin:
            return True
        return (
            principal.is_staff
            and principal.agency_id is not None
            and (principal.agency_id == owner_agency_id or principal.agency_id in reader_agencies)
        )
    return False


def can_edit(principal: Principal, owner_agency_id: int | None = None,
             editor_agencies: frozenset[int] | tuple = ()) -> bool:
    """Layer edits (loads, register changes): admins; officers of the owner agency or of an agency
    granted edit; officers of any agency when the layer has no owner."""
    if principal.is_admin:
        return True
    if principal.role != "officer":
        return False
    if owner_agency_id is None:
        return True
    return principal.agency_id is not None and (
        principal.agency_id == owner_agency_id or principal.agency_id in editor_agencies
    )


def readable_levels(principal: Principal) -> tuple[str, ...]:
    """Access levels a principal can always read (restricted layers need a per-layer check)."""
    if principal.is_admin:
        return ("public", "internal", "restricted")
    if principal.is_staff:
        return ("public", "internal")
    return ("public",)


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(secret_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def create_user(conn: Connection, username: str, role: str, *, password: str | None = None,
                display_name: str = "", agency_id: int | None = None) -> int:
    if role not in ROLE_RANK:
        raise InvalidInput(f"unknown role {role!r}; one of {', '.join(ROLE_RANK)}")
    exists = conn.execute(select(schema.app_user.c.id).where(schema.app_user.c.username == username)).first()
    if exists:
        raise Conflict(f"user {username!r} exists")
    return conn.execute(
        insert(schema.app_user)
        .values(
            username=username,
            role=role,
            display_name=display_name or username,
            password_hash=hash_secret(password) if password else None,
            agency_id=agency_id,
        )
        .returning(schema.app_user.c.id)
    ).scalar_one()


def create_token(conn: Connection, user_id: int, name: str = "", expires_at=None) -> str:
    """Create an API token and return it; only its hash is stored."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        insert(schema.api_token).values(
            user_id=user_id, token_id=token_id, secret_hash=hash_secret(secret), name=name,
            expires_at=expires_at,
        )
    )
    return f"gis_{token_id}_{secret}"


def revoke_token(conn: Connection, token_id: str) -> bool:
    result = conn.execute(
        update(schema.api_token)
        .where(schema.api_token.c.token_id == token_id, schema.api_token.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    TokenVerifier.forget_all()
    return result.rowcount > 0


def authenticate_password(conn: Connection, username: str, password: str) -> Principal:
    row = conn.execute(
        select(schema.app_user).where(schema.app_user.c.username == username, schema.app_user.c.active)
    ).mappings().first()
    if row is None or not row["password_hash"] or not verify_secret(row["password_hash"], password):
        raise AuthenticationRequired("wrong user name or password")
    return Principal(row["id"], row["username"], row["role"], row["agency_id"])


class TokenVerifier:
    """Verifies bearer tokens against the database, with a short in-process cache."""

    _instances: list[TokenVerifier] = []

    def __init__(self, engine: Engine, cache_seconds: int = 60):
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        TokenVerifier._instances.append(self)

    @classmethod
    def forget_all(cls) -> None:
        for inst in cls._instances:
            with inst._lock:
                inst._cache.clear()

    def verify(self, token: str) -> Principal:
        key = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        principal = self._verify_in_db(token)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + self.cache_seconds, principal)
        return principal

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified in the last ``cache_seconds``, else None (no
        database access: for code that must not block, e.g. the ASGI front's event loop)."""
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            hit = self._cache.get(key)
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def _verify_in_db(self, token: str) -> Principal:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "gis":
            raise AuthenticationRequired("malformed API token")
        _, token_id, secret = parts
        t, u = schema.api_token, schema.app_user
        with self.engine.begin() as conn:
            row = conn.execute(
                select(t.c.id, t.c.secret_hash, t.c.expires_at, t.c.revoked_at,
                       u.c.id.label("user_id"), u.c.username, u.c.role, u.c.agency_id, u.c.active,
                       func.now().label("now"))
                .join(u, u.c.id == t.c.user_id)
                .where(t.c.token_id == token_id)
            ).mappings().first()
            if row is None or not verify_secret(row["secret_hash"], secret):
                raise AuthenticationRequired("invalid API token")
            if row["revoked_at"] is not None or not row["active"]:
                raise AuthenticationRequired("API token revoked")
            if row["expires_at"] is not None and row["expires_at"] <= row["now"]:
                raise AuthenticationRequired("API token expired")
            conn.execute(update(t).where(t.c.id == row["id"]).values(last_used_at=func.now()))
        return Principal(row["user_id"], row["username"], row["role"], row["agency_id"])
