"""Browser fixtures: headless Debian Chromium driven by Playwright, the live server with the demo
neighbourhood loaded, and a page that fails the test on any console error or page error.

Screenshots go to ``test-artifacts/web/`` (gitignored) so a person can look at the views.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from gisserver.config import PROJECT_ROOT

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    # WebGL without a GPU (MapLibre needs it): SwiftShader in software
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "web"
PASSWORD = "s3cret-pass"  # the password make_user gives every test user
TILE_RE = re.compile(r"/tiles/[a-z_]+/\d+/\d+/\d+\.mvt$")


@pytest.fixture(scope="package")
def demo(db_engine, app):
    """The demo neighbourhood (Quận 8) loaded into the test database; returns the DemoData."""
    from layers import demo as demo_module
    from tests.conftest import empty_database

    empty_database(db_engine)  # nothing left over by other packages' tests (rasters, layers)
    data = demo_module.generate()
    demo_module.load(db_engine, data)
    return data


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"Debian chromium not found at {CHROMIUM} (apt-get install chromium)"
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class PageWatch:
    """What a page did: console errors, page errors, failed requests, tile responses."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        self.tiles: list[tuple[str, int]] = []
        self.allowed_urls: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def allow(self, url_part: str):
        """Expect an error answer from a URL containing ``url_part`` (e.g. a lookup that finds nothing):
        the browser logs "Failed to load resource" for it, which is not a fault of the page."""
        self.allowed_urls.append(url_part)

    def _console(self, msg):
        url = (msg.location or {}).get("url", "")
        if any(part in url for part in self.allowed_urls) and msg.text.startswith("Failed to load resource"):
            return
        if msg.type in ("error", "assert"):
            self.errors.append(f"console.{msg.type}: {msg.text} @ {msg.location}")

    def _failed(self, request):
        # tiles of a source removed on a re-login are aborted on purpose
        if request.failure and "ERR_ABORTED" in request.failure and TILE_RE.search(request.url.split("?")[0]):
            return
        self.errors.append(f"request failed: {request.url} {request.failure}")

    def _response(self, response):
        path = response.url.split("?")[0]
        if TILE_RE.search(path):
            self.tiles.append((path, response.status))

    def assert_clean(self):
        assert not self.errors, "browser reported errors:\n" + "\n".join(self.errors)


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (Vietnamese locale) on the live server; fails on console errors."""
    context = browser.new_context(base_url=live_server, locale="vi-VN", viewport={"width": 1200, "height": 760},
                                  timezone_id="Asia/Ho_Chi_Minh")
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    watch = PageWatch(pg)
    pg.watch = watch
    yield pg
    try:
        watch.assert_clean()
    finally:
        context.close()


def parcel_of(data, ward: str, sheet: int, number: int) -> dict:
    """The demo parcel row (shapely geometry in the city CRS) with this number."""
    return next(p for p in data.tables["parcel"]
                if (p["ward_code"], p["sheet_no"], p["parcel_no"]) == (ward, sheet, number))


def to_lonlat(x: float, y: float) -> tuple[float, float]:
    from gisserver.crs import CITY_SRID, transformer

    lon, lat = transformer(CITY_SRID, 4326).transform(x, y)
    return float(lon), float(lat)


def show_point(page, lon: float, lat: float, zoom: float = 19):
    """Centre the map on a point at a zoom, wait until rendered; returns the page pixel of the point."""
    page.evaluate("([lon, lat, z]) => window.gisApp.map.jumpTo({center: [lon, lat], zoom: z})", [lon, lat, zoom])
    wait_map_idle(page)
    return map_pixel(page, lon, lat)


def map_pixel(page, lon: float, lat: float) -> tuple[float, float]:
    xy = page.evaluate("([lon, lat]) => { const p = window.gisApp.map.project([lon, lat]); return [p.x, p.y]; }",
                       [lon, lat])
    box = page.locator("#map").bounding_box()
    return box["x"] + xy[0], box["y"] + xy[1]


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def wait_until(page, expression: str, timeout: float = 30.0):
    """Poll a JavaScript expression until it is truthy. (Playwright's wait_for_function evaluates
    string predicates with eval(), which the page's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout
    while True:
        if page.evaluate(expression):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {expression}")
        page.wait_for_timeout(100)


def wait_map_idle(page, timeout=30_000):
    """Until the app is ready and the map has loaded and rendered every visible tile."""
    page.wait_for_selector("body[data-ready='true']", timeout=timeout)
    wait_until(page, "!!(window.gisApp && window.gisApp.map && window.gisApp.map.loaded()"
                     " && window.gisApp.map.areTilesLoaded())", timeout / 1000)


def login(page, username: str, password: str = PASSWORD):
    page.click("#login-open")
    page.fill("#login-form input[name=username]", username)
    page.fill("#login-form input[name=password]", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#user-role:not([hidden])")
    wait_map_idle(page)  # the layers the role may read are loaded again


def api_login(page, username: str, password: str = PASSWORD):
    """Log the page's browser context in through POST /auth/login (the session cookie is shared)."""
    resp = page.context.request.post("/auth/login", data={"username": username, "password": password})
    assert resp.ok, resp.text()
