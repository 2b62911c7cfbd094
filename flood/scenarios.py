"""HCMC flood scenarios as versioned data: design storms, the Nov-2018 stress event, Phú An tide.

Every figure carries its source; figures marked ``verify`` are to be checked against the
official document before being relied on, and can be corrected here (bump ``DATA_VERSION``)
without touching the model. A scenario serialises to canonical JSON whose hash identifies it, so
a stored run can be reproduced exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from flood.errors import InvalidScenario
from flood.solver import Boundary, Forcing, Hyetograph, Series

DATA_VERSION = "2026.11.1"


@dataclass(frozen=True)
class Sourced:
    value: object
    source: str
    verify: bool = True


# --- rain ---------------------------------------------------------------------------------------

#: TCVN 7957:2008 (Drainage - external networks and facilities, Appendix B) intensity formula
#: q = A (1 + C lg P) / (t + b)^n, q in l/s/ha, t in minutes, P return period in years.
#: With these parameters a 3-hour storm gives 91 / 109 / 123 mm for P = 2 / 5 / 10 years.
IDF_HCMC = Sourced(
    {"A": 11650.0, "C": 0.58, "b": 32.0, "n": 0.95},
    "TCVN 7957:2008 Appendix B, parameters for Ho Chi Minh City (Tân Sơn Hòa station)",
)
LITRE_PER_S_HA_TO_MM_H = 0.36

#: Nov 2018 (typhoon Usagi remnant, 25-26 Nov 2018): more than 300 mm in 24 h over the inner city.
STRESS_EVENT_2018 = Sourced(
    {"total_mm": 320.0, "duration_h": 24.0, "core_hours": 6.0, "core_fraction": 0.75},
    "Southern Regional Hydro-Meteorological Center reports, 26 Nov 2018 (>300 mm/24 h); "
    "the time distribution here is synthetic (75 % in a 6-hour core)",
)


def idf_intensity_mm_h(duration_min: float, return_period_y: float, idf: dict | None = None) -> float:
    """Mean intensity (mm/h) of a storm of the given duration and return period (TCVN 7957 formula)."""
    p = idf or IDF_HCMC.value
    if duration_min <= 0 or return_period_y < 1:
        raise InvalidScenario("duration must be positive and the return period at least 1 year")
    q = p["A"] * (1.0 + p["C"] * math.log10(return_period_y)) / (duration_min + p["b"]) ** p["n"]
    return q * LITRE_PER_S_HA_TO_MM_H


def design_storm(return_period_y: float, duration_min: float = 180.0, block_min: float = 10.0,
                 peak_position: float = 0.5, start_s: float = 0.0) -> Hyetograph:
    """Alternating-block hyetograph from the IDF curve (Chow, Maidment & Mays 1988, §14.4).

    Block k has the depth increment between the k- and (k-1)-block storms of the IDF; the largest
    block sits at ``peak_position`` of the storm and the others alternate around it.
    """
    n = int(round(duration_min / block_min))
    if n < 1 or abs(n * block_min - duration_min) > 1e-9:
        raise InvalidScenario("the duration must be a whole number of blocks")
    depths = np.array([idf_intensity_mm_h(k * block_min, return_period_y) * k * block_min / 60.0
                       for k in range(1, n + 1)])
    increments = np.diff(np.concatenate([[0.0], depths]))
    order = np.argsort(increments)[::-1]
    peak = min(int(peak_position * n), n - 1)
    slots, left, right = [peak], peak - 1, peak + 1
    while len(slots) < n:  # alternate right/left of the peak while there is room on that side
        if right < n and (len(slots) % 2 == 1 or left < 0):
            slots.append(right)
            right += 1
        else:
            slots.append(left)
            left -= 1
    blocks = np.zeros(n)
    blocks[slots] = increments[order]
    edges = start_s + np.arange(n + 1) * block_min * 60.0
    return Hyetograph(edges, blocks / (block_min / 60.0))


def stress_event_2018(start_s: float = 0.0) -> Hyetograph:
    v = STRESS_EVENT_2018.value
    hours = int(v["duration_h"])
    core = int(v["core_hours"])
    first = (hours - core) // 2
    depth = np.full(hours, v["total_mm"] * (1 - v["core_fraction"]) / (hours - core))
    shape = np.array([1.0, 2.0, 4.0, 3.0, 2.0, 1.0])[:core]
    depth[first:first + core] = v["total_mm"] * v["core_fraction"] * shape / shape.sum()
    return Hyetograph(start_s + np.arange(hours + 1) * 3600.0, depth)


# --- tide and sea level -------------------------------------------------------------------------

PHU_AN_ALERT_LEVELS = Sourced(
    {"II": 1.50, "III": 1.60},
    "Decision 05/2020/QĐ-TTg on flood alert levels (Saigon River at Phú An, Hòn Dấu datum, m)",
)
PHU_AN_HISTORIC_HIGH = Sourced(1.77, "Southern Regional Hydro-Meteorological Center, highest recorded at Phú An")
#: Mixed semi-diurnal tide at Phú An: two highs and two lows a day, unequal (M2, S2, K1, O1).
PHU_AN_CONSTITUENTS = Sourced(
    {"mean": -0.05, "M2": (1.00, 12.4206, 0.0), "S2": (0.30, 12.0, 0.0), "K1": (0.60, 23.9345, 0.6),
     "O1": (0.45, 25.8193, 1.2)},
    "synthetic harmonic shape fitted to the typical Phú An range (amplitude m, period h, phase rad); "
    "replace with the station's published constants",
)
SEA_LEVEL_RISE = Sourced(
    {"2030": 0.12, "2050": 0.30},
    "MONRE climate change and sea level rise scenarios for Vietnam (2016/2020 editions), RCP8.5, m",
)


def _harmonic_level(t: np.ndarray) -> np.ndarray:
    c = PHU_AN_CONSTITUENTS.value
    level = np.full(np.shape(t), c["mean"])
    for name in ("M2", "S2", "K1", "O1"):
        amp, period_h, phase = c[name]
        level = level + amp * np.cos(2 * np.pi * t / (period_h * 3600.0) + phase)
    return level


def phu_an_tide(duration_s: float, *, peak_m: float | None = None, peak_at_s: float | None = None,
                sea_level_rise_m: float = 0.0, step_s: float = 600.0, start_s: float = 0.0) -> Series:
    """Water level (m, Hòn Dấu) at Phú An.

    ``peak_at_s`` puts the higher high water of the day at that time (e.g. on the rain peak);
    ``peak_m`` rescales the tide about its mean so that this high water reaches the level.
    """
    mean = PHU_AN_CONSTITUENTS.value["mean"]
    t = np.arange(0.0, duration_s + step_s, step_s)
    day = np.arange(0.0, 25 * 3600.0, 60.0)
    day_level = _harmonic_level(day)
    shift = 0.0 if peak_at_s is None else float(day[np.argmax(day_level)]) - peak_at_s
    level = _harmonic_level(t + shift)
    if peak_m is not None:
        level = mean + (level - mean) * (peak_m - mean) / (day_level.max() - mean)
    return Series(start_s + t, level + sea_level_rise_m)


# --- friction ------------------------------------------------------------------------------------

MANNING_BY_COVER = Sourced(
    {"paved": 0.015, "road": 0.015, "residential": 0.05, "grass": 0.035, "bare": 0.03, "crops": 0.05,
     "rice": 0.06, "trees": 0.08, "canal": 0.03, "water": 0.025},
    "Chow (1959) tables; DOMAIN.md §4 (paved 0.012-0.02, grass/bare 0.03-0.05, earthen canals ~0.03)",
)
#: Land-use codes of the Vietnamese cadastre (DOMAIN.md §2) to cover classes above.
COVER_BY_LAND_USE = Sourced(
    {"ODT": "residential", "ONT": "residential", "DGT": "road", "SKC": "paved", "TMD": "paved",
     "SON": "canal", "DTL": "canal", "CLN": "trees", "LUC": "rice", "HNK": "crops"},
    "project mapping of land-use codes to cover classes",
)


def manning_from_classes(classes: np.ndarray, legend: dict[int, str], default: str = "grass") -> np.ndarray:
    """Manning n raster from a class raster and its legend (class value -> cover name)."""
    table = MANNING_BY_COVER.value
    unknown = sorted({name for name in legend.values() if name not in table} | ({default} - set(table)))
    if unknown:
        raise InvalidScenario(f"no Manning n for cover classes {unknown}")
    n = np.full(classes.shape, table[default])
    for value, name in legend.items():
        n[classes == value] = table[name]
    return n


# --- scenarios -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """What a planner picks: rain, tide, sea level, losses; the terrain comes with the run."""

    key: str
    title: str
    duration_s: float
    rain: dict = field(default_factory=dict)
    tide: dict | None = None
    initial_loss_mm: float = 5.0
    continuing_loss_mm_h: float = 2.0
    version: int = 1

    def as_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "duration_s": self.duration_s, "rain": self.rain,
                "tide": self.tide, "initial_loss_mm": self.initial_loss_mm,
                "continuing_loss_mm_h": self.continuing_loss_mm_h, "version": self.version,
                "data_version": DATA_VERSION}

    @classmethod
    def from_dict(cls, d: dict) -> Scenario:
        known = {"key", "title", "duration_s", "rain", "tide", "initial_loss_mm", "continuing_loss_mm_h", "version"}
        extra = set(d) - known - {"data_version"}
        if extra:
            raise InvalidScenario(f"unknown scenario fields {sorted(extra)}")
        return cls(**{k: d[k] for k in known if k in d})

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON: equal digests, equal inputs."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def hyetograph(self) -> Hyetograph | None:
        kind = self.rain.get("kind")
        if kind is None:
            return None
        if kind == "design":
            return design_storm(self.rain["return_period_y"], self.rain.get("duration_min", 180.0),
                                self.rain.get("block_min", 10.0), self.rain.get("peak_position", 0.5))
        if kind == "stress-2018":
            return stress_event_2018()
        if kind == "blocks":
            return Hyetograph(self.rain["edges_s"], self.rain["intensity_mm_h"])
        raise InvalidScenario(f"unknown rain kind {kind!r}")

    def tide_series(self) -> Series | None:
        if not self.tide:
            return None
        slr = self.tide.get("sea_level_rise_m", 0.0)
        return phu_an_tide(self.duration_s, peak_m=self.tide.get("peak_m"), peak_at_s=self.tide.get("peak_at_s"),
                           sea_level_rise_m=slr)

    def forcing(self, *, tide_side: str = "west", tide_cells: tuple[int, int | None] = (0, None),
                open_sides: tuple[str, ...] = ()) -> Forcing:
        """Model forcing; the tide enters through ``tide_side`` (cells ``tide_cells``) if the scenario has one."""
        boundaries = [Boundary(side, "open") for side in open_sides]
        tide = self.tide_series()
        if tide is not None:
            boundaries.append(Boundary(tide_side, "stage", tide, start=tide_cells[0], stop=tide_cells[1]))
        return Forcing(rain=self.hyetograph(), initial_loss_mm=self.initial_loss_mm,
                       continuing_loss_mm_h=self.continuing_loss_mm_h, boundaries=boundaries)


def _design(key_years: int, slr: float = 0.0, peak: float = 1.60) -> Scenario:
    suffix = f" with +{slr:.2f} m sea level (2050)" if slr else ""
    return Scenario(
        key=f"design-{key_years}y" + ("-slr2050" if slr else ""),
        title=f"{key_years}-year 3-hour design storm (TCVN 7957), Phú An tide peaking at {peak:.2f} m{suffix}",
        duration_s=6 * 3600.0,
        rain={"kind": "design", "return_period_y": key_years, "duration_min": 180.0, "block_min": 10.0,
              "peak_position": 0.5},
        tide={"peak_m": peak, "peak_at_s": 5400.0, "sea_level_rise_m": slr},
    )


DEFAULT_SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        _design(2),
        _design(5),
        _design(10),
        _design(10, slr=SEA_LEVEL_RISE.value["2050"]),
        Scenario(key="tide-alert-3", title="Phú An tide at alert level III (1.60 m), no rain",
                 duration_s=24 * 3600.0, tide={"peak_m": PHU_AN_ALERT_LEVELS.value["III"], "peak_at_s": 43200.0}),
        Scenario(key="stress-2018", title="Nov 2018 stress event (>300 mm in 24 h) with historic-high tide",
                 duration_s=24 * 3600.0, rain={"kind": "stress-2018"},
                 tide={"peak_m": PHU_AN_HISTORIC_HIGH.value, "peak_at_s": 43200.0}),
    )
}


def sources() -> dict[str, dict]:
    """Every sourced figure of this module (for the API and docs)."""
    return {name: {"value": v.value, "source": v.source, "verify": v.verify}
            for name, v in globals().items() if isinstance(v, Sourced)}
