"""The seeding CLI fills the cache that the tile endpoints then serve as hits."""

from __future__ import annotations

from click.testing import CliRunner

from gisserver.cli import main
from tests.tiles.conftest import BEN_THANH, lonlat


def test_seed_then_serve_from_cache(app, client, ben_thanh, database_url):
    var_dir = app.extensions["gisserver"].settings.var_dir
    env = {"DATABASE_URL": database_url, "GISSERVER_VAR_DIR": str(var_dir)}
    w, s = lonlat(BEN_THANH[0] - 50, BEN_THANH[1] - 50)
    e, n = lonlat(BEN_THANH[0] + 250, BEN_THANH[1] + 250)
    bbox = f"{w},{s},{e},{n}"
    result = CliRunner().invoke(main, ["tiles", "seed", "parcels", "--zoom", "12-16", "--bbox", bbox], env=env)
    assert result.exit_code == 0, result.output
    assert "built" in result.output and "seeding parcels" in result.output
    again = CliRunner().invoke(main, ["tiles", "seed", "parcels", "--zoom", "12-16", "--bbox", bbox], env=env)
    assert " 0 built" in again.output or again.output.strip().splitlines()[-1].startswith("0 built")

    import morecantile

    t = morecantile.tms.get("WebMercatorQuad").tile(*lonlat(BEN_THANH[0] + 20, BEN_THANH[1] + 20), 16)
    resp = client.get(f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt")
    assert resp.status_code == 200 and resp.headers["X-Tile-Cache"] == "hit" and resp.data

    png = CliRunner().invoke(main, ["tiles", "seed", "parcels", "--zoom", "15", "--bbox", bbox, "--format", "png"],
                             env=env)
    assert png.exit_code == 0, png.output
    t15 = morecantile.tms.get("WebMercatorQuad").tile(*lonlat(BEN_THANH[0] + 20, BEN_THANH[1] + 20), 15)
    wmts = client.get(f"/wmts/1.0.0/parcels/default/GoogleMapsCompatible/{t15.z}/{t15.y}/{t15.x}.png")
    assert wmts.headers["X-Tile-Cache"] == "hit"

    changed = CliRunner().invoke(main, ["tiles", "changed", "parcels", "--bbox", bbox], env=env)
    assert changed.exit_code == 0, changed.output
    purged = CliRunner().invoke(main, ["tiles", "purge", "parcels"], env=env)
    assert purged.exit_code == 0
    assert client.get(f"/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt").headers["X-Tile-Cache"] == "miss"


def test_seed_rejects_bad_input(ben_thanh, database_url, tmp_path):
    env = {"DATABASE_URL": database_url, "GISSERVER_VAR_DIR": str(tmp_path)}
    for args in (["--zoom", "9-3"], ["--zoom", "x"], ["--bbox", "1,2,3"],
                 ["--zoom", "0-22", "--bbox", "-180,-85,180,85"]):
        result = CliRunner().invoke(main, ["tiles", "seed", "parcels", *args], env=env)
        assert result.exit_code == 2, (args, result.output)
    unknown = CliRunner().invoke(main, ["tiles", "seed", "nosuch"], env=env)
    assert unknown.exit_code == 2 and "no layer" in unknown.output
