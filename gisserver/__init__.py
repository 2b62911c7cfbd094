"""HCMC GIS urban-management server: the web-service core.

Importing this package creates nothing (no app, engine or config) and does not import Flask,
so domain packages may use its Flask-free modules (``errors``, ``crs``, ``config``, ``db``).
"""

__all__ = ["create_app"]


def create_app(config=None):
    """Build the Flask application (see :func:`gisserver.factory.create_app`)."""
    from gisserver.factory import create_app as _create_app

    return _create_app(config)
