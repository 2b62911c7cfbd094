"""Errors of the licensing area, in the project's one hierarchy (``gisserver.errors``)."""

from __future__ import annotations

from gisserver.errors import Conflict, InvalidInput


class VersionMismatch(Conflict):
    """An edit based on a stale version of a dossier (optimistic locking; HTTP If-Match)."""

    code = "version-mismatch"
    status = 412
    title = "The dossier was changed by someone else; reload it"


class PreconditionRequired(InvalidInput):
    """An edit without the version it is based on (HTTP If-Match missing)."""

    code = "precondition-required"
    status = 428
    title = "Send the dossier's ETag in If-Match"


class TransitionNotAllowed(Conflict):
    code = "transition-not-allowed"
    status = 409
    title = "This state change is not allowed"
