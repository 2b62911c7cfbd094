"""Edits invalidate only the tiles they touch, in every worker; the catalogue follows edits
incrementally (bump_version with a LayerChange) and agrees with a full recount."""

from __future__ import annotations

import json
import time

import mapbox_vector_tile
import pytest
from shapely.geometry import LineString, MultiPolygon, box
from sqlalchemy import func, select

from gisserver import schema
from gisserver.config import Settings
from layers.catalogue import LayerChange, bump_version, get_layer
from tests.conftest import auth
from tests.tiles.conftest import BEN_THANH, insert_parcels, lonlat
from tiles.cache import CHANGE_MARGIN
from tiles.tms import lonlat_tile_bounds, tiles_in_lonlat_bbox

Z = 19  # ~75 m tiles: the 4 x 4 block of 40 m parcels spans 3 x 3 of them
E0, N0 = BEN_THANH
#: parcel (3, 3) of the block: the one edited
EDITED = (E0 + 126, N0 + 126, E0 + 166, N0 + 166)


@pytest.fixture
def second_worker(app, database_url):
    """Another app on the same database and cache folder: a second gunicorn worker, with its own
    catalogue snapshot (the default one-second copy) and its own cache objects."""
    from gisserver import create_app

    settings = app.extensions["gisserver"].settings
    other = create_app(Settings.from_env(database_url=database_url, var_dir=settings.var_dir,
                                         secret_key="test-secret", token_cache_seconds=0))
    other.config["TESTING"] = True
    yield other
    other.extensions["gisserver"].engine.dispose()


def _block_tiles():
    west, south = lonlat(E0 - 30, N0 - 30)
    east, north = lonlat(E0 + 200, N0 + 200)
    return list(tiles_in_lonlat_bbox((west, south, east, north), range(Z, Z + 1)))


def _touches(tile, lonlat_box) -> bool:
    """Does the change box touch the tile's invalidation area (the tile plus its margin)?"""
    w, s, e, n = lonlat_tile_bounds(tile.z, tile.x, tile.y)
    mw, mh = (e - w) * CHANGE_MARGIN, (n - s) * CHANGE_MARGIN
    return not (lonlat_box[2] < w - mw or lonlat_box[0] > e + mw or lonlat_box[3] < s - mh or lonlat_box[1] > n + mh)


def _url(t) -> str:
    return f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt"


def _edited_parcel_id(conn) -> int:
    p = schema.parcel
    return conn.execute(select(p.c.id).where(p.c.parcel_no == 16, p.c.end_lifespan.is_(None))).scalar_one()


def test_split_changes_only_the_tiles_it_touches_in_both_workers(client, app, second_worker, ben_thanh, make_user):
    worker_b = second_worker.test_client()
    tiles = _block_tiles()
    before = {}
    for t in tiles:
        first = client.get(_url(t))
        assert first.status_code == 200
        before[t] = first.headers["ETag"]
        seen_by_b = worker_b.get(_url(t))  # B reads the tile A cached (same folder): a hit, same ETag
        assert seen_by_b.headers["X-Tile-Cache"] == "hit" and seen_by_b.headers["ETag"] == before[t]

    _, officer = make_user("officer")
    with ben_thanh.connect() as conn:
        parcel_id = _edited_parcel_id(conn)
    mid = (EDITED[0] + EDITED[2]) / 2
    line = {"type": "LineString", "coordinates": [[mid, EDITED[1] - 1], [mid, EDITED[3] + 1]]}
    resp = client.post(f"/api/register/parcels/{parcel_id}/split", headers=auth(officer), json={"line": line})
    assert resp.status_code == 201, resp.json

    changed = (*lonlat(EDITED[0], EDITED[1]), *lonlat(EDITED[2], EDITED[3]))
    showing = {t for t in tiles if _touches_strictly(t, changed)}
    untouched = {t for t in tiles if not _touches(t, changed)}
    assert showing and untouched  # the test covers both cases

    time.sleep(1.2)  # B's catalogue copy is at most one second old
    for name, worker in (("A", client), ("B", worker_b)):
        for t in tiles:
            again = worker.get(_url(t), headers={"If-None-Match": before[t]})
            if t in untouched:  # not rebuilt: its header moved to the new version
                assert (again.status_code, again.headers["X-Tile-Cache"]) == (304, "hit"), (name, t)
            elif t in showing:
                assert again.status_code == 200 and again.headers["ETag"] != before[t], (name, t)
    # the new parcels are drawn: the tiles showing the edited parcel now have both halves
    for t in showing:
        features = mapbox_vector_tile.decode(client.get(_url(t)).data)["parcels"]["features"]
        numbers = {f["properties"]["parcel_no"] for f in features}
        assert 16 not in numbers and {17, 18} & numbers


def _touches_strictly(tile, lonlat_box) -> bool:
    w, s, e, n = lonlat_tile_bounds(tile.z, tile.x, tile.y)
    return not (lonlat_box[2] < w or lonlat_box[0] > e or lonlat_box[3] < s or lonlat_box[1] > n)


def _change_log(app, info) -> list[dict]:
    path = app.extensions["gisserver"].settings.var_dir / "tiles" / "_changes" / f"{info.name}.{info.id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_committed_edits_record_their_area_and_rolled_back_ones_nothing(app, ben_thanh):
    from licensing import register

    engine = app.extensions["gisserver"].engine  # the app's engine records changes at commit
    with engine.connect() as conn:
        info = get_layer(conn, "parcels")
        parcel_id = _edited_parcel_id(conn)
    logged = len(_change_log(app, info))
    with pytest.raises(RuntimeError), engine.begin() as conn:
        register.change_attributes(conn, "test", parcel_id, {"land_use": "ODT"})
        raise RuntimeError("the caller fails after the edit: rollback")
    assert len(_change_log(app, info)) == logged
    with engine.begin() as conn:
        result = register.change_attributes(conn, "test", parcel_id, {"land_use": "ODT"})
    with engine.connect() as conn:
        version = get_layer(conn, "parcels").data_version
    entries = _change_log(app, info)
    assert len(entries) == logged + 1 and entries[-1]["version"] == version
    # the lon/lat envelope of the parcel's box (its four corners, through the official transformation)
    corners = [lonlat(x, y) for x in (EDITED[0], EDITED[2]) for y in (EDITED[1], EDITED[3])]
    expected = (min(c[0] for c in corners), min(c[1] for c in corners),
                max(c[0] for c in corners), max(c[1] for c in corners))
    assert entries[-1]["bbox"] == pytest.approx(expected, abs=2e-7)  # widened by 1e-7
    assert result["retired"] == [parcel_id]


def _recount(conn) -> tuple[int, tuple[float, ...]]:
    """Current parcels and their exact lon/lat extent."""
    p = schema.parcel
    extent = func.ST_Extent(func.ST_Transform(p.c.geom, 4326))
    row = conn.execute(select(func.count(), func.ST_XMin(extent), func.ST_YMin(extent), func.ST_XMax(extent),
                              func.ST_YMax(extent)).where(p.c.end_lifespan.is_(None))).one()
    return row[0], tuple(row[1:])


def _check_extent(stored, exact, slack: float = 1e-5) -> None:
    """The stored extent holds every feature and exceeds them by less than ``slack`` degrees (~1 m):
    boxes from the city CRS are a little larger than the lon/lat extent (the grids are rotated)."""
    assert stored[0] <= exact[0] and stored[1] <= exact[1] and stored[2] >= exact[2] and stored[3] >= exact[3]
    assert max(exact[0] - stored[0], exact[1] - stored[1], stored[2] - exact[2], stored[3] - exact[3]) < slack


def _catalogue_state(conn) -> tuple[int, tuple[float, ...]]:
    lyr = schema.layer.c
    row = conn.execute(select(lyr.feature_count, func.ST_XMin(lyr.extent), func.ST_YMin(lyr.extent),
                              func.ST_XMax(lyr.extent), func.ST_YMax(lyr.extent)).where(lyr.name == "parcels")).one()
    return row[0], tuple(row[1:])


def test_incremental_bump_agrees_with_a_full_recount(ben_thanh):
    from licensing import register

    with ben_thanh.begin() as conn:
        assert _catalogue_state(conn)[0] == 16 == _recount(conn)[0]
        parcel_id = _edited_parcel_id(conn)
        # a split (1 -> 2), a merge (2 -> 1), a new parcel outside the extent (+1), an attribute change
        split = register.split_parcel(conn, "test", parcel_id,
                                      LineString([(E0 + 146, N0 + 120), (E0 + 146, N0 + 170)]))
        halves = [c["id"] for c in split["created"]]
        register.merge_parcels(conn, "test", halves)
        far = MultiPolygon([box(E0 + 500, N0 + 500, E0 + 530, N0 + 520)])
        created = register.create_parcel(conn, "test", ward_code="26734", sheet_no=12, parcel_no=99,
                                         geom=far.geoms[0])
        register.change_attributes(conn, "test", created["created"][0]["id"], {"land_use": "ODT"})
        count, bounds = _catalogue_state(conn)
        expected_count, exact = _recount(conn)
        assert count == expected_count == 17
        _check_extent(bounds, exact)
        bump_version(conn, "parcels")  # a full recount: the same count; its box of the whole block in
        assert _catalogue_state(conn)[0] == 17  # the city CRS, turned to lon/lat, is a little looser
        _check_extent(_catalogue_state(conn)[1], exact, slack=3e-5)


def test_incremental_bump_reads_no_table(ben_thanh):
    """A LayerChange updates the catalogue from the change alone: rows added behind the
    catalogue's back are not counted (a full recount, without a change, sees them)."""
    with ben_thanh.begin() as conn:
        insert_parcels(conn, n=2, origin=(E0 + 1000, N0 + 1000), ward_code="26735")
        bump_version(conn, "parcels", LayerChange(added=1, removed=0, bbox=(E0 + 1000, N0 + 1000, E0 + 1040,
                                                                           N0 + 1040)))
        assert _catalogue_state(conn)[0] == 17
        bump_version(conn, "parcels")
        assert _catalogue_state(conn)[0] == 20 == _recount(conn)[0]
        # history rows are not features: retire one parcel by hand, recount
        conn.execute(schema.parcel.update().where(schema.parcel.c.parcel_no == 1).values(end_lifespan=func.now()))
        bump_version(conn, "parcels")
        assert _catalogue_state(conn)[0] == 20 - 2  # parcel_no 1 of each of the two blocks


def test_append_invalidates_only_where_it_added(client, app, ben_thanh, tmp_path):
    """Ingest in append mode records the box of the appended features."""
    from layers.ingest import load_layer

    tiles = _block_tiles()
    before = {t: client.get(_url(t)).headers["ETag"] for t in tiles}
    far_e, far_n = E0 + 3000, N0 + 3000
    ring = [list(lonlat(x, y)) for x, y in ((far_e, far_n), (far_e + 30, far_n), (far_e + 30, far_n + 30),
                                            (far_e, far_n + 30), (far_e, far_n))]  # GeoJSON is lon/lat
    path = tmp_path / "new_parcels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"ward_code": "26740", "sheet_no": 1, "parcel_no": 1},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    report = load_layer(app.extensions["gisserver"].engine, path, "parcels", actor="test", mode="append")
    assert report.loaded == 1 and report.bbox == pytest.approx([far_e, far_n, far_e + 30, far_n + 30], abs=0.01)
    with ben_thanh.connect() as conn:
        assert get_layer(conn, "parcels").feature_count == 17
    for t in tiles:
        again = client.get(_url(t), headers={"If-None-Match": before[t]})
        assert (again.status_code, again.headers["X-Tile-Cache"]) == (304, "hit")
    far_tile = next(iter(tiles_in_lonlat_bbox((*lonlat(far_e + 10, far_n + 10), *lonlat(far_e + 20, far_n + 20)),
                                              range(Z, Z + 1))))
    features = mapbox_vector_tile.decode(client.get(_url(far_tile)).data)["parcels"]["features"]
    assert [f["properties"]["ward_code"] for f in features] == ["26740"]
