"""Entry points: ``gunicorn --worker-class asgi app:asgi`` (production, what ``gisserver serve``
runs) or any WSGI server with ``app:app``. Builds the application and nothing else."""

from gisserver import create_app
from gisserver.asgi import create_asgi

app = create_app()
asgi = create_asgi(app)
