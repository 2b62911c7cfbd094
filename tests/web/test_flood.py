"""The planners' flood flow in the browser, end to end: a planner chooses a scenario, a real flood
worker process runs it on the demo terrain, the progress bar reaches 100 %, the time slider plays
the depth over time on the map, the affected assets table fills and its CSV downloads.

The DTM is the demo neighbourhood's ground surface (``layers.demo.terrain_height``, the surface
the demo LiDAR is synthesised from) sampled at 10 m: 100 x 100 cells, so a 15-minute scenario runs
in seconds. Real server, real database, real worker process, real Chromium; no mocks.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import numpy as np
import pytest
import rasterio
from affine import Affine
from sqlalchemy import delete, text

from flood.tables import FLOOD_LAYER
from gisserver import schema
from gisserver.config import PROJECT_ROOT
from gisserver.crs import CITY_SRID, city_crs
from layers.demo import SIZE, terrain_height
from lidar.catalogue import register_raster
from tests.web.conftest import api_login, screenshot, wait_map_idle, wait_until

CELL = 10.0
CSV_HEADER = "kind,id,name,max_depth,mean_depth,wet_fraction"


@pytest.fixture
def demo_terrain(demo, db_engine, tmp_path):
    """The demo area's DTM registered in the raster catalogue; removed with the test's runs after."""
    ox, oy = demo.origin
    n = int(SIZE / CELL)
    cols, rows = np.meshgrid(np.arange(n), np.arange(n))
    z = terrain_height(ox + (cols + 0.5) * CELL, oy + SIZE - (rows + 0.5) * CELL, demo.origin)
    path = tmp_path / "demo_dtm_10m.tif"
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs=city_crs(),
                       transform=Affine(CELL, 0, ox, 0, -CELL, oy + SIZE)) as dst:
        dst.write(z.astype("float32"), 1)
    with db_engine.begin() as conn:
        raster_id = register_raster(conn, name="demo_dtm_10m", kind="dtm", path=path, srid=CITY_SRID,
                                    vertical_datum="Hon Dau", sources=[])
    yield raster_id
    with db_engine.begin() as conn:  # the other browser tests keep their demo database as it was
        conn.execute(text("TRUNCATE flood_run, flood_scenario RESTART IDENTITY CASCADE"))
        conn.execute(delete(schema.job).where(schema.job.c.kind == "flood-run"))
        conn.execute(delete(schema.raster).where(schema.raster.c.id == raster_id))
        conn.execute(delete(schema.layer).where(schema.layer.c.name == FLOOD_LAYER))


@pytest.fixture
def flood_worker(database_url, tmp_path):
    """``python -m flood.worker`` as its own process on the test database."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flood.worker", "--database-url", database_url, "--output", str(tmp_path / "flood")],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    yield proc
    proc.terminate()
    try:
        output, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    assert "Traceback" not in output, output


def _source_tiles(page) -> str:
    return page.evaluate("() => { const s = window.gisApp.map.getSource('flood-run'); return s ? s.tiles[0] : null; }")


def test_planner_runs_a_flood_scenario_and_plays_it(page, demo_terrain, flood_worker, make_user, tmp_path):
    name = f"planner_{uuid.uuid4().hex[:6]}"
    make_user("planner", username=name)
    api_login(page, name)
    page.goto("/")
    wait_map_idle(page)
    page.click("[data-tab=flood]")
    assert page.locator("#flood-start").is_enabled() and page.locator("#flood-message").inner_text() == ""
    page.select_option("#flood-form select[name=return_period]", "10")
    page.fill("#flood-form input[name=tide_level]", "1.6")
    page.fill("#flood-form input[name=duration_hours]", "0.25")
    page.click("#flood-start")

    # the worker process takes the run; the page polls it until the bar is full
    page.locator("#flood-run").wait_for(state="visible")
    wait_until(page, "document.getElementById('flood-progress').dataset.status === 'succeeded'", timeout=120)
    assert page.locator("#flood-progress").evaluate("p => p.value") == 100
    assert page.locator("#flood-status").inner_text() == "Hoàn thành — 100 %"

    # a time slider over the saved steps (every minute of the 15), at the last one first
    page.locator("#flood-time-box").wait_for(state="visible")
    slider = page.locator("#flood-time")
    assert slider.evaluate("s => [Number(s.max), Number(s.value)]") == [14, 14]
    last = _source_tiles(page)
    assert "/tiles/900/{z}/{x}/{y}.png" in last
    assert "sau 0 giờ 15 phút" in page.locator("#flood-time-label").inner_text()
    wait_map_idle(page)
    screenshot(page, "10-flood-finished")
    slider.evaluate("s => { s.value = '4'; s.dispatchEvent(new Event('input')); }")
    # MapLibre applies setTiles asynchronously: wait for the source to show the 5-minute step
    wait_until(page, "(window.gisApp.map.getSource('flood-run').tiles || [''])[0].includes('/tiles/300/')", 10)
    assert _source_tiles(page) != last
    assert "sau 0 giờ 05 phút" in page.locator("#flood-time-label").inner_text()
    wait_map_idle(page)
    screenshot(page, "11-flood-time-slider")

    # play runs the slider forward through the steps
    page.click("#flood-play")
    wait_until(page, "Number(document.getElementById('flood-time').value) >= 6", timeout=20)
    page.click("#flood-play")

    # assets the flood reached, deepest first, with the server's CSV
    rows = page.locator("#flood-affected-table tbody tr")
    assert rows.count() > 0
    depths = [float(v.replace(",", ".")) for v in page.locator("#flood-affected-table tbody td:nth-child(3)")
              .all_inner_texts()]
    assert depths == sorted(depths, reverse=True) and depths[0] > 0.1
    kinds = set(page.locator("#flood-affected-table tbody tr").evaluate_all("rs => rs.map(r => r.dataset.kind)"))
    assert kinds <= {"parcels", "buildings", "roads"} and kinds
    with page.expect_download(timeout=90_000) as info:  # the server computes the table again
        page.click("#flood-csv")
    csv_path = tmp_path / "affected.csv"
    info.value.save_as(csv_path)
    lines = csv_path.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == CSV_HEADER and len(lines) == rows.count() + 1

    # English on request, the results stay
    page.click("#lang-switch")
    headers = page.locator("#flood-affected-table thead th").all_inner_texts()
    assert headers[:3] == ["Kind", "Asset", "Max depth (m)"]
    assert page.locator("#flood-status").inner_text() == "Finished — 100 %"
    assert "after 0 h" in page.locator("#flood-time-label").inner_text()
    screenshot(page, "12-flood-affected-en")
    page.click("#lang-switch")
