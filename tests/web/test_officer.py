"""Officers' and planners' tools in the browser: login and roles, parcel search, the parcel card
with the land register, the permit check with its failing geometry on the map, dossiers and the
public status page, the flood panel. Real server, real database, no mocks."""

from __future__ import annotations

import uuid

import requests
from playwright.sync_api import expect
from shapely.geometry import box

from tests.conftest import auth
from tests.web.conftest import api_login, login, map_pixel, parcel_of, screenshot, to_lonlat, wait_map_idle

PARCEL = ("27430", 1, 101)


def _user(make_user, role):
    name = f"{role}_{uuid.uuid4().hex[:6]}"
    _, token = make_user(role, username=name)
    return name, token


def test_officer_login_search_and_parcel_card(page, demo, make_user):
    name, _ = _user(make_user, "officer")
    page.goto("/")
    wait_map_idle(page)
    login(page, name)
    assert page.locator("#user-name").inner_text() == name
    assert page.locator("#user-role").inner_text() == "Cán bộ địa chính"
    for tab in ("search", "permit", "dossiers"):
        assert page.locator(f"[data-tab={tab}]").is_visible()
    assert page.locator("[data-tab=flood]").is_hidden()
    # internal layers appear after login
    names = page.locator(".layer-list .layer-name").all_inner_texts()
    assert "Lưới điện" in names and "Thoát nước" in names

    page.click("[data-tab=search]")
    # the ward field suggests the wards by their Vietnamese names, with their codes
    options = page.eval_on_selector_all("#ward-list option", "os => os.map(o => [o.value, o.label])")
    assert options[:3] == [["Phường 4", "27430 · Quận 8"], ["Phường 5", "27433 · Quận 8"],
                           ["Phường 6", "27436 · Quận 8"]], options
    page.fill("#search-number input[name=ward]", "phường 4")  # a name as typed, resolved to code 27430
    page.fill("#search-number input[name=sheet]", str(PARCEL[1]))
    page.fill("#search-number input[name=parcel]", str(PARCEL[2]))
    page.click("#search-number button[type=submit]")
    page.locator("#parcel-card").wait_for(state="visible")
    assert page.locator("#card-title").inner_text() == "Thửa đất số 101, tờ bản đồ số 1"
    card = page.locator("#parcel-card")
    page.wait_for_selector("#card-register h3")
    text = card.inner_text()
    assert "Phường 4 (27430)" in text
    assert "201 Đường số 1, Phường 4, Quận 8" in text
    assert "Lịch sử biến động" in text and "Quyền, hạn chế, trách nhiệm" in text
    assert "Chủ sử dụng 00101" in text  # officers see the land user
    wait_map_idle(page)
    screenshot(page, "05-officer-search-card")

    page.fill("#search-address input[name=address]", "201 Đường số 1")
    page.click("#search-address button[type=submit]")
    page.wait_for_selector("#search-results .result-item")
    results = page.locator("#search-results").inner_text()
    assert "Thửa đất số 101, tờ bản đồ số 1 · Phường 4 (27430)" in results
    # a ward code still works
    page.fill("#search-number input[name=ward]", PARCEL[0])
    page.fill("#search-number input[name=parcel]", "102")
    page.click("#search-number button[type=submit]")
    page.wait_for_selector("#card-title:has-text('Thửa đất số 102')")


def test_permit_check_highlights_failing_geometry(page, demo, make_user):
    name, _ = _user(make_user, "officer")
    parcel = parcel_of(demo, *PARCEL)
    inside = parcel["geom"].representative_point()
    lon, lat = to_lonlat(inside.x, inside.y)
    api_login(page, name)
    page.goto(f"/#map=19.3/{lat}/{lon}")
    wait_map_idle(page)
    page.mouse.click(*map_pixel(page, lon, lat))
    page.locator("#card-permit").click()
    assert page.locator("[data-panel=permit]").is_visible()
    assert "Thửa đất số 101" in page.locator("#permit-parcel").inner_text()

    # a footprint 1.5 m larger than the parcel on every side: it leaves the parcel
    x0, y0, x1, y1 = parcel["geom"].bounds
    footprint = box(x0 - 1.5, y0 - 1.5, x1 + 1.5, y1 + 1.5)
    page.click("#draw-start")
    for x, y in list(footprint.exterior.coords)[:-1]:
        page.mouse.click(*map_pixel(page, *to_lonlat(x, y)))
        page.wait_for_timeout(350)  # separate clicks, not a double-click
    page.click("#draw-finish")
    assert "4 đỉnh" in page.locator("#draw-status").inner_text()
    page.fill("#permit-form input[name=floors]", "4")
    page.fill("#permit-form input[name=height]", "15")
    page.fill("#permit-form input[name=floor_elevation]", "2.5")
    page.click("#permit-form button[type=submit]")
    page.wait_for_selector("#permit-summary")
    assert "không đạt" in page.locator("#permit-summary").inner_text()
    row = page.locator("#permit-rules tr[data-rule=inside_parcel]")
    assert row.get_attribute("class") == "fail"
    assert "Công trình nằm trong thửa đất" in row.inner_text()
    assert "Không đạt" in row.inner_text()
    wait_map_idle(page)
    highlighted = page.evaluate("window.gisApp.map.queryRenderedFeatures({layers: ['violations-line']}).length")
    assert highlighted > 0
    screenshot(page, "06-permit-check")
    with page.expect_response(lambda r: "/api/checks?format=pdf" in r.url, timeout=90_000) as pdf:
        page.click("#permit-pdf")
    assert pdf.value.status == 200
    assert pdf.value.headers["content-type"] == "application/pdf"


def test_dossier_transition_and_public_status_page(page, demo, make_user, live_server):
    name, token = _user(make_user, "officer")
    ward, sheet, number = PARCEL
    found = requests.get(f"{live_server}/api/parcels/lookup", params={"ward": ward, "sheet": sheet, "parcel": number},
                         timeout=30).json()
    created = requests.post(f"{live_server}/api/dossiers", headers=auth(token), timeout=30, json={
        "kind": "construction_permit_house", "title": "Nhà ở riêng lẻ 4 tầng", "parcel_id": found["id"],
        "applicant_name": "Nguyễn Văn Bình", "applicant_contact": "0909 123 456",
    })
    assert created.status_code == 201, created.text
    code = created.json()["code"]

    api_login(page, name)
    page.goto("/")
    wait_map_idle(page)
    page.click("[data-tab=dossiers]")
    page.click(f"#dossiers-table tr[data-code='{code}']")
    page.wait_for_selector("#dossier-detail button[data-to=submitted]")
    page.click("#dossier-detail button[data-to=submitted]")
    expect(page.locator("#dossiers-message")).to_contain_text(code)
    assert "Đã nộp" in page.locator("#dossiers-message").inner_text()
    page.wait_for_selector("#dossier-detail button[data-to=accepted]")
    screenshot(page, "07-dossiers")

    page.click("#logout")
    page.wait_for_selector("#login-open:not([hidden])")
    wait_map_idle(page)
    page.goto("/tra-cuu")
    page.wait_for_selector("body[data-ready='true']")
    assert page.locator("h1").inner_text() == "Tra cứu tình trạng hồ sơ"
    page.watch.allow("/public/dossiers/HS2026-ZZZZZZZZ")
    page.fill("#dossier-code", "HS2026-ZZZZZZZZ")
    page.click("#status-form button[type=submit]")
    expect(page.locator("#status-message")).to_have_text("Không tìm thấy hồ sơ có mã HS2026-ZZZZZZZZ.")
    page.fill("#dossier-code", code)
    page.click("#status-form button[type=submit]")
    page.wait_for_selector("#status-result:not([hidden])")
    assert page.locator("#status-code").inner_text() == code
    assert page.locator("#status-state").inner_text() == "Đã nộp"
    assert page.locator("#status-timeline li").count() >= 1
    body = page.locator("body").inner_text()
    for private in ("Nguyễn Văn Bình", "0909 123 456", name):
        assert private not in body
    screenshot(page, "08-public-status")
    page.click("#lang-switch")
    assert page.locator("#status-state").inner_text() == "Submitted"


def test_planner_sees_the_flood_panel(page, demo, make_user):
    name, _ = _user(make_user, "planner")
    api_login(page, name)
    page.goto("/")
    wait_map_idle(page)
    assert page.locator("#user-role").inner_text() == "Cán bộ quy hoạch"
    assert page.locator("[data-tab=search]").is_hidden()
    page.click("[data-tab=flood]")
    form = page.locator("#flood-form")
    assert form.is_visible()
    assert "Chu kỳ lặp mưa" in form.inner_text()
    message = page.locator("#flood-message").inner_text()
    start = page.locator("#flood-start")
    # without a flood API on the server the panel says so and cannot start a run
    assert ("chưa sẵn sàng" in message and start.is_disabled()) or (message == "" and start.is_enabled())
    screenshot(page, "09-flood-panel")
