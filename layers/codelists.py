"""Code lists kept as data files (land-use codes ...), read without a database."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"


@lru_cache(maxsize=1)
def _land_use_rows() -> tuple[dict, ...]:
    with open(DATA_DIR / "land_use_codes.csv", encoding="utf-8", newline="") as fh:
        return tuple(dict(row) for row in csv.DictReader(fh))


def land_use_codes() -> list[dict]:
    """Land-use codes (code, name_vi, name_en, category, legal_basis)."""
    return [dict(row) for row in _land_use_rows()]
