"""Vector tiles (hits and misses) and WMS GetMap answered by the lean WSGI path (gisserver.fastpath)
are exactly what the Flask view answers; errors, cookies and area-limited callers go to Flask."""

from __future__ import annotations

from gisserver.fastpath import FastPath
from layers.catalogue import bump_version
from tests.conftest import auth
from tests.tiles.test_mvt import ben_thanh_tile

COMPARED = ("Content-Type", "ETag", "Cache-Control", "X-Tile-Cache", "Access-Control-Allow-Origin", "Vary",
            "Content-Length")


def _hit_path(app) -> FastPath:
    assert isinstance(app.wsgi_app, FastPath)
    return app.wsgi_app


def test_hits_are_answered_before_flask_with_the_same_headers(client, app, ben_thanh):
    t = ben_thanh_tile()
    url = f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt"
    hit_path = _hit_path(app)
    answered = hit_path.answered
    miss = client.get(url)  # a miss: built by the lean path too
    assert miss.headers["X-Tile-Cache"] == "miss" and hit_path.answered == answered + 1
    answered += 1
    fast = client.get(url)
    assert hit_path.answered == answered + 1
    # the same request through Flask (a cookie sends it there): same bytes, same headers
    client.set_cookie("unrelated", "1")
    try:
        slow = client.get(url)
    finally:
        client.delete_cookie("unrelated")
    assert hit_path.answered == answered + 1
    assert fast.status_code == slow.status_code == 200 and fast.data == slow.data == miss.data
    assert {k: fast.headers.get(k) for k in COMPARED} == {k: slow.headers.get(k) for k in COMPARED}
    assert fast.headers["X-Tile-Cache"] == "hit" and fast.headers["Access-Control-Allow-Origin"] == "*"

    etag = fast.headers["ETag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        not_modified = client.get(url, headers={"If-None-Match": header})
        assert not_modified.status_code == 304 and not_modified.data == b"", header
        assert not_modified.headers["ETag"] == etag
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert hit_path.answered == answered + 6


def test_errors_go_to_flask(client, app, ben_thanh, make_user):
    t = ben_thanh_tile()
    url = f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt"
    client.get(url)
    hit_path = _hit_path(app)
    answered = hit_path.answered
    with ben_thanh.begin() as conn:
        bump_version(conn, "parcels")  # the cached tile is outdated: rebuilt
    assert client.get(url).headers["X-Tile-Cache"] == "miss"
    _, admin = make_user("admin")
    t_url = f"/tiles/telecom/{t.z}/{t.x}/{t.y}.mvt"
    restricted = client.get(t_url, headers=auth(admin))  # a miss of a restricted layer, signed in
    assert restricted.status_code == 200 and restricted.headers["X-Tile-Cache"] == "miss"
    assert hit_path.answered == answered + 2
    answered += 2
    for path, status in (("/tiles/parcels/23/0/0.mvt", 400), ("/tiles/parcels/2/4/0.mvt", 400),
                         ("/tiles/nosuch/17/0/0.mvt", 404), (f"/tiles/telecom/{t.z}/{t.x}/{t.y}.mvt", 404),
                         ("/tiles/parcels/a/0/0.mvt", 400)):
        resp = client.get(path)
        assert resp.status_code == status and resp.content_type == "application/problem+json", path
    assert hit_path.answered == answered
    assert client.get(url).headers["X-Tile-Cache"] == "hit" and hit_path.answered == answered + 1
    # a signed-in caller's hit of a restricted layer: private headers, from the lean path too
    again = client.get(t_url, headers=auth(admin))
    assert again.data == restricted.data and again.headers["X-Tile-Cache"] == "hit"
    assert again.headers["Cache-Control"].startswith("private") and again.headers["Vary"] == "Authorization, Cookie"
    assert hit_path.answered == answered + 2
    assert client.get(t_url).status_code == 404  # ... and still nothing for anonymous callers


def test_wms_getmap_from_the_lean_path_equals_flask(client, app, ben_thanh):
    from tests.tiles.test_wms import box_in

    b = box_in(3857)
    url = ("/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS=parcels,roads&STYLES=outline,&CRS=EPSG:3857"
           f"&BBOX={b[0]},{b[1]},{b[2]},{b[3]}&WIDTH=256&HEIGHT=256&FORMAT=image/png&TRANSPARENT=TRUE")
    hit_path = _hit_path(app)
    answered = hit_path.answered
    fast = client.get(url)
    assert hit_path.answered == answered + 1
    client.set_cookie("unrelated", "1")
    try:
        slow = client.get(url)
    finally:
        client.delete_cookie("unrelated")
    assert hit_path.answered == answered + 1
    assert fast.status_code == slow.status_code == 200 and fast.data == slow.data
    assert fast.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert dict(fast.headers) == dict(slow.headers)
    # errors and other requests are Flask's: the same ServiceExceptionReport as always
    bad = client.get(url.replace("LAYERS=parcels,roads", "LAYERS=nosuch").replace("STYLES=outline,", "STYLES="))
    assert bad.status_code == 400 and b"LayerNotDefined" in bad.data
    caps = client.get("/wms?SERVICE=WMS&REQUEST=GetCapabilities")
    assert caps.status_code == 200 and b"WMS_Capabilities" in caps.data
    assert hit_path.answered == answered + 1
