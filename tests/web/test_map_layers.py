"""The map's labels, ward boundaries and raster products, in headless Chromium against the live
server and the demo data, plus the glyph ranges the server builds from DejaVu Sans. Every browser
test fails on any console error, page error or failed request (see the ``page`` fixture)."""

from __future__ import annotations

import requests

from tests.web.conftest import screenshot, to_lonlat, wait_map_idle

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
    # switching a layer off hides its labels with it
    page.uncheck("#layer-roads")
    wait_map_idle(page)
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
