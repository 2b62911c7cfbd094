"""The web map application in headless Chromium against the live server and the demo data."""

from __future__ import annotations

from tests.web.conftest import screenshot, wait_map_idle


def test_page_loads_in_vietnamese_with_map_tiles(page, demo):
    page.goto("/")
    wait_map_idle(page)
    assert page.locator("html").get_attribute("lang") == "vi"
    assert page.locator("h1").inner_text() == "Hệ thống GIS quản lý đô thị TP. Hồ Chí Minh"
    assert page.locator("[data-tab=layers]").inner_text() == "Lớp bản đồ"
    assert page.locator("label[for=layer-parcels] .layer-name").inner_text() == "Thửa đất"
    screenshot(page, "01-map-vi")
    tiles = page.watch.tiles
    assert any("/tiles/parcels/" in url for url, _ in tiles), tiles
    assert tiles and all(status == 200 for _, status in tiles), tiles
