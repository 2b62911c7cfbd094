"""OGC API - Features Parts 1-3 over the Flask test client."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import text

from gisserver.api.features import CONFORMANCE
from gisserver.crs import CITY_SRID, transformer
from tests.conftest import auth
from tests.features.conftest import X0, Y0


def rel(doc, name, media_type=None):
    return [lk for lk in doc["links"] if lk["rel"] == name and (media_type is None or lk["type"] == media_type)]


def path_of(href):
    parts = urlsplit(href)
    return parts.path + ("?" + parts.query if parts.query else "")


def ids(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [f["id"] for f in resp.json["features"]]


def test_landing_page_links(client):
    resp = client.get("/ogc")
    assert resp.status_code == 200 and resp.content_type == "application/json"
    doc = resp.json
    assert rel(doc, "service-desc")[0]["type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert path_of(rel(doc, "service-desc")[0]["href"]) == "/openapi"
    assert path_of(rel(doc, "conformance")[0]["href"]) == "/ogc/conformance"
    assert path_of(rel(doc, "data")[0]["href"]) == "/ogc/collections"
    assert rel(doc, "self", "application/json") and rel(doc, "alternate", "text/html")


def test_conformance_classes_listed_exactly(client):
    assert client.get("/ogc/conformance").json == {"conformsTo": CONFORMANCE}
    assert set(CONFORMANCE) == {
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
        "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
        "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
        "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
        "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
        "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
        "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
        "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
        "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
        "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
        "http://www.opengis.net/spec/cql2/1.0/conf/property-property",
        "http://www.opengis.net/spec/cql2/1.0/conf/arithmetic",
    }


def test_collections_follow_access_levels(client, sample, make_user):
    anonymous = {c["id"] for c in client.get("/ogc/collections").json["collections"]}
    assert "parcels" in anonymous and "roads" in anonymous
    assert not {"power_lines", "drainage", "telecom", "underground_works"} & anonymous
    for path in ("/ogc/collections/power_lines", "/ogc/collections/power_lines/items",
                 "/ogc/collections/power_lines/items/1", "/ogc/collections/power_lines/queryables",
                 "/ogc/collections/telecom/items"):
        resp = client.get(path)
        assert resp.status_code == 404 and resp.content_type == "application/problem+json", path
    _, officer = make_user("officer")
    seen = {c["id"] for c in client.get("/ogc/collections", headers=auth(officer)).json["collections"]}
    assert "power_lines" in seen and "telecom" not in seen  # restricted: admins and the owner agency
    assert ids(client.get("/ogc/collections/power_lines/items", headers=auth(officer))) == [1]
    assert client.get("/ogc/collections/telecom/items", headers=auth(officer)).status_code == 404
    _, admin = make_user("admin")
    assert client.get("/ogc/collections/telecom/items", headers=auth(admin)).status_code == 200


def test_collection_document(client, sample):
    doc = client.get("/ogc/collections/parcels").json
    assert doc["id"] == "parcels" and doc["itemType"] == "feature"
    assert doc["storageCrs"] == "http://www.opengis.net/def/crs/EPSG/0/9210"
    for uri in ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", "http://www.opengis.net/def/crs/EPSG/0/4326",
                "http://www.opengis.net/def/crs/EPSG/0/3857", "http://www.opengis.net/def/crs/EPSG/0/9210",
                "http://www.opengis.net/def/crs/EPSG/0/3405"):
        assert uri in doc["crs"]
    minx, miny, maxx, maxy = doc["extent"]["spatial"]["bbox"][0]
    assert 106.69 < minx < maxx < 106.70 and 10.76 < miny < maxy < 10.78
    assert rel(doc, "items", "application/geo+json") and rel(doc, "items", "text/html")
    q = rel(doc, "http://www.opengis.net/def/rel/ogc/1.0/queryables")[0]
    resp = client.get(path_of(q["href"]))
    assert resp.content_type == "application/schema+json"
    props = resp.json["properties"]
    assert props["land_use"]["type"] == "string" and props["area"]["type"] == "number"
    assert props["begin_lifespan"]["format"] == "date-time" and "geometry" in props
    assert client.get("/ogc/collections/nothing_here").status_code == 404


def test_items_pagination_links(client, sample):
    resp = client.get("/ogc/collections/parcels/items?limit=2")
    assert resp.content_type == "application/geo+json"
    body = resp.json
    assert body["numberMatched"] == 5 and body["numberReturned"] == 2 and ids(resp) == [1, 2]
    assert not rel(body, "prev") and rel(body, "collection")
    nxt = path_of(rel(body, "next")[0]["href"])
    page2 = client.get(nxt)
    assert ids(page2) == [3, 4]
    page3 = client.get(path_of(rel(page2.json, "next")[0]["href"]))
    assert ids(page3) == [5] and not rel(page3.json, "next")
    back = client.get(path_of(rel(page3.json, "prev")[0]["href"]))
    assert ids(back) == [3, 4]
    for bad in ("limit=0", "limit=abc", "limit=-3", "offset=-1", "offset=x"):
        r = client.get(f"/ogc/collections/parcels/items?{bad}")
        assert r.status_code == 400 and r.content_type == "application/problem+json", bad
    # above the maximum the page is reduced, not refused
    assert client.get("/ogc/collections/parcels/items?limit=999999").status_code == 200


def test_items_bbox_in_several_crs(client, sample):
    to_lonlat = transformer(CITY_SRID, 4326)
    lo = to_lonlat.transform(X0 - 1, Y0 - 1)
    hi = to_lonlat.transform(X0 + 25, Y0 + 5)
    assert ids(client.get(f"/ogc/collections/parcels/items?bbox={lo[0]},{lo[1]},{hi[0]},{hi[1]}")) == [1, 2]
    city = f"{X0 + 41},{Y0 + 1},{X0 + 45},{Y0 + 30}"
    assert ids(client.get(f"/ogc/collections/parcels/items?bbox={city}&bbox-crs=EPSG:9210")) == [3]
    uri = "http://www.opengis.net/def/crs/EPSG/0/4326"  # latitude first
    resp = client.get(f"/ogc/collections/parcels/items?bbox={lo[1]},{lo[0]},{hi[1]},{hi[0]}&bbox-crs={uri}")
    assert ids(resp) == [1, 2]
    for bad in ("bbox=1,2,3", "bbox=a,b,c,d", "bbox=10,20,5,30&bbox-crs=EPSG:9210", "bbox=0,100,1,101",
                "bbox=1,2,3,4&bbox-crs=EPSG:999999", "bbox=1,2,3,4&bbox-crs=EPSG:2000"):
        r = client.get(f"/ogc/collections/parcels/items?{bad}")
        assert r.status_code == 400 and r.content_type == "application/problem+json", bad


def test_items_output_crs(client, sample):
    resp = client.get("/ogc/collections/parcels/items/2?crs=http://www.opengis.net/def/crs/EPSG/0/9210")
    assert resp.headers["Content-Crs"] == "<http://www.opengis.net/def/crs/EPSG/0/9210>"
    assert [X0 + 20, Y0] in resp.json["geometry"]["coordinates"][0][0]
    resp = client.get("/ogc/collections/parcels/items?limit=1")
    assert resp.headers["Content-Crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    lon, lat = transformer(CITY_SRID, 4326).transform(X0, Y0)
    ring = resp.json["features"][0]["geometry"]["coordinates"][0][0]
    assert min(abs(x - lon) + abs(y - lat) for x, y in ring) < 1e-7
    assert client.get("/ogc/collections/parcels/items?crs=EPSG:999999").status_code == 400
    assert client.get("/ogc/collections/parcels/items?crs=EPSG:2000").status_code == 400  # not offered


def test_item_by_id(client, sample):
    resp = client.get("/ogc/collections/parcels/items/6")  # retired versions stay addressable
    assert resp.status_code == 200 and resp.json["properties"]["status"] == "retired"
    assert rel(resp.json, "self") and rel(resp.json, "collection")
    assert client.get("/ogc/collections/parcels/items/12345").status_code == 404
    assert client.get("/ogc/collections/parcels/items/abc").status_code == 404


def test_items_datetime_on_the_versioned_register(client, sample):
    assert ids(client.get("/ogc/collections/parcels/items?datetime=2022-06-01T00:00:00Z")) == [6]
    assert 6 not in ids(client.get("/ogc/collections/parcels/items"))
    assert ids(client.get("/ogc/collections/parcels/items?datetime=../2019-01-01T00:00:00Z")) == []
    assert client.get("/ogc/collections/parcels/items?datetime=yesterday").status_code == 400


def test_query_parameters_on_queryables(client, sample):
    assert ids(client.get("/ogc/collections/parcels/items?land_use=ODT")) == [1, 3]
    assert ids(client.get("/ogc/collections/parcels/items?sheet_no=6")) == [4, 5]
    assert client.get("/ogc/collections/parcels/items?sheet_no=six").status_code == 400
    resp = client.get("/ogc/collections/parcels/items?colour=red")
    assert resp.status_code == 400 and "colour" in resp.json["detail"]


def test_html_output_renders_vietnamese(client, sample):
    resp = client.get("/ogc/collections/parcels/items?f=html")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/html; charset=utf-8"
    page = resp.get_data(as_text=True)
    assert "Thửa đất" in page and "Số 1 Lê Lợi, Phường Bến Thành" in page and "Nguyễn Văn An" not in page
    by_accept = client.get("/ogc/collections/parcels/items/1", headers={"Accept": "text/html"})
    assert by_accept.content_type.startswith("text/html") and "Lê Lợi" in by_accept.get_data(as_text=True)
    for path in ("/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/parcels",
                 "/ogc/collections/parcels/queryables", "/api"):
        r = client.get(path + ("?f=html" if path != "/api" else ""))
        assert r.status_code == 200 and r.content_type.startswith("text/html"), path
    assert "Lớp dữ liệu" in client.get("/ogc/collections?f=html").get_data(as_text=True)
    assert client.get("/ogc/collections?f=xml").status_code == 400


def test_filters_never_reach_sql_as_text(client, sample, db_engine):
    base = "/ogc/collections/parcels/items?filter="
    assert ids(client.get(base + "address = '1=1; DROP TABLE parcel'")) == []
    as_json = '{"op": "=", "args": [{"property": "address"}, "x\' OR \'1\'=\'1"]}'
    assert ids(client.get(base + as_json + "&filter-lang=cql2-json")) == []
    # the land user's name is not a queryable for anonymous callers (personal data)
    assert client.get(base + "owner_name IS NOT NULL").status_code == 400
    for bad in ("address = 'x'' OR ''1''=''1'",
                "1=1; DROP TABLE parcel", "land_use = 'ODT'; DROP TABLE parcel", "\"parcel; drop\" = 1",
                "pg_sleep(5) = 1", "land_use = 'ODT' OR colour = 'red'", "area > 'big'"):
        resp = client.get(base + bad)
        assert resp.status_code == 400 and resp.content_type == "application/problem+json", bad
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM parcel")).scalar() == 6
        assert conn.execute(text("SELECT to_regclass('public.layer')")).scalar() is not None


def test_items_filter_text_and_json(client, sample):
    base = "/ogc/collections/parcels/items"
    assert ids(client.get(base + "?filter=land_use = 'ODT' AND sheet_no = 5")) == [1, 3]
    resp = client.get(base, query_string={
        "filter": '{"op": "in", "args": [{"property": "land_use"}, ["TMD", "CLN"]]}',
        "filter-lang": "cql2-json"})
    assert ids(resp) == [2, 4]
    lon, lat = transformer(CITY_SRID, 4326).transform(X0 + 30, Y0 + 10)
    assert ids(client.get(base, query_string={"filter": f"S_INTERSECTS(geometry, POINT({lon} {lat}))"})) == [2]
    resp = client.get(base, query_string={"filter": f"S_INTERSECTS(geom, POINT({X0 + 10} {Y0 + 30}))",
                                          "filter-crs": "EPSG:9210"})
    assert ids(resp) == [4]
    assert client.get(base + "?filter=land_use = 'ODT'&filter-lang=sql").status_code == 400
