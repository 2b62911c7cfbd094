"""Independent clients over real HTTP: OWSLib, GDAL's OAPIF driver (pyogrio), an OpenAPI validator."""

from __future__ import annotations

import pyogrio
import requests
from openapi_spec_validator import validate

from tests.features.conftest import X0, Y0


def test_openapi_document_is_valid_and_generated_from_routes(app, client):
    resp = client.get("/openapi")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/vnd.oai.openapi+json;version=3.0"
    doc = resp.json
    validate(doc)
    registered = {rule.rule for rule in app.url_map.iter_rules()}
    assert "/ogc/collections/<collectionId>/items" in registered
    for path in ("/ogc", "/ogc/conformance", "/ogc/collections", "/ogc/collections/{collectionId}",
                 "/ogc/collections/{collectionId}/items", "/ogc/collections/{collectionId}/items/{featureId}",
                 "/ogc/collections/{collectionId}/queryables", "/api/identify", "/api/parcels/lookup",
                 "/api/layers/{name}/nearest", "/api/layers/{name}/within", "/api/layers/{name}/intersects",
                 "/openapi", "/health"):
        assert path in doc["paths"], path
    items = doc["paths"]["/ogc/collections/{collectionId}/items"]["get"]
    names = {p.get("name") or p["$ref"].rsplit("/", 1)[1] for p in items["parameters"]}
    assert {"bbox", "bbox-crs", "crs", "limit", "offset", "filter", "filter-lang", "datetime"} <= names
    assert "requestBody" in doc["paths"]["/api/layers/{name}/intersects"]["post"]


def test_owslib_lists_collections_and_reads_items(live_server, sample):
    from owslib.ogcapi.features import Features

    api = Features(live_server + "/ogc")
    conformance = api.conformance()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conformance
    ids = [c["id"] for c in api.collections()["collections"]]
    assert "parcels" in ids and "power_lines" not in ids
    assert api.collection("parcels")["title"] == "Cadastral parcels"
    items = api.collection_items("parcels", limit=10)
    assert items["numberMatched"] == 5
    assert {f["properties"]["address"] for f in items["features"]} >= {"Số 1 Lê Lợi, Phường Bến Thành"}
    queryables = api.collection_queryables("parcels")
    assert "land_use" in queryables["properties"]
    one = api.collection_item("parcels", "2")
    assert one["properties"]["owner_name"] == "Trần Thị Bình"


def test_gdal_oapif_reads_features(live_server, sample):
    layers = {name for name, _ in pyogrio.list_layers("OAPIF:" + live_server + "/ogc")}
    assert "parcels" in layers and "power_lines" not in layers
    frame = pyogrio.read_dataframe("OAPIF:" + live_server + "/ogc", layer="parcels")
    assert len(frame) == 5
    assert set(frame["land_use"]) == {"ODT", "TMD", "CLN", "DGT"}
    assert "Nguyễn Văn An" in set(frame["owner_name"])
    assert frame.crs is not None and frame.crs.to_epsg() in (4326, None)
    minx, miny, maxx, maxy = frame.total_bounds
    assert 106.69 < minx < maxx < 106.70 and 10.76 < miny < maxy < 10.78


def test_live_problem_json_and_identify(live_server, sample):
    resp = requests.get(live_server + "/ogc/collections/parcels/items", params={"bbox": "1,2"}, timeout=10)
    assert resp.status_code == 400 and resp.headers["Content-Type"] == "application/problem+json"
    resp = requests.get(live_server + "/api/identify", params={"x": X0 + 1, "y": Y0 + 1}, timeout=10)
    assert [f["id"] for f in resp.json()["features"]] == [1]
