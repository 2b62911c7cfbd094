"""Vector tiles: ST_AsMVT content, access, cache headers, per-tile invalidation, TileJSON, styles."""

from __future__ import annotations

import mapbox_vector_tile
import morecantile
from shapely.geometry import MultiPolygon, box

from gisserver import schema
from layers.catalogue import bump_version, get_layer
from tests.conftest import auth
from tests.tiles.conftest import BEN_THANH, city_geom, lonlat

Z = 17


def ben_thanh_tile(z: int = Z):
    lon, lat = lonlat(BEN_THANH[0] + 80, BEN_THANH[1] + 80)
    return morecantile.tms.get("WebMercatorQuad").tile(lon, lat, z)


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data)


def test_tile_has_the_features_and_chosen_attributes(client, ben_thanh):
    t = ben_thanh_tile()
    resp = client.get(f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt")
    assert resp.status_code == 200
    assert resp.mimetype == "application/vnd.mapbox-vector-tile"
    layer = decode(resp.data)["parcels"]
    assert len(layer["features"]) == 16
    props = layer["features"][0]["properties"]
    assert {"ward_code", "sheet_no", "parcel_no", "land_use"} <= set(props)
    assert "owner_name" not in props and "address" not in props
    assert all(f["geometry"]["type"] == "Polygon" for f in layer["features"])


def test_empty_tile_far_away_and_below_min_zoom(client, ben_thanh):
    assert client.get("/tiles/parcels/17/0/0.mvt").data == b""
    t = ben_thanh_tile(10)
    assert client.get(f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt").data == b""
    assert decode(client.get(f"/tiles/roads/{t.z}/{t.x}/{t.y}.mvt").data)["roads"]["features"]


def test_unreadable_layer_is_404_and_readable_for_admin(client, ben_thanh, make_user):
    t = ben_thanh_tile()
    resp = client.get(f"/tiles/telecom/{t.z}/{t.x}/{t.y}.mvt")
    assert resp.status_code == 404 and resp.content_type == "application/problem+json"
    _, officer = make_user("officer")
    assert client.get(f"/tiles/telecom/{t.z}/{t.x}/{t.y}.mvt", headers=auth(officer)).status_code == 404
    _, admin = make_user("admin")
    ok = client.get(f"/tiles/telecom/{t.z}/{t.x}/{t.y}.mvt", headers=auth(admin))
    assert ok.status_code == 200 and ok.headers["Cache-Control"].startswith("private")
    assert len(decode(ok.data)["telecom"]["features"]) == 1


def test_bad_tile_requests_are_problem_json(client, catalogue):
    for path, status in (("/tiles/parcels/23/0/0.mvt", 400), ("/tiles/parcels/2/4/0.mvt", 400),
                         ("/tiles/parcels/2/0/-1.mvt", 400), ("/tiles/parcels/a/0/0.mvt", 400),
                         ("/tiles/nosuch/1/0/0.mvt", 404)):
        resp = client.get(path)
        assert resp.status_code == status, path
        assert resp.content_type == "application/problem+json"


def test_etag_304_and_cache_hit(client, ben_thanh):
    t = ben_thanh_tile()
    url = f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt"
    first = client.get(url)
    assert first.headers["X-Tile-Cache"] == "miss"
    etag = first.headers["ETag"]
    assert "max-age" in first.headers["Cache-Control"] and first.headers["Cache-Control"].startswith("public")
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    second = client.get(url)
    assert second.headers["X-Tile-Cache"] == "hit" and second.data == first.data
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""


def test_edit_invalidates_only_affected_tiles(client, app, ben_thanh):
    """A recorded change area rebuilds the tiles it touches; other tiles stay cached."""
    from tests.tiles.conftest import insert_parcels

    near = ben_thanh_tile()
    e, n = BEN_THANH[0] + 2000, BEN_THANH[1] + 2000
    far = morecantile.tms.get("WebMercatorQuad").tile(*lonlat(e + 20, n + 20), Z)
    with ben_thanh.begin() as conn:
        insert_parcels(conn, n=1, origin=(e, n), ward_code="26735")
        bump_version(conn, "parcels")
    urls = {k: f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt" for k, t in (("near", near), ("far", far))}
    before = {k: client.get(u) for k, u in urls.items()}
    assert len(decode(before["far"].data)["parcels"]["features"]) == 1

    # an edit next to the far parcel, and where it happened
    with ben_thanh.begin() as conn:
        conn.execute(schema.parcel.insert().values(
            ward_code="26735", sheet_no=1, parcel_no=2,
            geom=city_geom(MultiPolygon([box(e + 45, n, e + 60, n + 15)]))))
        version = bump_version(conn, "parcels")
    from tiles.cache import record_layer_change

    with ben_thanh.connect() as conn:
        info = get_layer(conn, "parcels")
    record_layer_change(app.extensions["gisserver"].settings.var_dir, info, version,
                        (*lonlat(e + 40, n - 5), *lonlat(e + 65, n + 20)))

    after_near = client.get(urls["near"], headers={"If-None-Match": before["near"].headers["ETag"]})
    assert after_near.status_code == 304 and after_near.headers["X-Tile-Cache"] == "hit"
    after_far = client.get(urls["far"], headers={"If-None-Match": before["far"].headers["ETag"]})
    assert after_far.status_code == 200 and after_far.headers["X-Tile-Cache"] == "miss"
    assert len(decode(after_far.data)["parcels"]["features"]) == 2


def test_unrecorded_edit_rebuilds_but_keeps_etag_of_unchanged_tiles(client, ben_thanh):
    t = ben_thanh_tile()
    url = f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt"
    first = client.get(url)
    with ben_thanh.begin() as conn:
        bump_version(conn, "parcels")  # a version bump with no recorded change area
    second = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert second.headers["X-Tile-Cache"] == "miss" and second.status_code == 304


def test_tile_query_uses_the_index_and_never_transforms_the_column(ben_thanh):
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    from layers.catalogue import get_layer, layer_table
    from tiles.mvt import mvt_query

    t = ben_thanh_tile()
    with ben_thanh.connect() as conn:
        info = get_layer(conn, "parcels")
        stmt = mvt_query(info, layer_table(conn, info), t.z, t.x, t.y)
        sql = str(stmt.compile(dialect=postgresql.dialect()))
        assert "ST_Transform" not in sql and "geom_3857 &&" in sql
        conn.execute(text("SET enable_seqscan = off"))
        compiled = stmt.compile(dialect=conn.dialect)
        plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).scalars())
    assert "ix_parcel_geom_3857" in plan


def test_tilejson_and_maplibre_style(client, ben_thanh):
    tj = client.get("/tiles/parcels.json").json
    assert tj["tilejson"] == "3.0.0" and tj["tiles"][0].endswith("/tiles/parcels/{z}/{x}/{y}.mvt")
    assert tj["vector_layers"][0]["id"] == "parcels" and "land_use" in tj["vector_layers"][0]["fields"]
    lon, lat = lonlat(*BEN_THANH)
    assert tj["bounds"][0] <= lon <= tj["bounds"][2] and tj["bounds"][1] <= lat <= tj["bounds"][3]
    style = client.get("/styles/parcels.json").json
    assert style["version"] == 8 and style["sources"]["parcels"]["url"].endswith("/tiles/parcels.json")
    fill = next(lyr for lyr in style["layers"] if lyr["type"] == "fill")
    from tiles.styles import layer_style

    assert fill["paint"]["fill-color"] == layer_style("parcels", "MultiPolygon").fill
    assert client.get("/styles/telecom.json").status_code == 404
    assert client.get("/styles/parcels.json?style=nope").status_code == 400
