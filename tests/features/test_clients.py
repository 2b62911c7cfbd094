"""Independent clients over real HTTP: OWSLib, GDAL's OAPIF driver (pyogrio), an OpenAPI validator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
    assert one["id"] == 2 and "owner_name" not in one["properties"]  # personal data: staff only


GDAL_READER = """
import json, sys
import pyogrio
url = "OAPIF:" + sys.argv[1] + "/ogc"
layers = [name for name, _ in pyogrio.list_layers(url)]
frame = pyogrio.read_dataframe(url, layer="parcels")
print(json.dumps({
    "layers": layers, "count": len(frame), "land_use": sorted(set(frame["land_use"])),
    "columns": sorted(frame.columns),
    "epsg": frame.crs.to_epsg() if frame.crs else None,
    "bounds": [float(v) for v in frame.total_bounds],
}, ensure_ascii=False))
"""


def test_gdal_oapif_reads_features(live_server, sample):
    # GDAL runs in its own process: pyogrio holds the GIL while GDAL fetches, which would starve the
    # in-process test server
    out = subprocess.run([sys.executable, "-c", GDAL_READER, live_server], capture_output=True, text=True,
                         timeout=120, check=False, env={**os.environ, "GDAL_HTTP_TIMEOUT": "30"})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert "parcels" in result["layers"] and "power_lines" not in result["layers"]
    assert result["count"] == 5
    assert result["land_use"] == ["CLN", "DGT", "ODT", "TMD"]
    assert "address" in result["columns"] and "owner_name" not in result["columns"]
    # GDAL asks for the storage CRS (EPSG:9210): the coordinates are the stored ones
    assert result["epsg"] == 9210
    minx, miny, maxx, maxy = result["bounds"]
    assert (minx, miny) == (X0, Y0) and (maxx, maxy) == (X0 + 220, Y0 + 220)


def test_live_problem_json_and_identify(live_server, sample):
    resp = requests.get(live_server + "/ogc/collections/parcels/items", params={"bbox": "1,2"}, timeout=10)
    assert resp.status_code == 400 and resp.headers["Content-Type"] == "application/problem+json"
    resp = requests.get(live_server + "/api/identify", params={"x": X0 + 1, "y": Y0 + 1}, timeout=10)
    assert [f["id"] for f in resp.json()["features"]] == [1]
