"""Command-line LiDAR ingest worker: ``python -m lidar.worker [--output var/lidar/jobs] [--once]``.

Runs the ingests queued through the HTTP API (``POST /api/lidar/files``) from the PostgreSQL job
queue (see :mod:`lidar.jobs`), one at a time; several workers may share the queue. Tiles run on
a Dask LocalCluster, or on the cluster whose scheduler address is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lidar-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL URL (default: from the settings)")
    parser.add_argument("--output", help="folder for the rasters (default: <var>/lidar/jobs)")
    parser.add_argument("--once", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes")
    parser.add_argument("--requeue-running", action="store_true",
                        help="first put jobs left 'running' back in the queue at once (only when this is the single "
                             "worker; otherwise they are taken again when their heartbeat is stale)")
    parser.add_argument("--stale-after", type=float, default=None,
                        help="seconds without a heartbeat after which a running job is taken again "
                             "(default: lidar.jobs.STALE_AFTER_SECONDS)")
    args = parser.parse_args(argv)
    from gisserver.config import Settings
    from gisserver.db import make_engine, resolve_database_url
    from lidar.jobs import STALE_AFTER_SECONDS, requeue_running, work

    settings = Settings.from_env()
    url = args.database_url or resolve_database_url(settings, start_embedded=True)
    engine = make_engine(url, pool_size=2, application_name="lidar-worker")
    output = Path(args.output) if args.output else Path(settings.var_dir) / "lidar" / "jobs"
    try:
        if args.requeue_running:
            print(f"lidar worker: {requeue_running(engine)} interrupted job(s) requeued")
        done = work(engine, output, once=args.once, scheduler=args.scheduler, n_workers=args.workers,
                    stale_after=args.stale_after if args.stale_after is not None else STALE_AFTER_SECONDS)
    finally:
        engine.dispose()
    print(f"lidar worker: {done} job(s) done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
