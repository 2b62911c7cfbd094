"""HTTP upload (auth, size limit, corrupt/unsupported files, report) and the CLI."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from tests.conftest import auth
from tests.layers.conftest import PARCEL_MAP, parcel_frame


@pytest.fixture
def gpkg_bytes(tmp_path):
    path = tmp_path / "thua.gpkg"
    parcel_frame(6, bowtie_at=4).to_file(path, driver="GPKG")
    return path.read_bytes()


@pytest.fixture
def officer_client(client, make_user):
    """A client logged in as an officer by session (one argon2 check, not one per request)."""
    make_user("officer", username="can.bo.dia.chinh")
    login = client.post("/auth/login", json={"username": "can.bo.dia.chinh", "password": "s3cret-pass"})
    assert login.status_code == 200
    yield client
    client.post("/auth/logout")


def _post(client, name, content, filename="thua.gpkg", token=None, **fields):
    data = {"file": (io.BytesIO(content), filename), **fields}
    headers = auth(token) if token else {}
    return client.post(f"/layers/{name}/upload", data=data, headers=headers, content_type="multipart/form-data")


def test_officer_uploads_parcels_and_gets_the_report(client, catalogue, make_user, gpkg_bytes):
    _, token = make_user("officer")
    resp = _post(client, "parcels", gpkg_bytes, token=token, mapping=json.dumps(PARCEL_MAP))
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert (body["read"], body["loaded"], body["repaired"], body["rejected"]) == (6, 6, 1, 0)
    assert body["issues"][0]["fid"] == 5 and body["issues"][0]["action"] == "repaired"
    with catalogue.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM parcel")).scalar() == 6
        actor = conn.execute(text("SELECT actor FROM audit_log WHERE action = 'layer.load'")).scalar()
    assert actor.startswith("officer_")


def test_upload_new_generic_layer_with_map_fields(client, catalogue, make_user, gpkg_bytes):
    _, token = make_user("admin")
    resp = _post(client, "thua_dat_cu", gpkg_bytes, token=token, map="DiaChi=dia_chi", policy="reject-feature",
                 title="Thửa đất cũ", access_level="public")
    assert resp.status_code == 201, resp.json
    assert resp.json["kind"] == "generic" and resp.json["loaded"] == 5 and resp.json["rejected"] == 1
    with catalogue.connect() as conn:
        row = conn.execute(text("SELECT dia_chi FROM layerdata.thua_dat_cu ORDER BY id LIMIT 1")).scalar()
    assert row == "Phường Bến Thành"


def test_upload_needs_officer_or_admin(client, catalogue, make_user, gpkg_bytes):
    assert _post(client, "parcels", gpkg_bytes).status_code == 401
    for role in ("public", "planner"):
        _, token = make_user(role)
        resp = _post(client, "parcels", gpkg_bytes, token=token)
        assert resp.status_code == 403 and resp.content_type == "application/problem+json"


def test_restricted_layer_hidden_from_officer_of_another_agency(client, catalogue, make_user, gpkg_bytes):
    _, token = make_user("officer")
    resp = _post(client, "telecom", gpkg_bytes, token=token)
    assert resp.status_code == 404


def test_oversized_upload_is_413(client, catalogue, make_user):
    _, token = make_user("officer")
    # a raw body: werkzeug's test client leaks the temporary file it spools big multipart bodies to
    body = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.gpkg\"\r\n\r\n" + b"\0" * (9 << 20)
    resp = client.post("/layers/parcels/upload", data=body, headers=auth(token),
                       content_type="multipart/form-data; boundary=x")  # the test app allows 8 MiB
    assert resp.status_code == 413
    assert resp.content_type == "application/problem+json" and resp.json["code"] == "payload-too-large"


def test_corrupt_and_unsupported_files(catalogue, officer_client, gpkg_bytes):
    client, token = officer_client, None
    corrupt = _post(client, "parcels", gpkg_bytes[:3000], token=token, mapping=json.dumps(PARCEL_MAP))
    assert corrupt.status_code == 400 and corrupt.json["code"] == "invalid-file"
    bad_zip = _post(client, "parcels", b"PK\x03\x04garbage", filename="thua.zip", token=token)
    assert bad_zip.status_code == 400 and bad_zip.json["code"] == "invalid-file"
    unsupported = _post(client, "parcels", b"%PDF-1.7 ...", filename="thua.pdf", token=token)
    assert unsupported.status_code == 415 and unsupported.json["code"] == "unsupported-format"


def test_bad_upload_parameters_are_400(catalogue, officer_client, gpkg_bytes):
    client, token = officer_client, None
    cases = [
        {"mapping": "{not json"},
        {"map": "DiaChi"},
        {"mode": "merge"},
        {"crs": "EPSG:4326; DROP TABLE parcel"},
        {"mapping": json.dumps(PARCEL_MAP), "crs": "EPSG:3405"},
    ]
    for fields in cases:
        resp = _post(client, "parcels", gpkg_bytes, token=token, **fields)
        assert resp.status_code == 400, (fields, resp.json)
        assert resp.content_type == "application/problem+json"
    no_file = client.post("/layers/parcels/upload", data={"x": "1"}, content_type="multipart/form-data")
    assert no_file.status_code == 400
    bad_name = _post(client, "Bad-Name", gpkg_bytes, token=token)
    assert bad_name.status_code == 400


def test_cli_load_and_list(catalogue, database_url, tmp_path):
    from gisserver.cli import main

    path = tmp_path / "thua.gpkg"
    parcel_frame(6, bowtie_at=1).to_file(path, driver="GPKG")
    report_file = tmp_path / "report.json"
    runner = CliRunner()
    env = {"DATABASE_URL": database_url}
    args = ["layers", "load", str(path), "--layer", "parcels", "--report", str(report_file)]
    for src, dst in PARCEL_MAP.items():
        args += ["--map", f"{src}={dst}"]
    result = runner.invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "loaded 6, repaired 1, rejected 0" in result.output
    assert json.loads(report_file.read_text(encoding="utf-8"))["issues"][0]["fid"] == 2
    listing = runner.invoke(main, ["layers", "list"], env=env)
    assert listing.exit_code == 0 and "parcels" in listing.output


def test_cli_bad_input_exits_2_with_a_message(catalogue, database_url, tmp_path):
    from gisserver.cli import main

    path = tmp_path / "nocrs.csv"
    path.write_text("WKT,ten\n\"POINT (1 2)\",Bến Thành\n", encoding="utf-8")
    runner = CliRunner()
    env = {"DATABASE_URL": database_url}
    result = runner.invoke(main, ["layers", "load", str(path), "--layer", "diem", "--quiet"], env=env)
    assert result.exit_code == 2 and "no coordinate reference system" in result.output
    result = runner.invoke(main, ["layers", "load", str(path), "--layer", "diem", "--map", "oops"], env=env)
    assert result.exit_code == 2
    result = runner.invoke(main, ["layers", "load", str(tmp_path / "missing.gpkg"), "--layer", "x"], env=env)
    assert result.exit_code == 2
    inspect = runner.invoke(main, ["layers", "inspect", str(path)], env=env)
    assert inspect.exit_code == 0 and json.loads(inspect.output)["driver"] == "CSV"


def test_upload_over_real_http_is_streamed_to_upload_dir_and_cleaned(app, live_server, catalogue, make_user,
                                                                    gpkg_bytes):
    import requests

    _, token = make_user("officer")
    upload_dir = app.extensions["gisserver"].settings.upload_dir
    resp = requests.post(
        f"{live_server}/layers/parcels/upload", headers=auth(token), timeout=60,
        files={"file": ("thửa đất.gpkg", gpkg_bytes, "application/geopackage+sqlite3")},
        data={"mapping": json.dumps(PARCEL_MAP), "policy": "reject-feature"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["loaded"] == 5 and resp.json()["source"]["file"] == "thửa đất.gpkg"
    assert upload_dir.is_dir() and list(upload_dir.iterdir()) == []


def test_upload_is_in_the_openapi_document(client):
    from openapi_spec_validator import validate

    doc = client.get("/openapi").json
    validate(doc)
    op = doc["paths"]["/layers/{name}/upload"]["post"]
    assert "file" in op["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"401", "403", "413", "415"} <= set(op["responses"])
