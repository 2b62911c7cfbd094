"""Command-line flood worker: ``python -m flood.worker --output var/flood [--once]``.

Takes runs from the PostgreSQL queue (see :mod:`flood.jobs`); run as many as there are cores to
spare. The database is the one of the settings (``DATABASE_URL``) unless ``--database-url`` is given.
"""

from __future__ import annotations

import argparse

from flood.jobs import work


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flood-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL URL (default: from the settings)")
    parser.add_argument("--output", required=True, help="folder for result rasters")
    parser.add_argument("--once", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--stale-after", type=float, default=60.0,
                        help="requeue runs without a heartbeat for this many seconds")
    args = parser.parse_args(argv)
    from gisserver.config import Settings
    from gisserver.db import make_engine, resolve_database_url

    url = args.database_url or resolve_database_url(Settings.from_env(), start_embedded=True)
    engine = make_engine(url, pool_size=2, application_name="flood-worker")
    try:
        done = work(engine, args.output, once=args.once, stale_after_s=args.stale_after)
    finally:
        engine.dispose()
    print(f"flood worker: {done} run(s) done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
