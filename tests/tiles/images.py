"""Decoding served images in tests (rasterio's PNG/JPEG drivers)."""

from __future__ import annotations

import warnings

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile


def decode_image(data: bytes) -> np.ndarray:
    """(bands, height, width) array of a PNG/JPEG/WebP."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data) as mem, mem.open() as ds:
            return ds.read()


def image_driver(data: bytes) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data) as mem, mem.open() as ds:
            return ds.driver


__all__ = ["decode_image", "image_driver", "rasterio"]
