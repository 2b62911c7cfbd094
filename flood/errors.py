"""Errors of the flood package, in the project's one hierarchy (``gisserver.errors``)."""

from __future__ import annotations

from gisserver.errors import Conflict, GISError, InvalidInput


class InvalidScenario(InvalidInput):
    code = "invalid-flood-scenario"
    title = "Invalid flood scenario or model input"


class RunCancelled(Conflict):
    code = "flood-run-cancelled"
    title = "The flood run was cancelled"


class SolverFailure(GISError):
    """The solver state became invalid (NaN/inf): a bug or an input far outside the scheme's range."""

    code = "flood-solver-failure"
    status = 500
    title = "The flood solver failed"
