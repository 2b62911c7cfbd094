"""The application factory: ``create_app(config=None)`` builds and wires everything.

Nothing happens at import time. The database engine is created here, per application; the
embedded cluster is not started by the factory (``gisserver db start`` / ``./dev run`` do it),
so building an app never needs a live database.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy.engine import Engine

from gisserver.config import Settings
from gisserver.db import make_engine, resolve_database_url
from gisserver.security import TokenVerifier


@dataclass
class Services:
    """What the views reach through ``current_app.extensions['gisserver']``."""

    settings: Settings
    engine: Engine
    tokens: TokenVerifier


class CookieOnlySessionInterface(SecureCookieSessionInterface):
    """Opens (verifies) the session cookie only when the request carries one: API clients with
    tokens and anonymous map clients never pay for the signature check (~14% of an identify)."""

    def open_session(self, app, request):
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def create_app(config: Settings | dict | None = None) -> Flask:
    if config is None:
        settings = Settings.from_env()
    elif isinstance(config, dict):
        settings = Settings.from_env(**config)
    else:
        settings = config

    app = Flask(__name__, static_folder=None)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
        JSON_SORT_KEYS=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.session_interface = CookieOnlySessionInterface()
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    engine = make_engine(resolve_database_url(settings), pool_size=settings.db_pool_size)
    app.extensions["gisserver"] = Services(
        settings=settings, engine=engine, tokens=TokenVerifier(engine, settings.token_cache_seconds)
    )

    from gisserver.problems import register_error_handlers
    from gisserver.web_auth import load_principal

    register_error_handlers(app)
    app.before_request(load_principal)

    from gisserver.api import register_blueprints

    register_blueprints(app)
    return app
