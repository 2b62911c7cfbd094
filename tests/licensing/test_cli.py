"""``gisserver licensing`` commands on the test database."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gisserver.cli import main


def test_licensing_cli(lic_db, database_url):
    runner = CliRunner()
    env = {"DATABASE_URL": database_url}
    rules = runner.invoke(main, ["licensing", "rules"], env=env)
    assert rules.exit_code == 0, rules.output
    assert "setback_red_line v1 from 2021-07-05: QCVN 01:2021/BXD, Table 2.7" in rules.output
    assert "[verify]" in rules.output
    corridors = runner.invoke(main, ["licensing", "corridors", "--kind", "power_line"], env=env)
    assert corridors.exit_code == 0 and json.loads(corridors.output) == {"power_line": 0}
    overdue = runner.invoke(main, ["licensing", "overdue", "--today", "2030-01-01"], env=env)
    assert overdue.exit_code == 0 and overdue.output.strip().endswith("0 overdue")
    bad = runner.invoke(main, ["licensing", "overdue", "--today", "someday"], env=env)
    assert bad.exit_code == 2 and "someday" in bad.output
