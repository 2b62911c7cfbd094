"""MapLibre GL JS in headless Chromium renders the served vector tiles with the served style."""

from __future__ import annotations

from pathlib import Path

from gisserver.config import PROJECT_ROOT
from tests.tiles.conftest import BEN_THANH, lonlat

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
MAPLIBRE_JS = PROJECT_ROOT / "node_modules" / "maplibre-gl" / "dist" / "maplibre-gl.js"

RENDER = """([style, lon, lat]) => new Promise((resolve, reject) => {
  const map = new maplibregl.Map({container: 'map', style, center: [lon, lat], zoom: 17.5,
                                  fadeDuration: 0, attributionControl: false});
  map.on('error', (e) => reject(String(e.error && e.error.message)));
  map.once('idle', () => resolve({
    parcels: map.queryRenderedFeatures({layers: ['parcels-fill']}).map((f) => f.properties.parcel_no),
    layers: map.getStyle().layers.map((l) => l.id),
  }));
  setTimeout(() => reject('map never became idle'), 30000);
})"""


def test_maplibre_renders_parcels_without_errors(live_server, ben_thanh):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "apt-get install chromium"
    assert MAPLIBRE_JS.exists(), "npm install (maplibre-gl from the npm registry)"
    errors: list[str] = []
    tiles: list[int] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 512, "height": 512})
            page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "assert") else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("response", lambda r: tiles.append(r.status) if r.url.endswith(".mvt") else None)
            page.route("**/favicon.ico", lambda route: route.fulfill(status=204))  # the server has none
            page.goto(f"{live_server}/tiles/parcels.json")  # a document of the server's origin
            page.set_content("<html><body style='margin:0'><div id='map' style='width:512px;height:512px'>"
                             "</div></body></html>")
            page.add_script_tag(path=str(MAPLIBRE_JS))
            lon, lat = lonlat(BEN_THANH[0] + 80, BEN_THANH[1] + 80)
            result = page.evaluate(RENDER, [f"{live_server}/styles/parcels.json", lon, lat])
        finally:
            browser.close()
    assert not errors, errors
    assert tiles and all(status == 200 for status in tiles)
    assert {"parcels-fill", "parcels-outline"} <= set(result["layers"])
    assert set(result["parcels"]) == set(range(1, 17))
