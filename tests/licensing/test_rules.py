"""Rule tables: values from the data (QCVN 01:2021, Decree 14/2014 ...), versioning, corridors."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from gisserver import audit
from gisserver.errors import InvalidInput
from licensing import corridors, ruledata, rules
from licensing import tables as lt
from tests.licensing.helpers import add_power_line, add_road, add_water, rect

SEEDS = {s["rule_id"]: s["data"] for s in ruledata.seed_rule_tables()}


@pytest.mark.parametrize("area, expected", [(50, 1.0), (90, 1.0), (95, 0.95), (150, 0.8), (250, 0.65),
                                            (400, 0.55), (750, 0.45), (1000, 0.4), (5000, 0.4)])
def test_density_table_2_8_interpolated(area, expected):
    value, exception = ruledata.max_density(SEEDS["density_individual_house"], area, 12, existing_urban=False)
    assert value == pytest.approx(expected) and not exception


def test_density_existing_urban_exception():
    data = SEEDS["density_individual_house"]
    assert ruledata.max_density(data, 95, 25, existing_urban=True) == (1.0, True)
    assert ruledata.max_density(data, 95, 26, existing_urban=True)[0] == pytest.approx(0.95)
    assert ruledata.max_density(data, 120, 10, existing_urban=True)[0] == pytest.approx(0.86)


@pytest.mark.parametrize("road, height, setback", [
    (12, 18.9, 0), (12, 19, 3), (12, 21.9, 3), (12, 22, 4), (12, 28, 6),
    (19, 21.9, 0), (19, 22, 3), (21.9, 28, 6), (22, 27.9, 0), (40, 28, 6),
])
def test_setback_table_2_7(road, height, setback):
    assert ruledata.required_setback(SEEDS["setback_red_line"], road, height) == setback


@pytest.mark.parametrize("row, floors", [(2, 3), (3.5, 4), (6.9, 4), (7, 6), (12, 7), (19.9, 7), (20, 8), (60, 8)])
def test_floors_by_right_of_way(row, floors):
    assert ruledata.max_floors_by_row(SEEDS["floors_by_row"], row) == floors


@pytest.mark.parametrize("kv, conductor, width, clearance", [
    (22, "covered", 1.0, 2.0), (22, "bare", 2.0, 2.0), (15, "bare", 2.0, 2.0), (35, "covered", 1.5, 2.0),
    (35, "bare", 3.0, 2.0), (66, "bare", 4.0, 3.0), (110, "covered", 4.0, 3.0), (220, "bare", 6.0, 4.0),
    (500, "bare", 7.0, 6.0),
])
def test_power_line_corridor_decree_14(kv, conductor, width, clearance):
    row = ruledata.power_line_row(SEEDS["power_line_corridor"], kv, conductor)
    assert (row["half_width"], row["vertical_clearance"]) == (width, clearance)
    assert ruledata.power_line_row(SEEDS["power_line_corridor"], 750, "bare") is None


@pytest.mark.parametrize("rule_id, data, message", [
    ("density_individual_house", {"points": [[100, 0.9], [90, 1.0]]}, "increase"),
    ("density_individual_house", {"points": [[90, 1.2], [100, 0.9]]}, "fraction"),
    ("setback_red_line", {"bands": [{"road_width_below": 19, "steps": [[19, 0], [None, 6]]}]}, "open"),
    ("floors_by_row", {"bands": [[3.5, 3], [None, "x"]]}, "number"),
    ("power_line_corridor", {"rows": [{"max_kv": 22, "conductor": "gold", "half_width": 1,
                                       "vertical_clearance": 2}]}, "conductor"),
    ("no_such_rule", {}, "unknown rule table"),
])
def test_rule_data_is_validated(rule_id, data, message):
    with pytest.raises(InvalidInput, match=message):
        ruledata.validate_rule_data(rule_id, data)


def test_publish_new_version_keeps_the_old_one(lic_db):
    new_data = {"max_far": 6.0}
    with lic_db.begin() as conn:
        v2 = rules.publish_rule_version(conn, "admin1", "far_limit", data=new_data,
                                        effective_from=date(2026, 1, 1), note="city tightening (test)")
    assert v2.version == 2 and v2.legal_basis.startswith("QCVN 01:2021")
    with lic_db.connect() as conn:
        assert rules.rule_in_force(conn, "far_limit", date(2025, 12, 31)).data == {"max_far": 7.0}
        assert rules.rule_in_force(conn, "far_limit", date(2026, 1, 1)).data == new_data
        versions = rules.rule_versions(conn, "far_limit")
        assert [(v.version, v.effective_to) for v in versions] == [(1, date(2026, 1, 1)), (2, None)]
        assert audit.history(conn, "rule_table", "far_limit")[0]["action"] == "rule.publish"
    with pytest.raises(InvalidInput, match="effective_from must be after"):
        with lic_db.begin() as conn:
            rules.publish_rule_version(conn, "admin1", "far_limit", data=new_data, effective_from=date(2025, 6, 1))
    with pytest.raises(InvalidInput, match="max_far"):
        with lic_db.begin() as conn:
            rules.publish_rule_version(conn, "admin1", "far_limit", data={"max_far": -1},
                                       effective_from=date(2027, 1, 1))


def test_corridors_generated_from_network(lic_db):
    with lic_db.begin() as conn:
        # 100 m lines along E; widths follow voltage and conductor
        for i, (kv, conductor) in enumerate([(22, "bare"), (22, "covered"), (110, "bare"), (500, "bare")]):
            add_power_line(conn, [(0, 100 * i), (100, 100 * i)], kv, conductor)
        add_power_line(conn, [(0, 1000), (100, 1000)], 22, placement="underground")
        add_water(conn, rect(1000, 0, 1010, 100), kind="canal")
        add_road(conn, [(2000, 0), (2100, 0)], row_width=20)
        counts = corridors.generate_corridors(conn, "admin1")
    assert counts == {"power_line": 4, "water": 1, "road_reserve": 1}
    with lic_db.connect() as conn:
        pc = lt.protection_corridor
        rows = conn.execute(
            select(pc.c.kind, pc.c.half_width, func.ST_Area(pc.c.geom)).order_by(pc.c.kind.desc(), pc.c.source_id)
        ).all()
    widths = [(k, w) for k, w, _ in rows]
    assert widths == [("water", 10.0), ("road_reserve", 10.0), ("power_line", 2.0), ("power_line", 1.0),
                      ("power_line", 4.0), ("power_line", 7.0)]
    # a buffered 100 m line: 2*w*100 + pi*w^2 (round ends); the road reserve has flat ends
    assert rows[4][2] == pytest.approx(2 * 4 * 100 + 3.1416 * 16, rel=0.01)
    assert rows[1][2] == pytest.approx(2000, rel=0.001)
    # regenerating replaces, never duplicates
    with lic_db.begin() as conn:
        assert corridors.generate_corridors(conn, "admin1", kinds=("water",)) == {"water": 1}
        assert conn.execute(select(func.count()).select_from(lt.protection_corridor)).scalar() == 6
