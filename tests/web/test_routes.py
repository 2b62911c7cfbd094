"""The webapp blueprint only serves the built front end: pages, assets, nothing else."""

from __future__ import annotations

import json
import re
import unicodedata

from gisserver.api.webapp import APP_DIR
from gisserver.config import PROJECT_ROOT


def fetch(client, path):
    """(response, body text) with the response closed (file responses hold the file open)."""
    resp = client.get(path)
    try:
        return resp, resp.get_data(as_text=True)
    finally:
        resp.close()


def test_pages_are_served_with_a_strict_content_security_policy(client):
    for path in ("/", "/tra-cuu"):
        resp, _ = fetch(client, path)
        assert resp.status_code == 200
        assert resp.mimetype == "text/html"
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp
        assert "http" not in csp  # no other origin: no CDN, no remote tiles or glyphs
    assert 'lang="vi"' in fetch(client, "/")[1]
    assert "Tra cứu tình trạng hồ sơ" in fetch(client, "/tra-cuu")[1]


def test_bundled_assets_are_served_and_carry_no_remote_urls(client):
    js, _ = fetch(client, "/app/app.js")
    assert js.status_code == 200 and js.mimetype in ("text/javascript", "application/javascript")
    css, text = fetch(client, "/app/app.css")
    assert css.status_code == 200 and ".maplibregl-map" in text
    assert fetch(client, "/app/public.js")[0].status_code == 200
    html = (APP_DIR / "index.html").read_text(encoding="utf-8") + (APP_DIR / "tra-cuu.html").read_text(encoding="utf-8")
    assert "https://" not in html and "http://" not in html


def test_asset_paths_cannot_leave_the_bundle(client):
    for path in ("/app/../api/webapp.py", "/app/%2e%2e/api/webapp.py", "/app/index.html", "/app/nope.js"):
        resp, _ = fetch(client, path)
        assert resp.status_code == 404, path
        assert resp.mimetype == "application/problem+json"


def test_pages_are_in_the_openapi_document(client):
    paths = client.get("/openapi").get_json()["paths"]
    assert {"/", "/tra-cuu", "/app/{filename}"} <= set(paths)


def test_vietnamese_and_english_catalogues_match():
    folder = PROJECT_ROOT / "web" / "src" / "i18n"
    vi = json.loads((folder / "vi.json").read_text(encoding="utf-8"))
    en = json.loads((folder / "en.json").read_text(encoding="utf-8"))
    assert set(vi) == set(en)
    for key in vi:
        assert vi[key].strip() and en[key].strip(), key
        # the same {placeholders} in both languages
        assert set(re.findall(r"\{(\w+)\}", vi[key])) == set(re.findall(r"\{(\w+)\}", en[key])), key
    # Vietnamese text is written with its diacritics (precomposed, as typed on a Vietnamese keyboard)
    assert all(unicodedata.is_normalized("NFC", v) for v in vi.values())
    assert vi["landuse.ODT"] == "Đất ở tại đô thị" and vi["tab.layers"] == "Lớp bản đồ"


def test_every_compliance_rule_has_a_vietnamese_title():
    checks = json.loads((PROJECT_ROOT / "licensing" / "data" / "checks.json").read_text(encoding="utf-8"))
    vi = json.loads((PROJECT_ROOT / "web" / "src" / "i18n" / "vi.json").read_text(encoding="utf-8"))
    assert [rule for rule in checks if f"check.{rule}" not in vi] == []
