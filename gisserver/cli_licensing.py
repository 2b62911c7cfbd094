"""``gisserver licensing ...``: corridors, rule tables and the overdue-dossier report from the shell."""

from __future__ import annotations

import json
import os

import click

ISO_DATE = click.DateTime(formats=["%Y-%m-%d"])


def register(main: click.Group) -> None:
    from gisserver.cli import _engine
    from gisserver.cli_errors import GISGroup

    @main.group("licensing", cls=GISGroup)
    def licensing():
        """Land-construction licensing: corridors, rule tables, dossiers."""

    @licensing.command("corridors")
    @click.option("--kind", "kinds", multiple=True, type=click.Choice(["power_line", "water", "road_reserve"]),
                  help="corridor kinds to regenerate (default: all)")
    def corridors_cmd(kinds):
        """Regenerate protection corridors from the network and the rule tables in force."""
        from licensing.corridors import KINDS, generate_corridors

        with _engine().begin() as conn:
            counts = generate_corridors(conn, os.environ.get("USER", "cli"), kinds=tuple(kinds) or KINDS)
        click.echo(json.dumps(counts))

    @licensing.command("rules")
    @click.option("--on", "on", default=None, type=ISO_DATE, help="date (YYYY-MM-DD); default today")
    def rules_cmd(on):
        """List the rule tables in force, with legal basis and verify flags."""
        from licensing.rules import list_rule_tables

        day = on.date() if on else None
        with _engine().connect() as conn:
            for rule in list_rule_tables(conn, day):
                flag = " [verify]" if rule.verify else ""
                click.echo(f"{rule.rule_id} v{rule.version} from {rule.effective_from}{flag}: {rule.legal_basis}")

    @licensing.command("overdue")
    @click.option("--today", default=None, type=ISO_DATE, help="report date (YYYY-MM-DD); default today")
    def overdue_cmd(today):
        """Dossiers past their statutory due date."""
        from licensing.dossiers import overdue_report

        day = today.date() if today else None
        with _engine().connect() as conn:
            rows = overdue_report(conn, today=day)
        for row in rows:
            click.echo(f"{row['code']}  {row['state']:<13} due {row['due_date']}  "
                       f"{row['working_days_overdue']} working days overdue")
        click.echo(f"{len(rows)} overdue")
