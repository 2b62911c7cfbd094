"""GDAL's MVT driver (through pyogrio) reads a served vector tile back."""

from __future__ import annotations

import pyogrio
import requests

from tests.tiles.test_mvt import ben_thanh_tile


def test_gdal_mvt_driver_reads_served_tile(live_server, ben_thanh, tmp_path):
    t = ben_thanh_tile()
    resp = requests.get(f"{live_server}/tiles/parcels/{t.z}/{t.x}/{t.y}.mvt", timeout=30)
    assert resp.status_code == 200
    # the driver georeferences a tile from its z/x/y path
    path = tmp_path / str(t.z) / str(t.x) / f"{t.y}.pbf"
    path.parent.mkdir(parents=True)
    path.write_bytes(resp.content)
    assert [name for name, _ in pyogrio.list_layers(path)] == ["parcels"]
    df = pyogrio.read_dataframe(path, layer="parcels")
    assert len(df) == 16
    assert set(df["land_use"]) == {"ODT", "TMD"} and sorted(df["parcel_no"].astype(int)) == list(range(1, 17))
    assert "owner_name" not in df.columns
    assert df.crs.to_epsg() == 3857
    # the parcels lie inside the tile, near Ben Thanh (lon 106.698, lat 10.772)
    lon_lat = df.to_crs(4326).geometry.union_all().centroid
    assert abs(lon_lat.x - 106.699) < 0.01 and abs(lon_lat.y - 10.774) < 0.01
