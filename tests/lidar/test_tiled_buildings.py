"""Buildings and LoD2 roofs per tile: a multi-tile run gives what a single-tile run gives."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from shapely.geometry import MultiPolygon, box

from lidar.tile_buildings import BuildingRequest, owner_key
from lidar.tiling import Source, TileFailed, TileScheme, run_tiled

TILE = 100.0
#: two cadastral footprints of the Delft crop: one inside a tile, one across the edge y = 447 500
CADASTRE = {11: MultiPolygon([box(85020.0, 447456.0, 85049.0, 447476.0)]),
            12: MultiPolygon([box(85001.0, 447463.0, 85063.0, 447525.0)])}
KWARGS = {"resolution": 0.5, "processes": False, "write_rasters": False, "cadastral": CADASTRE}


@pytest.fixture(scope="module")
def delft_source(shared_data):
    return [Source(str(shared_data / "lidar/ahn3_delft_urban.laz"), "EPSG:28992", "NAP")]


@pytest.fixture(scope="module")
def single(delft_source, tmp_path_factory):
    return run_tiled(delft_source, tmp_path_factory.mktemp("one"), tile_size=1000, n_workers=1,
                     buildings=BuildingRequest(), **KWARGS)


def _iou(a, b) -> float:
    return a.intersection(b).area / a.union(b).area


def _assert_same_buildings(one, many):
    assert len(many) == len(one) >= 5
    unmatched = list(many)
    for a in one:
        b = max(unmatched, key=lambda c: _iou(a.footprint, c.footprint))
        unmatched.remove(b)
        assert _iou(a.footprint, b.footprint) > 0.99
        assert b.height == pytest.approx(a.height, abs=0.03)
        assert b.ground_p10 == pytest.approx(a.ground_p10, abs=0.03)
        assert (b.roof.lod2, b.roof.roof_type) == (a.roof.lod2, a.roof.roof_type)
        if a.roof.lod2:
            assert len(b.roof.planes) == len(a.roof.planes) and len(b.roof.parts) == len(a.roof.parts)


def test_tiled_buildings_equal_a_single_tile_run(delft_source, single, tmp_path):
    """100 m tiles through a LocalCluster of two workers against one 1 km tile, AHN3 Delft crop:
    same buildings (footprint IoU > 0.99, LoD1 heights within 3 cm, same LoD2 roof types), one of
    them straddling a tile edge, each from the tile that owns it; same for cadastral footprints."""
    stages = []
    many = run_tiled(delft_source, tmp_path, tile_size=TILE, n_workers=2, buildings=BuildingRequest(),
                     progress=lambda f, stage: stages.append(stage), **KWARGS)
    assert len([t for t in many.tiles if t.points]) == 3 and "wider tiles" not in stages
    # the single run keeps LoD2 for a gable and a stepped block; the stepped block crosses y = 447 500
    assert sorted(b.roof.roof_type for b in single.detected if b.roof.lod2) == ["gable", "stepped"]
    straddling = [b for b in many.detected if b.footprint.bounds[1] < 447_500 < b.footprint.bounds[3]]
    assert straddling and any(b.roof.lod2 for b in straddling)
    for t in many.tiles:
        assert all(owner_key(b.footprint, TILE) == t.key for b in (t.buildings.detected if t.buildings else []))
    _assert_same_buildings(single.detected, many.detected)

    assert set(single.cadastral) == set(many.cadastral) == set(CADASTRE)
    for fid, a in single.cadastral.items():
        b = many.cadastral[fid]
        assert b.building.height == pytest.approx(a.building.height, abs=0.03)
        assert [r.roof_type for r in b.roofs] == [r.roof_type for r in a.roofs]
    assert np.isfinite(many.cadastral[12].building.height) and many.cadastral[12].building.height > 5


def test_building_reaching_past_the_buffer_is_rerun_wider_or_reported(delft_source, single, tmp_path):
    """With a 5 m building reach the Delft blocks reach past their tiles' buffers: those tiles are
    run again with the reach they need (same buildings as the single run); allowed no widening,
    the run fails and names the buildings, never keeping a cut footprint."""
    stages = []
    wide = run_tiled(delft_source, tmp_path / "wide", tile_size=TILE, n_workers=1,
                     buildings=BuildingRequest(reach=5.0), progress=lambda f, stage: stages.append(stage), **KWARGS)
    assert "wider tiles" in stages
    _assert_same_buildings(single.detected, wide.detected)
    assert set(wide.cadastral) == set(CADASTRE)

    with pytest.raises(TileFailed) as err:
        run_tiled(delft_source, tmp_path / "narrow", tile_size=TILE, n_workers=1,
                  buildings=BuildingRequest(reach=5.0, widenings=0), **KWARGS)
    failures = err.value.details["failures"]
    assert failures and all(f["error"] == "building beyond the building buffer" for f in failures)
    found = [b for f in failures for b in f["buildings"]]
    assert all(b["reach_needed"] > 5.0 for b in found) and 12 in {b["cadastral_id"] for b in found}


def test_assignment_with_a_buffer_wider_than_the_tile():
    """A building reach wider than the tile: every point goes to every tile whose buffered extent
    holds it (brute force over the neighbourhood)."""
    scheme = TileScheme(50.0, 10.0, building_reach=70.0)
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-120, 180, 400), rng.uniform(-60, 90, 400)
    tiles = scheme.assign(x, y)
    expected: dict = {}
    for kx, ky in itertools.product(range(-6, 7), range(-5, 6)):
        x0, y0, x1, y1 = scheme.buffered_bounds((kx, ky))
        inside = np.flatnonzero((x >= x0) & (x < x1) & (y >= y0) & (y < y1))
        if inside.size:
            expected[(kx, ky)] = inside.tolist()
    assert {k: v.tolist() for k, v in tiles.items()} == expected
