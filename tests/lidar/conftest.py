"""Shared fixtures for the LiDAR tests: the real AHN3 Delft file, read once."""

from __future__ import annotations

import pytest

from lidar.io import open_cloud

AHN3 = "lidar/ahn3_delft_urban.laz"
RD_NEW = "EPSG:28992"


@pytest.fixture(scope="session")
def ahn3_path(shared_data):
    return shared_data / AHN3


@pytest.fixture(scope="session")
def ahn3_points(ahn3_path):
    """All points of the AHN3 crop in RD New (the file has no CRS VLR: it is declared)."""
    return open_cloud(ahn3_path, crs=RD_NEW, vertical_datum="NAP").read_all()
