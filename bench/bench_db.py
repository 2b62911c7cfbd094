"""The database server benchmarks make their scratch databases on."""

from __future__ import annotations

import os


def server_url() -> str:
    """TEST_DATABASE_URL's server, else the embedded cluster (started when needed)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    from gisserver.config import Settings
    from gisserver.pgcluster import cluster_from_settings

    cluster = cluster_from_settings(Settings.from_env())
    cluster.start()
    return cluster.url("postgres")
