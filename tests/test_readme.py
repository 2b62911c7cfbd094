"""The README's run command, as a new user types it: a server with demo data answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import requests

from gisserver.config import PROJECT_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_names_the_two_commands():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert "./dev run" in readme and "./dev test" in readme
    assert "./dev test" in (PROJECT_ROOT / ".ci" / "run").read_text()


def test_dev_run_serves_the_demo(tmp_path):
    port, pg_port = _free_port(), _free_port()
    env = {**os.environ, "GISSERVER_VAR_DIR": str(tmp_path / "var"), "GISSERVER_PG_PORT": str(pg_port)}
    env.pop("DATABASE_URL", None)
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen(
        [str(PROJECT_ROOT / "dev"), "run", "--port", str(port)], cwd=PROJECT_ROOT, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # first run: demo data, LiDAR -> DTM
        while True:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            try:
                if requests.get(base + "/health", timeout=10).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still booting
                pass
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.5)
        health = requests.get(base + "/health", timeout=5).json()
        assert health["status"] == "ok" and health["postgis"].startswith("3.")
        output = (tmp_path / "run.log").read_text()
        assert "demo data loaded" in output and "parcel 6" in output
        assert "demo terrain registered" in output
        # the demo is queryable: a parcel of the generated neighbourhood, its DTM, the flood worker
        items = requests.get(base + "/ogc/collections/parcels/items?f=json&limit=1", timeout=10).json()
        assert items["numberMatched"] > 6000
        rasters = {r["name"] for r in requests.get(base + "/api/rasters", timeout=10).json()["rasters"]}
        assert {"demo_q8_dtm", "demo_q8_hillshade"} <= rasters
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:  # it already exited (the assertion above says why)
            pass
        proc.wait(timeout=30)
        log.close()
        subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / "gisserver"), "db", "stop"], env=env,
                       cwd=PROJECT_ROOT, capture_output=True, timeout=60)
