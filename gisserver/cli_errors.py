"""The click group every command group of the project uses: errors as a message, not a traceback."""

from __future__ import annotations

import sys

import click

from gisserver.errors import GISError


class GISGroup(click.Group):
    """Turns the project's errors into a clear message and exit status 2, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GISError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(2)
