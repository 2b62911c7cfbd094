"""The web map application in headless Chromium against the live server and the demo data:
Vietnamese by default, English switch, map tiles, click-to-identify, 3D view. Every test fails on
any console error or page error (see the ``page`` fixture)."""

from __future__ import annotations

from tests.web.conftest import map_pixel, parcel_of, screenshot, to_lonlat, wait_map_idle, wait_until

PARCEL = ("27430", 1, 101)  # ward (Phường 4), map sheet, parcel number of a demo parcel


def test_page_loads_in_vietnamese_with_map_tiles_and_switches_language(page, demo):
    page.goto("/")
    wait_map_idle(page)
    assert page.locator("html").get_attribute("lang") == "vi"
    assert page.locator("h1").inner_text() == "Hệ thống GIS quản lý đô thị TP. Hồ Chí Minh"
    assert page.locator("[data-tab=layers]").inner_text() == "Lớp bản đồ"
    assert page.locator("#login-open").inner_text() == "Đăng nhập"
    assert page.locator(".maplibregl-ctrl-zoom-in").get_attribute("title") == "Phóng to"
    names = page.locator(".layer-list .layer-name").all_inner_texts()
    assert {"Thửa đất", "Công trình xây dựng", "Đường giao thông", "Quy hoạch phân khu"} <= set(names)
    # public visitors see no internal layers (drainage, power lines are internal)
    assert "Lưới điện" not in names and "Thoát nước" not in names
    # officer tools are hidden from the public
    assert page.locator("[data-tab=search]").is_hidden()
    # cursor coordinates in VN-2000 and WGS84
    page.mouse.move(900, 450)
    assert page.locator("#coord-city").inner_text().startswith("E 59")
    assert "10." in page.locator("#coord-wgs").inner_text()
    screenshot(page, "01-map-vi")
    tiles = page.watch.tiles
    assert any("/tiles/parcels/" in url for url, _ in tiles), tiles
    assert any("/tiles/buildings/" in url for url, _ in tiles), tiles
    assert all(status == 200 for _, status in tiles), tiles
    rendered = page.evaluate("window.gisApp.map.queryRenderedFeatures({layers: ['parcels-fill']}).length")
    assert rendered > 100

    # the English switch, remembered for the next visit, and back
    page.click("#lang-switch")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Ho Chi Minh City urban-management GIS"
    assert page.locator("[data-tab=layers]").inner_text() == "Layers"
    assert page.locator("label[for=layer-parcels] .layer-name").inner_text() == "Cadastral parcels"
    assert page.locator(".maplibregl-ctrl-zoom-in").get_attribute("title") == "Zoom in"
    screenshot(page, "02-map-en")
    assert page.evaluate("window.localStorage.getItem('gisserver.lang')") == "en"  # remembered
    page.click("#lang-switch")
    assert page.locator("[data-tab=layers]").inner_text() == "Lớp bản đồ"
    assert page.locator("#lang-switch").inner_text() == "English"


def test_click_on_a_parcel_opens_its_card(page, demo):
    parcel = parcel_of(demo, *PARCEL)
    point = parcel["geom"].representative_point()
    lon, lat = to_lonlat(point.x, point.y)
    page.goto(f"/#map=19/{lat}/{lon}")
    wait_map_idle(page)
    x, y = map_pixel(page, lon, lat)
    page.mouse.move(x, y)
    tooltip = page.locator("#map-tooltip")
    tooltip.wait_for(state="visible")
    assert tooltip.inner_text() == "Thửa đất số 101, tờ bản đồ số 1 · Phường 4"
    page.mouse.click(x, y)
    card = page.locator("#parcel-card")
    card.wait_for(state="visible")
    assert page.locator("#card-title").inner_text() == "Thửa đất số 101, tờ bản đồ số 1"
    text = card.inner_text()
    assert "Phường 4 (27430)" in text
    assert "Đất ở tại đô thị (ODT)" in text
    assert "Quy hoạch" in text and "Số tầng tối đa" in text
    # the public sees no rights and no owner
    assert "Chủ sử dụng" not in text
    assert "Thông tin quyền sử dụng chỉ hiển thị cho cán bộ." in text
    wait_map_idle(page)
    assert page.evaluate("window.gisApp.map.getSource('selection').getData().then(d => d.features.length)") == 1
    screenshot(page, "03-parcel-card")
    page.click("#parcel-card .icon")
    assert card.is_hidden()


def test_3d_view_extrudes_buildings(page, demo):
    page.goto("/#map=17.5/10.7256/106.6337")
    wait_map_idle(page)
    page.click("#view-3d")
    wait_until(page, "window.gisApp.map.getPitch() > 55")
    wait_map_idle(page)
    assert page.evaluate("window.gisApp.map.getLayoutProperty('buildings-3d', 'visibility')") == "visible"
    heights = page.evaluate(
        "window.gisApp.map.queryRenderedFeatures({layers: ['buildings-3d']}).map(f => f.properties.height)")
    assert len(heights) > 20 and max(heights) > 10
    screenshot(page, "04-3d-buildings")
    page.click("#view-3d")
    wait_until(page, "window.gisApp.map.getPitch() < 1")
    assert page.evaluate("window.gisApp.map.getLayoutProperty('buildings-3d', 'visibility')") == "none"
