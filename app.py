"""WSGI entry point: ``gunicorn app:app``. Builds the application and nothing else."""

from gisserver import create_app

app = create_app()
