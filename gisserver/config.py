"""Configuration: every key, its default and its environment variable, in one place.

``Settings.from_env()`` reads ``GISSERVER_*`` variables (and ``DATABASE_URL``). Every key is
documented in docs/configuration.md, which a test checks against this table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from gisserver.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _meta(env: str, doc: str, parse=str):
    return {"env": env, "doc": doc, "parse": parse}


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _paths(text: str) -> tuple[Path, ...]:
    return tuple(Path(part).resolve() for part in text.split(os.pathsep) if part.strip())


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(
        default=None,
        metadata=_meta(
            "DATABASE_URL",
            "PostGIS connection URL (postgresql://user:pass@host:port/db). Unset: the embedded "
            "cluster under var/pg is used.",
        ),
    )
    var_dir: Path = field(
        default=PROJECT_ROOT / "var",
        metadata=_meta("GISSERVER_VAR_DIR", "Folder for the embedded database, rasters, uploads and caches.", Path),
    )
    embedded_pg_port: int = field(
        default=54329,
        metadata=_meta("GISSERVER_PG_PORT", "TCP port of the embedded PostgreSQL cluster (loopback only).", int),
    )
    embedded_pg_database: str = field(
        default="gisserver",
        metadata=_meta("GISSERVER_PG_DATABASE", "Database name used in the embedded cluster."),
    )
    secret_key: str = field(
        default="dev-only-change-me",
        metadata=_meta("GISSERVER_SECRET_KEY", "Flask secret key for session cookies. Set it in production."),
    )
    max_upload_mb: int = field(
        default=512,
        metadata=_meta("GISSERVER_MAX_UPLOAD_MB", "Largest accepted upload, in MiB; larger requests get 413.", int),
    )
    db_pool_size: int = field(
        default=8,
        metadata=_meta("GISSERVER_DB_POOL_SIZE", "Connections kept open per worker process.", int),
    )
    threads: int = field(
        default=4,
        metadata=_meta(
            "GISSERVER_THREADS",
            "Threads per worker process for the requests the ASGI front hands to the Flask "
            "application (everything but identify); set by `gisserver serve --threads`.", int),
    )
    default_page_limit: int = field(
        default=100,
        metadata=_meta("GISSERVER_PAGE_LIMIT", "Default number of features per page.", int),
    )
    max_page_limit: int = field(
        default=10000,
        metadata=_meta("GISSERVER_MAX_PAGE_LIMIT", "Largest page size a client may request.", int),
    )
    public_url: str | None = field(
        default=None,
        metadata=_meta(
            "GISSERVER_PUBLIC_URL",
            "External base URL used in links (e.g. https://gis.example.vn). Unset: taken from the request.",
        ),
    )
    token_cache_seconds: int = field(
        default=60,
        metadata=_meta(
            "GISSERVER_TOKEN_CACHE_SECONDS",
            "How long a verified API token is trusted in-process before it is re-checked in the database.",
            int,
        ),
    )

    lidar_max_upload_mb: int = field(
        default=4096,
        metadata=_meta("GISSERVER_LIDAR_MAX_UPLOAD_MB",
                       "Largest LAS/LAZ file accepted by POST /api/lidar/files, in MiB; larger uploads get 413.", int),
    )
    lidar_allowed_dirs: tuple[Path, ...] | None = field(
        default=None,
        metadata=_meta(
            "GISSERVER_LIDAR_ALLOWED_DIRS",
            "Server-side folders (separated by ':') under which planners and admins may register LiDAR files "
            "by path (POST /api/lidar/files/from-path). Unset: registration by path is refused.",
            _paths,
        ),
    )
    lidar_max_ingest_km2: float = field(
        default=2.0,
        metadata=_meta("GISSERVER_LIDAR_MAX_INGEST_KM2",
                       "Largest area (header bounds, km2) of a LAS/LAZ file the HTTP ingest processes; its rasters "
                       "and building grids are held in memory. Larger files: `gisserver lidar process --per-tile`.",
                       float),
    )
    lidar_export_max_buildings: int = field(
        default=5000,
        metadata=_meta("GISSERVER_LIDAR_EXPORT_MAX_BUILDINGS",
                       "Most buildings one area export (CityJSON, GLB, 3D Tiles) may hold; larger areas get 400.", int),
    )

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            env = f.metadata["env"]
            if env in environ and environ[env] != "":
                try:
                    values[f.name] = f.metadata["parse"](environ[env])
                except ValueError as exc:
                    raise ConfigurationError(f"{env}: {exc}") from exc
        values.update({k: v for k, v in overrides.items()})
        return cls(**values)

    @property
    def pg_dir(self) -> Path:
        return Path(self.var_dir) / "pg"

    @property
    def raster_dir(self) -> Path:
        return Path(self.var_dir) / "rasters"

    @property
    def upload_dir(self) -> Path:
        return Path(self.var_dir) / "uploads"


def documented_keys() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) for every setting."""
    rows = []
    for f in fields(Settings):
        default = f.default
        if isinstance(default, Path):
            default = "var/" if f.name == "var_dir" else str(default)
        rows.append((f.metadata["env"], "" if default is None else str(default), f.metadata["doc"]))
    return rows


def configuration_markdown() -> str:
    """docs/configuration.md, generated from the Settings table (a test keeps them equal)."""
    lines = [
        "# Configuration",
        "",
        "Every setting is an environment variable; unset ones take the default. This page is",
        "generated from `gisserver/config.py` by `gisserver config docs > docs/configuration.md`.",
        "",
        "| Variable | Default | Meaning |",
        "|---|---|---|",
    ]
    for env, default, doc in documented_keys():
        shown = f"`{default}`" if default else "(unset)"
        lines.append(f"| `{env}` | {shown} | {doc} |")
    return "\n".join(lines) + "\n"
