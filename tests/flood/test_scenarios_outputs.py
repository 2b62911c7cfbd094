"""HCMC scenario data and the outputs of a run (hazard classes, COGs, extent polygons, gauges)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from flood import outputs, scenarios
from flood.errors import InvalidScenario
from flood.solver import Boundary, Domain, Forcing, GaugeRecord, Simulation
from gisserver.crs import city_crs


@pytest.mark.parametrize(("years", "low", "high"), [(2, 85, 95), (5, 105, 115), (10, 118, 128)])
def test_design_storm_totals_match_tcvn_7957(years, low, high):
    storm = scenarios.design_storm(years)
    assert low < storm.total_mm < high  # DOMAIN.md: ~90 / ~110 / ~123 mm in 3 h
    assert storm.total_mm == pytest.approx(scenarios.idf_intensity_mm_h(180, years) * 3.0)
    i = storm.intensity_mm_h
    assert i.size == 18 and int(np.argmax(i)) == 9  # peak block in the middle
    # alternating blocks: intensities fall away from the peak on both sides
    assert np.all(np.diff(i[:10]) >= 0) and np.all(np.diff(i[9:]) <= 0)


def test_stress_event_and_tide_have_the_documented_shape():
    stress = scenarios.stress_event_2018()
    assert stress.total_mm > 300 and stress.edges[-1] == 24 * 3600
    tide = scenarios.phu_an_tide(48 * 3600, peak_m=1.60, peak_at_s=12 * 3600, step_s=300)
    v = tide.values
    assert v.max() == pytest.approx(1.60, abs=0.01) and tide.times[np.argmax(v)] == pytest.approx(12 * 3600, abs=600)
    highs = np.flatnonzero((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:])) + 1
    assert len(highs) == 4  # two high waters a day, unequal
    assert v[highs].min() < 1.0
    raised = scenarios.phu_an_tide(48 * 3600, peak_m=1.60, peak_at_s=12 * 3600, step_s=300, sea_level_rise_m=0.30)
    assert np.allclose(raised.values - tide.values, 0.30)
    alert = scenarios.PHU_AN_ALERT_LEVELS.value
    assert (alert["II"], alert["III"]) == (1.50, 1.60)


def test_scenarios_are_versioned_sourced_and_reproducible():
    s = scenarios.DEFAULT_SCENARIOS["design-10y-slr2050"]
    again = scenarios.Scenario.from_dict(s.as_dict())
    assert again == s and again.digest == s.digest
    assert scenarios.DEFAULT_SCENARIOS["design-5y"].digest != s.digest
    assert s.tide["sea_level_rise_m"] == 0.30
    src = scenarios.sources()
    assert {"IDF_HCMC", "PHU_AN_ALERT_LEVELS", "SEA_LEVEL_RISE", "MANNING_BY_COVER"} <= set(src)
    assert all(v["source"] for v in src.values()) and any(v["verify"] for v in src.values())
    with pytest.raises(InvalidScenario):
        scenarios.Scenario.from_dict({**s.as_dict(), "bogus": 1})
    forcing = s.forcing(tide_side="west")
    assert forcing.rain.total_mm > 118 and forcing.boundaries[0].kind == "stage"


def test_manning_from_land_cover_classes():
    classes = np.array([[1, 2], [3, 1]])
    n = scenarios.manning_from_classes(classes, {1: "road", 2: "grass", 3: "canal"})
    assert n.tolist() == [[0.015, 0.035], [0.03, 0.015]]
    with pytest.raises(InvalidScenario):
        scenarios.manning_from_classes(classes, {1: "lava"})


def test_hazard_classes_follow_arr_and_defra_thresholds():
    d = np.array([0.0, 0.2, 0.4, 1.0, 1.5, 3.0, 5.0])
    v = np.array([0.0, 0.5, 1.0, 0.5, 0.6, 1.0, 1.0])
    assert outputs.arr_hazard(d, v, d * v).tolist() == [0, 1, 2, 3, 4, 5, 6]
    hr = outputs.defra_hazard_rating(d, d * (v + 0.5))
    # 0.2*1.0 = 0.2 low; 0.4*1.5+1 = 1.6 significant; 1.0*1.0+1 = 2.0 significant; deeper: extreme
    assert outputs.defra_hazard_class(hr, d).tolist() == [0, 1, 3, 3, 4, 4, 4]


def _run_small_tide_case():
    ny, nx = 24, 30
    z = np.tile(np.linspace(0.0, 2.0, nx), (ny, 1))
    blocked = np.zeros((ny, nx), dtype=bool)
    blocked[5:8, 12:15] = True
    tide = scenarios.phu_an_tide(3 * 3600, peak_m=1.6)
    rain = scenarios.design_storm(10)
    forcing = Forcing(rain=rain, boundaries=[Boundary("west", "stage", tide)])
    sim = Simulation(Domain(z, 2.0, manning=0.03, blocked=blocked), forcing)
    gauges = GaugeRecord([(12, 2), (12, 20)])
    snaps = sim.run(3 * 3600, snapshot_times=[3600, 7200], gauges=gauges, gauge_interval=600)
    return sim, snaps, gauges


def test_run_outputs_cogs_extent_polygons_and_gauges(tmp_path):
    sim, snaps, gauges = _run_small_tide_case()
    assert sim.mass.max_relative_error < 1e-3
    maps = outputs.flood_maps(sim)
    assert np.isnan(maps.max_depth[5, 12]) and maps.hazard_arr[5, 12] == 0
    assert np.nanmax(maps.max_depth) > 1.0 and np.nanmax(maps.duration_s) > 3600
    transform = Affine(2.0, 0, 600000.0, 0, -2.0, 1190000.0)
    files = outputs.write_maps(tmp_path / "maps", maps, transform, city_crs())
    steps = outputs.write_depth_steps(tmp_path / "steps", snaps, transform, city_crs(), sim.domain.blocked)
    assert sorted(steps) == [3600, 7200]
    with rasterio.open(files["max_depth"]) as src:
        assert src.driver == "GTiff" and src.crs is not None
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert np.allclose(src.read(1), maps.max_depth.astype(np.float32), equal_nan=True)
        assert src.transform == transform
    extent = outputs.extent_polygons(maps.max_depth, transform)
    assert [e["min_depth"] for e in extent] == sorted(e["min_depth"] for e in extent)
    wet_area = float(np.sum(np.nan_to_num(maps.max_depth) >= 0.1)) * 4.0
    assert sum(e["area_m2"] for e in extent) == pytest.approx(wet_area)
    assert all(e["geometry"].is_valid for e in extent)
    times, depths = gauges.as_arrays()
    assert times.tolist() == [600.0 * k for k in range(19)]
    rows = outputs.gauge_table(times, depths, ["canal", "street"], sim.domain.z[[12, 12], [2, 20]])
    assert len(rows) == 38 and rows[0]["time_s"] == 0.0
