"""The permit-dossier state machine: the ONE table of allowed transitions per role.

Migration 0004 copies this table into ``dossier_transition``; the database then refuses a state
change without a matching event row whose (from, to, role) is in that table. A test checks that
the database table equals this one.
"""

from __future__ import annotations

DOSSIER_STATES = (
    "draft", "submitted", "accepted", "need_info", "under_review", "approved", "rejected", "issued",
    "withdrawn",
)
FINAL_STATES = frozenset({"rejected", "issued", "withdrawn"})
#: states in which the statutory clock runs (the due date is set on acceptance)
CLOCK_STATES = frozenset({"accepted", "under_review"})

APPLICANT = "public"

#: (from, to) -> roles allowed to make it. The applicant acts with the ``public`` role on
#: their own dossiers; staff act on any dossier.
TRANSITIONS: dict[tuple[str, str], frozenset[str]] = {
    ("draft", "submitted"): frozenset({"public", "officer", "admin"}),
    ("draft", "withdrawn"): frozenset({"public", "officer", "admin"}),
    ("submitted", "accepted"): frozenset({"officer", "admin"}),
    ("submitted", "need_info"): frozenset({"officer", "admin"}),
    ("submitted", "rejected"): frozenset({"officer", "admin"}),
    ("submitted", "withdrawn"): frozenset({"public", "admin"}),
    ("need_info", "submitted"): frozenset({"public", "officer", "admin"}),
    ("need_info", "withdrawn"): frozenset({"public", "admin"}),
    ("accepted", "under_review"): frozenset({"officer", "planner", "admin"}),
    ("accepted", "withdrawn"): frozenset({"public", "admin"}),
    ("under_review", "need_info"): frozenset({"officer", "planner", "admin"}),
    ("under_review", "approved"): frozenset({"planner", "admin"}),
    ("under_review", "rejected"): frozenset({"planner", "admin"}),
    ("under_review", "withdrawn"): frozenset({"public", "admin"}),
    ("approved", "issued"): frozenset({"officer", "admin"}),
}


def transition_rows() -> list[dict]:
    """The table as rows (from_state, to_state, role), sorted."""
    return [
        {"from_state": a, "to_state": b, "role": role}
        for (a, b), roles in sorted(TRANSITIONS.items())
        for role in sorted(roles)
    ]


def allowed_next(state: str, role: str) -> list[str]:
    return sorted(b for (a, b), roles in TRANSITIONS.items() if a == state and role in roles)
