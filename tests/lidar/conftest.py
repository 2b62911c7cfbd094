"""Shared fixtures for the LiDAR tests: the real AHN3 Delft file, read once."""

from __future__ import annotations

import laspy
import numpy as np
import pytest
from laspy.vlrs.known import GeoKeyDirectoryVlr, GeoKeyEntryStruct

from lidar.io import open_cloud

AHN3 = "lidar/ahn3_delft_urban.laz"
RD_NEW = "EPSG:28992"
#: the AHN3 crop moved into Quận 8 (VN-2000 / TM-3 105°45') for tests that need city coordinates
RELOCATE = (596_000.0 - 85_000.0, 1_186_000.0 - 447_400.0)


@pytest.fixture(scope="session")
def ahn3_path(shared_data):
    return shared_data / AHN3


@pytest.fixture(scope="session")
def ahn3_points(ahn3_path):
    """All points of the AHN3 crop in RD New (the file has no CRS VLR: it is declared)."""
    return open_cloud(ahn3_path, crs=RD_NEW, vertical_datum="NAP").read_all()


@pytest.fixture(scope="session")
def relocated_las(ahn3_path, tmp_path_factory):
    """The real AHN3 points shifted into HCMC and tagged EPSG:9210 (GeoTIFF key), as a LAS 1.2 file.

    No city LiDAR is public: this places a real urban cloud in real city coordinates (heights
    unchanged) so catalogue, index and building storage run on the city CRS.
    """
    las = laspy.read(ahn3_path)
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales = las.header.scales
    header.offsets = np.array([RELOCATE[0] + 85_000.0, RELOCATE[1] + 447_000.0, 0.0])
    geo = GeoKeyDirectoryVlr()
    geo.geo_keys_header.number_of_keys = 1
    geo.geo_keys = [GeoKeyEntryStruct(3072, 0, 1, 9210)]
    header.vlrs.append(geo)
    out = laspy.LasData(header)
    out.x = np.asarray(las.x) + RELOCATE[0]
    out.y = np.asarray(las.y) + RELOCATE[1]
    out.z = np.asarray(las.z)
    for name in ("intensity", "return_number", "number_of_returns", "classification"):
        setattr(out, name, getattr(las, name))
    path = tmp_path_factory.mktemp("relocated") / "ahn3_in_q8.las"
    out.write(path)
    return path
