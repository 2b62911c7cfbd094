"""The embedded PostgreSQL 15 + PostGIS 3 cluster under ``var/pg``.

Used when no ``DATABASE_URL`` is configured. PostgreSQL refuses to run as root, so when this
process is root the server programs run as the ``postgres`` OS user (created by Debian's
package) and the cluster folder is owned by it. The cluster listens on loopback only, with
``trust`` authentication for loopback and its private socket: it is a development and
single-host database; production points ``DATABASE_URL`` at a managed PostGIS.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gisserver.errors import ConfigurationError, DatabaseUnavailable

PG_VERSION = "15"
PG_BIN_CANDIDATES = (Path(f"/usr/lib/postgresql/{PG_VERSION}/bin"),)
POSTGIS_CONTROL = Path(f"/usr/share/postgresql/{PG_VERSION}/extension/postgis.control")


@dataclass(frozen=True)
class EmbeddedCluster:
    root: Path
    port: int = 54329
    database: str = "gisserver"

    def __post_init__(self):
        # the server programs run with cwd=/ (and maybe as another user): paths must be absolute
        object.__setattr__(self, "root", Path(self.root).resolve())

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "postgresql.log"

    def url(self, database: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database or self.database}"

    # --- lifecycle -----------------------------------------------------------------------
    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> bool:
        """Create the cluster if it does not exist. Returns True when it was created."""
        if self.is_initialised():
            return False
        _check_postgis_installed()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.root)
        self._run(
            [
                _bin("initdb"),
                "-D", str(self.data_dir),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]
        )
        conf = self.data_dir / "postgresql.conf"
        with open(conf, "a", encoding="utf-8") as fh:
            fh.write(
                "\n# gisserver embedded cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\n"
                "shared_buffers = '512MB'\n"
                "work_mem = '32MB'\n"
                "maintenance_work_mem = '1GB'\n"
                "max_wal_size = '4GB'\n"
                "synchronous_commit = on\n"
                "fsync = on\n"
            )
        return True

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        result = self._run([_bin("pg_ctl"), "-D", str(self.data_dir), "status"], check=False)
        return result.returncode == 0

    def start(self, timeout: float = 60) -> bool:
        """Start the cluster (initialising it first). Returns True if it was started now."""
        self.init()
        if self.is_running():
            return False
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.socket_dir)
        result = self._run(
            [
                _bin("pg_ctl"),
                "-D", str(self.data_dir),
                "-l", str(self.log_file),
                "-o", f"-p {self.port}",
                "-w", "-t", str(int(timeout)),
                "start",
            ],
            check=False,
        )
        if result.returncode != 0:
            # another process (a second CLI call, a test fixture) may have started it meanwhile
            try:
                self._wait_ready(5)
            except DatabaseUnavailable:
                raise DatabaseUnavailable(
                    f"PostgreSQL did not start: {(result.stderr or result.stdout).strip()[-2000:]} "
                    f"(log: {self.log_file})"
                ) from None
            return False
        self._wait_ready(timeout)
        return True

    def stop(self) -> bool:
        if not self.is_running():
            return False
        self._run([_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
        return True

    def status(self) -> dict:
        return {
            "root": str(self.root),
            "initialised": self.is_initialised(),
            "running": self.is_running(),
            "port": self.port,
            "url": self.url(),
        }

    def ensure_database(self, name: str | None = None) -> str:
        """Create the database (with PostGIS) if missing; return its URL."""
        import psycopg2

        from gisserver.db import create_database

        name = name or self.database
        conn = psycopg2.connect(self.url("postgres"))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                missing = cur.fetchone() is None
        finally:
            conn.close()
        if missing:
            create_database(self.url("postgres"), name)
        conn = psycopg2.connect(self.url(name))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        finally:
            conn.close()
        return self.url(name)

    # --- helpers ---------------------------------------------------------------------------
    def _wait_ready(self, timeout: float) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseUnavailable(f"embedded PostgreSQL did not start: {exc}") from exc
                time.sleep(0.2)

    def _chown(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        user = _postgres_user()
        for p in [path, *path.rglob("*")]:
            os.chown(p, user.pw_uid, user.pw_gid)
        # the server must be able to reach its folder through every parent
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", _postgres_user().pw_name, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, cwd="/")
        if check and result.returncode != 0:
            raise DatabaseUnavailable(
                f"{Path(argv[-1]).name if argv else 'command'} failed: "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return result


def _bin(name: str) -> str:
    for folder in PG_BIN_CANDIDATES:
        candidate = folder / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ConfigurationError(
        f"PostgreSQL {PG_VERSION} program {name!r} not found: install Debian's "
        f"postgresql-{PG_VERSION}-postgis-3 (./dev setup does it) or set DATABASE_URL"
    )


def _check_postgis_installed() -> None:
    if not POSTGIS_CONTROL.exists():
        raise ConfigurationError(
            f"PostGIS for PostgreSQL {PG_VERSION} is not installed ({POSTGIS_CONTROL} missing): "
            f"apt-get install postgresql-{PG_VERSION}-postgis-3, or set DATABASE_URL"
        )


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ConfigurationError(
            "running as root needs the 'postgres' OS user (created by Debian's postgresql package)"
        ) from exc


def cluster_from_settings(settings) -> EmbeddedCluster:
    return EmbeddedCluster(
        root=Path(settings.pg_dir), port=settings.embedded_pg_port, database=settings.embedded_pg_database
    )
