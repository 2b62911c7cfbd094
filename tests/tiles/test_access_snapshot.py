"""Area-limited grants apply to every map service; the per-worker catalogue snapshot."""

from __future__ import annotations

import mapbox_vector_tile
import pytest
from shapely.geometry import LineString, MultiLineString, box, mapping

from gisserver import schema
from gisserver.security import Principal
from layers.catalogue import bump_version
from tests.conftest import auth
from tests.tiles.conftest import BEN_THANH, city_geom, lonlat
from tests.tiles.test_mvt import ben_thanh_tile

E0, N0 = BEN_THANH


@pytest.fixture
def shared_telecom(ben_thanh, make_user):
    """Telecom (restricted) owned by agency A; agency B may read it only around the first line."""
    from layers.sharing import create_agency, grant

    with ben_thanh.begin() as conn:
        owner = create_agency(conn, "VNPT", "VNPT HCMC", actor="test")
        district = create_agency(conn, "Q1", "District 1", kind="district", actor="test")
        conn.execute(schema.layer.update().where(schema.layer.c.name == "telecom").values(owner_agency_id=owner))
        conn.execute(schema.telecom.insert().values(
            kind="duct", operator="Viettel",
            geom=city_geom(MultiLineString([LineString([(E0, N0 + 150), (E0 + 150, N0 + 150)])]))))
        bump_version(conn, "telecom")
        w, s = lonlat(E0 - 10, N0 + 40)
        e, n = lonlat(E0 + 160, N0 + 60)
        grant(conn, "telecom", district, "read", Principal(1, "admin", "admin"),
              area_geojson=mapping(box(w, s, e, n)), area_srid=4326)
    _, district_officer = make_user("officer", agency_id=district)
    _, admin = make_user("admin")
    return district_officer, admin


def test_area_limited_grant_filters_vector_tiles_and_wms(client, shared_telecom):
    officer, admin = shared_telecom
    t = ben_thanh_tile()
    url = f"/tiles/telecom/{t.z}/{t.x}/{t.y}.mvt"
    full = mapbox_vector_tile.decode(client.get(url, headers=auth(admin)).data)["telecom"]["features"]
    limited_resp = client.get(url, headers=auth(officer))
    limited = mapbox_vector_tile.decode(limited_resp.data)["telecom"]["features"]
    assert len(full) == 2 and len(limited) == 1 and limited[0]["properties"]["operator"] == "VNPT"
    assert limited_resp.headers["X-Tile-Cache"] == "miss"
    assert limited_resp.headers["Cache-Control"].startswith("private")
    # the admin's cached tile is not what the officer gets, and vice versa
    assert len(mapbox_vector_tile.decode(client.get(url, headers=auth(admin)).data)["telecom"]["features"]) == 2

    from tests.tiles.test_wms import box_in, pixel

    b = box_in(3857)
    params = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetFeatureInfo", "LAYERS": "telecom",
              "QUERY_LAYERS": "telecom", "STYLES": "", "CRS": "EPSG:3857", "BBOX": ",".join(map(str, b)),
              "WIDTH": 256, "HEIGHT": 256, "INFO_FORMAT": "application/json", "FEATURE_COUNT": 5}
    i, j = pixel((E0 + 75, N0 + 150), 3857)
    assert client.get("/wms", query_string={**params, "I": i, "J": j}, headers=auth(admin)).json["features"]
    assert not client.get("/wms", query_string={**params, "I": i, "J": j}, headers=auth(officer)).json["features"]
    i, j = pixel((E0 + 75, N0 + 50), 3857)
    assert client.get("/wms", query_string={**params, "I": i, "J": j}, headers=auth(officer)).json["features"]


def test_snapshot_serves_hits_without_the_database_and_refreshes(app, ben_thanh):
    from tiles.snapshot import CatalogueSnapshot

    engine = app.extensions["gisserver"].engine
    snap = CatalogueSnapshot(engine, ttl=3600)
    before = snap.layer("parcels", None)
    with ben_thanh.begin() as conn:
        bump_version(conn, "parcels")
    assert snap.layer("parcels", None).data_version == before.data_version  # within ttl: the copy
    snap.ttl = 0.0001
    import time

    time.sleep(0.01)
    assert snap.layer("parcels", None).data_version == before.data_version + 1
    from gisserver.errors import NotFound

    with pytest.raises(NotFound):
        snap.layer("telecom", Principal(None, "anonymous", "public"))
    with pytest.raises(NotFound):
        snap.layer("no_such_layer", None)
