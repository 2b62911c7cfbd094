"""One exception hierarchy for the whole project.

Domain packages raise these; the web layer maps them to HTTP in one table
(``gisserver.problems``). Each error has a stable machine ``code``, an HTTP ``status``
and a ``message`` that can be shown to a user.
"""

from __future__ import annotations


class GISError(Exception):
    """Base of every error the project raises on purpose."""

    code = "error"
    status = 500
    title = "Internal error"

    def __init__(self, message: str | None = None, *, details: dict | None = None):
        self.message = message or self.title
        self.details = details or {}
        super().__init__(self.message)


class InvalidInput(GISError):
    code = "invalid-input"
    status = 400
    title = "Invalid input"


class InvalidParameter(InvalidInput):
    """A request parameter (bbox, crs, limit, datetime ...) could not be parsed."""

    code = "invalid-parameter"
    title = "Invalid parameter"

    def __init__(self, parameter: str, message: str, *, details: dict | None = None):
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}", details={"parameter": parameter, **(details or {})})


class UnknownCRS(InvalidInput):
    code = "unknown-crs"
    title = "Unknown or unsupported coordinate reference system"


class MissingCRS(InvalidInput):
    code = "missing-crs"
    title = "The input has no coordinate reference system; declare one"


class InvalidGeometry(InvalidInput):
    code = "invalid-geometry"
    title = "Invalid geometry"


class InvalidFile(InvalidInput):
    """A corrupt, truncated or unreadable input file."""

    code = "invalid-file"
    title = "The file could not be read"


class UnsupportedFormat(InvalidInput):
    code = "unsupported-format"
    status = 415
    title = "Unsupported file format"


class PayloadTooLarge(InvalidInput):
    code = "payload-too-large"
    status = 413
    title = "Upload too large"


class NotFound(GISError):
    code = "not-found"
    status = 404
    title = "Not found"


class Conflict(GISError):
    code = "conflict"
    status = 409
    title = "Conflict"


class AuthenticationRequired(GISError):
    code = "authentication-required"
    status = 401
    title = "Authentication required"


class Forbidden(GISError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class RuleViolation(Conflict):
    """A change that would break a register invariant (overlap, area not conserved ...)."""

    code = "rule-violation"
    status = 422
    title = "The change breaks a rule of the register"


class DatabaseUnavailable(GISError):
    code = "database-unavailable"
    status = 503
    title = "The database is not available"


class ConfigurationError(GISError):
    code = "configuration-error"
    status = 500
    title = "Configuration error"
