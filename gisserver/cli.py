"""The ``gisserver`` command line: database, migrations, demo data, users, serving.

Command groups of the domain areas live in their own modules (listed in COMMAND_MODULES) and
are attached here, so this file stays small.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from gisserver.cli_errors import GISGroup
from gisserver.config import Settings


def _settings() -> Settings:
    return Settings.from_env()


def _engine(start_embedded: bool = True):
    from gisserver.db import make_engine, resolve_database_url
    from tiles.cache import record_changes_of

    settings = _settings()
    engine = make_engine(resolve_database_url(settings, start_embedded=start_embedded), pool_size=2)
    record_changes_of(engine, settings.var_dir)  # layer edits from the CLI invalidate only the tiles they touch
    return engine


@click.group(cls=GISGroup)
def main():
    """HCMC GIS urban-management server."""


# --- database ---------------------------------------------------------------------------------
@main.group(cls=GISGroup)
def db():
    """Embedded PostgreSQL/PostGIS cluster and migrations."""


def _cluster():
    from gisserver.pgcluster import cluster_from_settings

    settings = _settings()
    if settings.database_url:
        raise click.UsageError("DATABASE_URL is set: the embedded cluster is not used")
    return cluster_from_settings(settings)


@db.command("start")
def db_start():
    """Initialise (first time) and start the embedded cluster."""
    cluster = _cluster()
    started = cluster.start()
    url = cluster.ensure_database()
    click.echo(("started" if started else "already running") + f": {url}")


@db.command("stop")
def db_stop():
    """Stop the embedded cluster."""
    click.echo("stopped" if _cluster().stop() else "not running")


@db.command("status")
def db_status():
    """Show the embedded cluster's state."""
    click.echo(json.dumps(_cluster().status(), indent=2))


@db.command("upgrade")
@click.argument("revision", default="heads")
def db_upgrade(revision):
    """Apply migrations (default: to head) and register the canonical layers."""
    from gisserver import migrate
    from layers.catalogue import sync_canonical_layers

    engine = _engine()
    migrate.upgrade(engine, revision)
    with engine.begin() as conn:
        sync_canonical_layers(conn)
    click.echo(f"database at revision {', '.join(migrate.current(engine))}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision):
    """Revert migrations to REVISION (``base`` drops everything)."""
    from gisserver import migrate

    engine = _engine()
    migrate.downgrade(engine, revision)
    click.echo(f"database at revision {', '.join(migrate.current(engine)) or 'base'}")


# --- users ---------------------------------------------------------------------------------------
@main.group(cls=GISGroup)
def users():
    """Users and API tokens."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["public", "officer", "planner", "admin"]), required=True)
@click.option("--password", help="login password for the web page (prompted when omitted)",
              default=None)
@click.option("--no-password", is_flag=True, help="token-only account")
@click.option("--agency", "agency_code", default=None, help="code of the user's agency")
def users_create(username, role, password, no_password, agency_code):
    """Create a user."""
    from gisserver.audit import record
    from gisserver.security import create_user
    from layers.sharing import agency_id_by_code

    if password is None and not no_password:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    with _engine().begin() as conn:
        agency_id = agency_id_by_code(conn, agency_code) if agency_code else None
        user_id = create_user(conn, username, role, password=password, agency_id=agency_id)
        record(conn, actor=os.environ.get("USER", "cli"), action="user.create", target_type="user",
               target_id=user_id, after={"username": username, "role": role, "agency_id": agency_id})
    click.echo(f"user {username} ({role}) created")


@users.command("token")
@click.argument("username")
@click.option("--name", default="cli", help="what the token is for")
def users_token(username, name):
    """Create an API token for USERNAME and print it (shown once; stored hashed)."""
    from sqlalchemy import select

    from gisserver import schema
    from gisserver.audit import record
    from gisserver.security import create_token

    with _engine().begin() as conn:
        user_id = conn.execute(
            select(schema.app_user.c.id).where(schema.app_user.c.username == username)
        ).scalar()
        if user_id is None:
            raise click.UsageError(f"no user {username!r}")
        token = create_token(conn, user_id, name)
        record(conn, actor=os.environ.get("USER", "cli"), action="token.create", target_type="user",
               target_id=user_id, after={"token_id": token.split("_")[1], "name": name})
    click.echo(token)


# --- agencies ------------------------------------------------------------------------------------
@main.group(cls=GISGroup)
def agencies():
    """Agencies (districts, departments) and layer ownership."""


@agencies.command("create")
@click.argument("code")
@click.argument("name")
@click.option("--kind", type=click.Choice(["district", "department", "city"]), default="department")
def agencies_create(code, name, kind):
    """Create an agency."""
    from layers.sharing import create_agency

    with _engine().begin() as conn:
        create_agency(conn, code, name, kind, actor=os.environ.get("USER", "cli"))
    click.echo(f"agency {code} created")


@agencies.command("list")
def agencies_list():
    """List agencies."""
    from layers.sharing import list_agencies

    with _engine().begin() as conn:
        for a in list_agencies(conn):
            click.echo(f"{a['code']}\t{a['kind']}\t{a['name']}")


@agencies.command("own")
@click.argument("layer")
@click.argument("code")
def agencies_own(layer, code):
    """Make agency CODE the owner of LAYER."""
    from layers.sharing import agency_id_by_code, set_owner

    with _engine().begin() as conn:
        set_owner(conn, layer, agency_id_by_code(conn, code), actor=os.environ.get("USER", "cli"))
    click.echo(f"{layer} is owned by {code}")


# --- configuration ---------------------------------------------------------------------------------
@main.group(cls=GISGroup)
def config():
    """Configuration keys."""


@config.command("docs")
def config_docs():
    """Print docs/configuration.md (every setting with its default and meaning)."""
    from gisserver.config import configuration_markdown

    click.echo(configuration_markdown(), nl=False)


@config.command("show")
def config_show():
    """Print the effective settings (secrets hidden)."""
    settings = _settings()
    for key, value in vars(settings).items():
        if key in ("secret_key",) or (key == "database_url" and value):
            value = "(set)"
        click.echo(f"{key} = {value}")


# --- demo data -----------------------------------------------------------------------------------
@main.group(cls=GISGroup)
def demo():
    """The generated demo neighbourhood (Quận 8)."""


@demo.command("load")
@click.option("--seed", default=2026, show_default=True, type=int)
@click.option("--if-empty", is_flag=True, help="only when the parcel table is empty (keeps edits)")
def demo_load(seed, if_empty):
    """Generate the demo neighbourhood and load it (replaces the canonical layers' content)."""
    from sqlalchemy import func, select

    from gisserver import schema
    from layers import demo as demo_data
    from layers.catalogue import sync_canonical_layers

    engine = _engine()
    with engine.begin() as conn:
        sync_canonical_layers(conn)
        existing = conn.execute(select(func.count()).select_from(schema.parcel)).scalar()
    if if_empty and existing:
        click.echo(f"demo data not loaded: {existing} parcels already present")
        return
    data = demo_data.generate(seed=seed)
    counts = demo_data.load(engine, data, actor=os.environ.get("USER", "cli"))
    click.echo("demo data loaded: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@demo.command("lidar")
@click.option("--out", "out_path", default=None, help="LAS/LAZ file to write (default var/demo/demo_q8.laz)")
@click.option("--density", default=4.0, show_default=True, type=float, help="points per m2")
@click.option("--seed", default=2026, show_default=True, type=int, help="seed of the vector demo")
def demo_lidar(out_path, density, seed):
    """Write a synthetic LiDAR cloud of the demo neighbourhood (LAS 1.4, city CRS, true classes)."""
    from pathlib import Path

    from layers import demo as demo_data
    from layers import demo_lidar as lidar_synth

    out = Path(out_path) if out_path else Path(_settings().var_dir) / "demo" / "demo_q8.laz"
    points = lidar_synth.synthesize(demo_data.generate(seed=seed), density=density)
    lidar_synth.write_las(points, out)
    click.echo(f"{len(points['x'])} points written to {out}")


@demo.command("terrain")
@click.option("--if-missing", is_flag=True, help="only when the demo DTM is not registered yet")
@click.option("--resolution", default=2.0, show_default=True, type=float, help="DTM cell size, metres")
def demo_terrain(if_missing, resolution):
    """LiDAR -> DTM of the demo area: synthesise the cloud, classify ground, build and register the
    DTM, DSM, nDSM and hillshade (the terrain the flood model runs on)."""
    from pathlib import Path

    from sqlalchemy import select

    from gisserver import schema
    from gisserver.crs import CITY_SRID, CITY_VERTICAL_DATUM
    from layers import demo as demo_data
    from layers import demo_lidar as lidar_synth
    from lidar import jobs

    settings = _settings()
    engine = _engine()
    prefix = "demo_q8"
    with engine.connect() as conn:
        exists = conn.execute(select(schema.raster.c.id).where(schema.raster.c.name == f"{prefix}_dtm")).first()
    if exists and if_missing:
        click.echo("demo terrain already registered")
        return
    if exists:
        raise click.UsageError(f"{prefix}_dtm is registered already; remove it from the raster catalogue first")
    cloud = Path(settings.var_dir) / "demo" / "demo_q8.laz"
    if not cloud.exists():
        click.echo("synthesising the demo LiDAR cloud ...")
        lidar_synth.write_las(lidar_synth.synthesize(demo_data.generate()), cloud)
    with engine.begin() as conn:
        job_id = jobs.submit_processing_job(
            conn, sources=[{"path": str(cloud), "crs": None, "vertical_datum": CITY_VERTICAL_DATUM}],
            prefix=prefix, tile_size=500.0, resolution=resolution, target_srid=CITY_SRID, owner="demo")
    click.echo(f"processing the cloud (job {job_id}) ...")
    jobs.run_processing_job(engine, job_id, Path(settings.raster_dir) / prefix, n_workers=1)
    click.echo(f"demo terrain registered: {prefix}_dtm, {prefix}_dsm, {prefix}_ndsm, {prefix}_hillshade")


# --- serving -------------------------------------------------------------------------------------
@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int,
              help="threads per worker for the requests handed to Flask (everything but identify)")
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="one line per request on stdout")
@click.option("--dev", is_flag=True, help="Flask's development server (auto-reload), not gunicorn")
def serve(host, port, workers, threads, access_log, dev):
    """Serve the application (gunicorn's asgi worker; --dev for Flask's development server)."""
    if dev:
        from gisserver import create_app

        create_app().run(host=host, port=port, debug=True)
        return
    from gisserver.config import Settings

    os.environ["GISSERVER_THREADS"] = str(threads)
    control = Path(Settings.from_env().var_dir) / "run" / f"gunicorn-{port}.ctl"
    control.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "gunicorn", *gunicorn_arguments(host, port, workers, access_log, control)]
    os.execvp(sys.executable, command)


def gunicorn_arguments(host: str, port: int, workers: int, access_log: bool = True,
                       control_socket: Path | None = None) -> list[str]:
    """gunicorn's command line for production serving (also used by the benchmarks and tests):
    the ASGI front (:mod:`gisserver.asgi`) on gunicorn's asgi worker with uvloop, keep-alive for
    map clients. gunicorn parses HTTP in C when gunicorn_h1c is installed (optional).

    ``--reuse-port``: each worker listens on a socket of its own (SO_REUSEPORT) and the kernel
    spreads new connections over them. On one shared socket the worker that wakes first accepts
    every waiting connection, so a few keep-alive clients (a browser's six) often all land on one
    single-threaded event loop while the other idles.

    gunicorn's control socket (``gunicornc``) is ``control_socket`` (``gisserver serve``: under the
    var folder, one per port), else off: its default path is one per user, so a second server, a
    test's or a benchmark's, would take it over and remove it when it stops."""
    arguments = ["--workers", str(workers), "--worker-class", "asgi", "--asgi-loop", "uvloop",
                 "--keep-alive", "30", "--reuse-port", "--bind", f"{host}:{port}"]
    arguments += ["--control-socket", str(control_socket)] if control_socket else ["--no-control-socket"]
    if access_log:
        arguments += ["--access-logfile", "-"]
    return [*arguments, "app:asgi"]


# modules that add command groups of their own to ``main``
COMMAND_MODULES: list[str] = [
    "gisserver.cli_tiles",
    "gisserver.cli_licensing",
    "gisserver.cli_layers",
    "gisserver.cli_lidar",
]


def _attach_command_modules() -> None:
    import importlib

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(main)


_attach_command_modules()
