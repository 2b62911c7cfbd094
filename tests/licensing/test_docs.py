"""docs/licensing.md documents what the code has: rule tables, check rules, the transition table, routes."""

from __future__ import annotations

import re

from gisserver.config import PROJECT_ROOT
from licensing.check import _check_meta
from licensing.ruledata import VALIDATORS
from licensing.workflow import TRANSITIONS

DOC = (PROJECT_ROOT / "docs" / "licensing.md").read_text(encoding="utf-8")


def test_every_rule_table_and_check_is_documented():
    assert [r for r in VALIDATORS if f"`{r}`" not in DOC] == []
    assert [r for r in _check_meta() if f"`{r}`" not in DOC] == []


def test_transition_table_in_docs_equals_code():
    documented = {
        (a, b): frozenset(r.strip() for r in roles.split(","))
        for a, b, roles in re.findall(r"^\| (\w+) \| (\w+) \| ([a-z, ]+) \|$", DOC, flags=re.M)
        if (a, b) != ("from", "to")
    }
    assert documented == TRANSITIONS


def test_every_route_is_documented(app):
    segments = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("licensing."):
            segments |= {s for s in rule.rule.split("/") if s and not s.startswith("<")}
    assert sorted(s for s in segments if s not in DOC) == []


def test_licensing_routes_are_in_the_openapi_document(client):
    doc = client.get("/openapi").get_json()
    paths = doc["paths"]
    for path, method in (("/api/checks", "post"), ("/api/dossiers/{dossier_id}", "patch"),
                         ("/public/dossiers/{code}", "get"), ("/api/register/parcels/{parcel_id}/split", "post"),
                         ("/api/rules/{rule_id}", "post")):
        assert path in paths and method in paths[path], path
        assert paths[path][method]["summary"], path
    assert paths["/api/checks"]["post"]["summary"].startswith("Compliance check")
