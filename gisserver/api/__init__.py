"""HTTP blueprints: each adapts one domain area (parse -> call one domain function -> serialize)."""

from __future__ import annotations

from flask import Flask, current_app


def services():
    return current_app.extensions["gisserver"]


def register_blueprints(app: Flask) -> None:
    """Register every blueprint; the ones with ``fast_paths(app)`` (exact paths) or
    ``fast_prefixes(app)`` (every path under a prefix) also get their lean WSGI routes."""
    from gisserver.api import auth, system
    from gisserver.fastpath import FastPath

    fast = FastPath(app.wsgi_app, app.extensions["gisserver"].tokens)
    app.register_blueprint(system.bp)
    app.register_blueprint(auth.bp)
    for module_name in OPTIONAL_BLUEPRINTS:
        module = __import__(module_name, fromlist=["bp"])
        app.register_blueprint(module.bp)
        for path, handler in getattr(module, "fast_paths", lambda _app: {})(app).items():
            fast.route(path, handler)
        for prefix, prefix_handler in getattr(module, "fast_prefixes", lambda _app: {})(app).items():
            fast.route_prefix(prefix, prefix_handler)
    if fast.routes or fast.prefixes:
        app.wsgi_app = fast


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
    "gisserver.api.lidar",
]
