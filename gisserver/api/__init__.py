"""HTTP blueprints: each adapts one domain area (parse -> call one domain function -> serialize)."""

from __future__ import annotations

from flask import Flask, current_app


def services():
    return current_app.extensions["gisserver"]


def register_blueprints(app: Flask) -> None:
    from gisserver.api import auth, system

    app.register_blueprint(system.bp)
    app.register_blueprint(auth.bp)
    for module_name in OPTIONAL_BLUEPRINTS:
        module = __import__(module_name, fromlist=["bp"])
        app.register_blueprint(module.bp)


# blueprints of the other areas, registered in this order
OPTIONAL_BLUEPRINTS: list[str] = [
    "gisserver.api.maps",
    "gisserver.openapi",
    "gisserver.api.features",
    "gisserver.api.query",
    "gisserver.api.sharing",
    "gisserver.api.webapp",
    "gisserver.api.licensing",
    "gisserver.api.uploads",
    "gisserver.api.records",
    "gisserver.api.flood",
]
