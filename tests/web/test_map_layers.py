"""The map's labels, ward boundaries and raster products, in headless Chromium against the live
server and the demo data, plus the glyph ranges the server builds from DejaVu Sans. Every browser
test fails on any console error, page error or failed request (see the ``page`` fixture)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import delete, select, update

from gisserver import schema
from tests.web.conftest import login, screenshot, to_lonlat, wait_map_idle, wait_until

FONT = "DejaVu Sans Book"
VIETNAMESE = "Phường 16 Rạch Ông Lớn Đại lộ Võ Văn Kiệt Quận 8 Kênh Đôi Hẻm Công viên"


def glyph_ids(pbf: bytes) -> set[int]:
    """Code points of the glyphs in a MapLibre glyph range (glyphs.proto: fontstack 1 / glyph 3 / id 1)."""

    def fields(buf: bytes):
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, i = varint(buf, i)
            elif wire == 2:
                size, i = varint(buf, i)
                value, i = buf[i:i + size], i + size
            else:
                raise AssertionError(f"unexpected wire type {wire}")
            yield number, value

    def varint(buf: bytes, i: int) -> tuple[int, int]:
        shift = result = 0
        while True:
            byte = buf[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return result, i

    ids = set()
    for number, stack in fields(pbf):
        assert number == 1
        for field, glyph in fields(stack):
            if field == 3:
                ids |= {value for key, value in fields(glyph) if key == 1}
    return ids


def test_glyph_ranges_cover_vietnamese(live_server):
    needed = {ord(ch) for ch in VIETNAMESE if not ch.isspace()}
    ranges = {cp // 256 * 256 for cp in needed}
    assert len(ranges) >= 3  # ASCII, Latin Extended-A/B (Đ, ơ, ư), Latin Extended Additional (ạ, ớ, ờ)
    have = set()
    for start in sorted(ranges):
        resp = requests.get(f"{live_server}/glyphs/{FONT}/{start}-{start + 255}.pbf", timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"] == "application/x-protobuf"
        have |= glyph_ids(resp.content)
    assert needed - have == set(), sorted(chr(c) for c in needed - have)
    # a font stack names fonts in order of preference: the first one the server has is used
    stack = requests.get(f"{live_server}/glyphs/Noto Sans Regular,{FONT}/7680-7935.pbf", timeout=30)
    assert stack.status_code == 200 and ord("ờ") in glyph_ids(stack.content)


def test_glyph_requests_that_cannot_be_served_are_problems(live_server):
    for path, status in (("/glyphs/No Such Font/0-255.pbf", 404), (f"/glyphs/{FONT}/0-511.pbf", 400),
                         (f"/glyphs/{FONT}/100-355.pbf", 400), (f"/glyphs/{FONT}/65536-65791.pbf", 400),
                         ("/glyphs/..%2F..%2Fapp/0-255.pbf", 404)):
        resp = requests.get(f"{live_server}{path}", timeout=30)
        assert resp.status_code == status, (path, resp.status_code)
        assert resp.headers["Content-Type"] == "application/problem+json", path
    paths = requests.get(f"{live_server}/openapi", timeout=30).json()["paths"]
    assert "/glyphs/{fontstack}/{codepoints}.pbf" in paths


def _rendered(page, layer: str, prop: str) -> list:
    return page.evaluate(
        "([layer, prop]) => window.gisApp.map.queryRenderedFeatures({layers: [layer]}).map(f => f.properties[prop])",
        [layer, prop])


def test_map_labels_are_drawn_with_vietnamese_text(page, demo):
    glyphs = []
    page.on("response", lambda r: glyphs.append((r.url, r.status)) if "/glyphs/" in r.url else None)
    ox, oy = demo.origin
    lon, lat = to_lonlat(ox + 400, oy + 560)  # where the avenue crosses the 25 m road
    page.goto(f"/#map=17.2/{lat}/{lon}")
    wait_map_idle(page)
    roads = set(_rendered(page, "roads-label", "name"))
    assert "Đại lộ Võ Văn Kiệt (demo)" in roads, roads
    assert any(name.startswith("Đường Phạm Thế Hiển") for name in roads), roads
    assert "Kênh Đôi (demo)" in _rendered(page, "water_bodies-label", "name")
    numbers = _rendered(page, "parcels-label", "parcel_no")
    assert len(numbers) > 10 and all(isinstance(n, int) for n in numbers)
    assert glyphs and all(status == 200 for _, status in glyphs), glyphs
    assert all(f"/glyphs/{FONT.replace(' ', '%20')}/" in url for url, _ in glyphs), glyphs
    # the Vietnamese range (ạ ớ ờ ệ ...) was needed and served
    assert any("/7680-7935.pbf" in url for url, _ in glyphs), glyphs
    screenshot(page, "10-labels")
    # zoning codes, once the (initially hidden) zoning layer is switched on
    assert _rendered(page, "zoning-label", "zone_code") == []
    page.check("#layer-zoning")
    # the map may still count as idle in the frame before it requests the zoning tiles
    wait_until(page, "window.gisApp.map.queryRenderedFeatures({layers: ['zoning-label']}).length > 0")
    wait_map_idle(page)
    codes = set(_rendered(page, "zoning-label", "zone_code"))
    assert codes and codes <= {z["zone_code"] for z in demo.tables["zoning_zone"]}, codes
    # switching a layer off hides its labels with it
    page.uncheck("#layer-roads")
    wait_map_idle(page)
    # the map counts as idle (no tile to load) in the frame before it repaints without the layer
    wait_until(page, "window.gisApp.map.getLayoutProperty('roads-label', 'visibility') === 'none'"
                     " && window.gisApp.map.queryRenderedFeatures({layers: ['roads-label']}).length === 0", 10)
    assert _rendered(page, "roads-label", "name") == []


def test_ward_boundaries_and_names_on_the_map(page, demo):
    ox, oy = demo.origin
    lon, lat = to_lonlat(ox + 500, oy + 500)
    page.goto(f"/#map=15.3/{lat}/{lon}")
    wait_map_idle(page)
    assert page.locator("label[for=layer-wards] .layer-name").inner_text() == "Ranh giới phường/xã"
    assert page.locator("#layer-wards").is_checked()
    names = set(_rendered(page, "wards-label", "name"))
    assert names == {"Phường 4", "Phường 5", "Phường 6"}, names
    assert len(_rendered(page, "wards-outline", "code")) >= 3
    screenshot(page, "11-wards")


SURVEY = "web_survey"  # raster name prefix of the LiDAR survey below


@pytest.fixture(scope="module")
def lidar_survey(demo, db_engine, tmp_path_factory):
    """A synthetic LiDAR survey of a 200 m window of the demo ingested like an upload (lidar.jobs):
    DTM, DSM, nDSM and hillshade registered (the nDSM then made internal), and the cadastral
    buildings of the window given their LiDAR heights. Returns the window (city CRS) and the job result."""
    from layers import demo_lidar
    from lidar import jobs

    ox, oy = demo.origin
    window = (ox + 300, oy + 320, ox + 500, oy + 520)
    folder = tmp_path_factory.mktemp("survey")
    cloud = demo_lidar.write_las(demo_lidar.synthesize(demo, density=4.0, bounds=window), folder / "q8.laz")
    with db_engine.begin() as conn:
        job_id = jobs.submit_ingest_job(conn, path=cloud, name="Khảo sát LiDAR Quận 8 (demo)", uploaded=False,
                                        prefix=SURVEY, resolution=1.0, owner="test")
    result = jobs.run_ingest_job(db_engine, job_id, folder / "out", n_workers=1, processes=False)
    with db_engine.begin() as conn:
        conn.execute(update(schema.raster).where(schema.raster.c.name == f"{SURVEY}_ndsm")
                     .values(access_level="internal"))
    yield window, result
    with db_engine.begin() as conn:  # later test modules see the raster catalogue as before
        conn.execute(delete(schema.raster).where(schema.raster.c.name.like(f"{SURVEY}_%")))


def _raster_items(page) -> dict[str, str]:
    """{raster layer id: visible text} of the panel's raster products."""
    return dict(page.eval_on_selector_all(
        ".raster-item", "items => items.map(li => [li.querySelector('input').id, li.innerText])"))


def test_raster_products_with_legends_and_access_rules(page, lidar_survey, make_user):
    window, result = lidar_survey
    assert set(result["rasters"]) == {"dtm", "dsm", "ndsm", "hillshade"}
    tiles = []
    page.on("response",
            lambda r: tiles.append((r.url, r.status)) if urlsplit(r.url).path.startswith("/raster/") else None)
    lon, lat = to_lonlat((window[0] + window[2]) / 2, (window[1] + window[3]) / 2)
    page.goto(f"/#map=17/{lat}/{lon}")
    wait_map_idle(page)
    items = _raster_items(page)
    # the public sees the public products, not the internal nDSM
    assert set(items) == {f"layer-raster-{SURVEY}_{k}" for k in ("dtm", "dsm", "hillshade")}, items
    dtm = items[f"layer-raster-{SURVEY}_dtm"]
    assert "Mô hình số độ cao mặt đất (DTM)" in dtm and f"{SURVEY}_dtm" in dtm
    assert "−1 … 8 m" in dtm  # the legend: the DTM ramp's range in the Hòn Dấu datum
    assert "Bóng đổ địa hình (DTM)" in items[f"layer-raster-{SURVEY}_hillshade"]
    assert page.locator("#layer-hillshade-pending").count() == 0
    assert tiles == []  # products start switched off: no tile requested yet

    page.check(f"#layer-raster-{SURVEY}_dtm")
    page.check(f"#layer-raster-{SURVEY}_hillshade")
    wait_map_idle(page)
    assert page.evaluate(f"window.gisApp.map.getLayoutProperty('raster-{SURVEY}_dtm', 'visibility')") == "visible"
    dtm_tiles = [(url, status) for url, status in tiles if f"/raster/{SURVEY}_dtm/" in url]
    shade_tiles = [(url, status) for url, status in tiles if f"/raster/{SURVEY}_hillshade/" in url]
    assert dtm_tiles and shade_tiles and all(status == 200 for _, status in tiles), tiles
    # raster products lie below the vector layers: parcels and labels stay on top
    order = page.evaluate("window.gisApp.map.getStyle().layers.map(l => l.id)")
    assert order.index(f"raster-{SURVEY}_dtm") < order.index("parcels-fill") < order.index("roads-label")
    screenshot(page, "12-raster-dtm-hillshade")
    page.click("#lang-switch")  # the section and the products in English, and back
    assert page.locator(".layer-group").inner_text().lower() == "terrain products (raster)"
    assert "Digital terrain model (DTM)" in _raster_items(page)[f"layer-raster-{SURVEY}_dtm"]
    page.click("#lang-switch")

    # an officer may read the internal nDSM too; it leaves again with the logout
    name = f"officer_{uuid.uuid4().hex[:6]}"
    make_user("officer", username=name)
    login(page, name)
    items = _raster_items(page)
    ndsm = items.get(f"layer-raster-{SURVEY}_ndsm", "")
    assert "Chiều cao trên mặt đất (nDSM)" in ndsm and "0 … 40 m" in ndsm, items
    assert page.locator(f"#layer-raster-{SURVEY}_dtm").is_checked()  # kept as it was
    page.check(f"#layer-raster-{SURVEY}_ndsm")
    wait_map_idle(page)
    assert any(f"/raster/{SURVEY}_ndsm/" in url and status == 200 for url, status in tiles), tiles
    page.click("#logout")
    page.wait_for_selector("#login-open:not([hidden])")
    wait_map_idle(page)
    assert f"layer-raster-{SURVEY}_ndsm" not in _raster_items(page)
    assert page.evaluate(f"!window.gisApp.map.getLayer('raster-{SURVEY}_ndsm')")


def test_3d_city_model_extrudes_the_lidar_heights(page, lidar_survey, db_engine):
    window, result = lidar_survey
    assert result["buildings"]["cadastral_updated"] > 50
    b = schema.building
    with db_engine.connect() as conn:
        lidar_heights = [h for (h,) in conn.execute(select(b.c.height).where(b.c.roof_p70.is_not(None)))]
    assert len(lidar_heights) == result["buildings"]["cadastral_updated"] + len(result["buildings"]["ids"])
    lon, lat = to_lonlat((window[0] + window[2]) / 2, (window[1] + window[3]) / 2)
    page.goto(f"/#map=17.5/{lat}/{lon}")
    wait_map_idle(page)
    page.click("#view-3d")
    wait_until(page, "window.gisApp.map.getPitch() > 55")
    wait_map_idle(page)
    assert page.locator("#view-3d").inner_text() == "2D"
    layout = "window.gisApp.map.getLayoutProperty"
    assert page.evaluate(f"{layout}('buildings-fill', 'visibility')") == "none"
    assert page.evaluate(f"{layout}('parcels-label', 'visibility')") == "none"  # no numbers over the roofs
    rendered = page.evaluate(
        "window.gisApp.map.queryRenderedFeatures({layers: ['buildings-3d']}).map(f => f.properties.height)")
    # the blocks stand at the heights measured in the cloud (roof p70 over ground p10, to the mm),
    # not the cadastre's rounded storey heights
    measured = {round(h, 3) for h in lidar_heights}
    from_lidar = [h for h in rendered if round(h, 3) in measured and round(h, 1) != round(h, 3)]
    assert len(from_lidar) > 20, (len(rendered), sorted(rendered)[:20])
    # the extrusion height is what the GPU draws: the paint expression reads the height attribute
    paint = page.evaluate("window.gisApp.map.getPaintProperty('buildings-3d', 'fill-extrusion-height')")
    assert paint[0] == "coalesce" and paint[1] == ["get", "height"]
    screenshot(page, "13-3d-lidar-buildings")
    page.click("#view-3d")
    wait_until(page, "window.gisApp.map.getPitch() < 1")
    assert page.evaluate(f"{layout}('parcels-label', 'visibility')") == "visible"
    assert page.evaluate(f"{layout}('buildings-3d', 'visibility')") == "none"
