"""Attach the LiDAR command group (``gisserver lidar info|index|process``)."""

from __future__ import annotations


def register(main) -> None:
    from lidar.cli import lidar

    main.add_command(lidar)
