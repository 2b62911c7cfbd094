"""The cost of recording an edit: layers.catalogue.bump_version with a LayerChange (incremental)
vs without one (a full recount of the layer), on a parcel table grown to N rows.

Run: .venv/bin/python bench/tiles_invalidation.py [--parcels 300000] [--rounds 7]
The demo neighbourhood (6.6k parcels) is copied, shifted by whole blocks, until the table holds
about N parcels; then each variant runs ``rounds`` times in a rolled-back transaction (median).
"""

from __future__ import annotations

import argparse
import statistics
import time

from tiles_common import demo_database


def grow_parcels(engine, target: int) -> int:
    """Copy the current parcels, shifted 3 km east per copy, until there are about ``target``."""
    from sqlalchemy import func, insert, literal, select

    from gisserver import schema

    p = schema.parcel
    with engine.begin() as conn:
        base = conn.execute(select(func.count()).select_from(p)).scalar()
        copies = max(0, target // base - 1)
        cols = [c for c in p.c if c.name not in ("id", "sheet_no", "geom", "geom_3857") and c.computed is None]
        for k in range(1, copies + 1):
            shifted = func.ST_Translate(p.c.geom, literal(3000.0 * k), literal(0.0))
            # parcel numbers are unique among current parcels: each copy on its own map sheets
            conn.execute(insert(p).from_select(
                [c.name for c in cols] + ["sheet_no", "geom"],
                select(*cols, p.c.sheet_no + 1000 * k, shifted).where(p.c.id <= base, p.c.end_lifespan.is_(None)),
            ))
        total = conn.execute(select(func.count()).select_from(p)).scalar()
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE parcel")
        conn.commit()
    return total


def timed(engine, rounds: int, change) -> float:
    """Median ms of one bump_version, each in a transaction that is rolled back."""
    from layers.catalogue import bump_version

    spent = []
    for _ in range(rounds):
        with engine.connect() as conn:
            trans = conn.begin()
            start = time.perf_counter()
            bump_version(conn, "parcels", change)
            spent.append((time.perf_counter() - start) * 1000)
            trans.rollback()
    return statistics.median(spent)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parcels", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from layers.catalogue import LayerChange

    with demo_database() as (_url, engine):
        total = grow_parcels(engine, args.parcels)
        edit = LayerChange(added=2, removed=1, bbox=(603480.0, 1191450.0, 603520.0, 1191490.0))
        full, incremental = [], []
        for _ in range(2):  # interleaved, so that load changes hit both alike
            full.append(timed(engine, args.rounds, None))
            incremental.append(timed(engine, args.rounds, edit))
    t_full, t_inc = statistics.median(full), statistics.median(incremental)
    print(f"parcels table: {total} rows")
    print(f"bump_version, full recount (baseline) : {t_full:8.1f} ms")
    print(f"bump_version, LayerChange (an edit)   : {t_inc:8.1f} ms  ratio {t_inc / t_full:.3f}x")


if __name__ == "__main__":
    main()
