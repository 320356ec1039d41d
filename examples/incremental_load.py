"""Incremental load: a watermark in asset state carries over from one run to the next.

New rows land in a source table between runs. Each run (a new run id and a new store,
as a scheduler would start it) reads the asset's watermark, loads only the rows updated
after it, and advances the watermark to the newest row it loaded. A run that finds
nothing new loads nothing and leaves the watermark alone.

Run it (default database: a SQLite file in a temporary directory)::

    python examples/incremental_load.py [DATABASE_URL]

A server database must be migrated first: ``statestore --url DATABASE_URL db upgrade``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url

from statestore import StateStore

ASSET = "examples.orders"  # asset state belongs to the asset, not to any run or task
# Rows (updated_at, order id) that land in the source before each daily run.
ARRIVALS: dict[str, list[tuple[str, str]]] = {
    "2026-11-21": [("2026-11-20T09:00", "order-1"), ("2026-11-20T17:30", "order-2")],
    "2026-11-22": [("2026-11-21T08:15", "order-3")],
    "2026-11-23": [],
    "2026-11-24": [("2026-11-23T10:00", "order-4"), ("2026-11-23T23:59", "order-5")],
}


def run(url: str, run_id: str, source: list[tuple[str, str]]) -> list[str]:
    """One scheduled run: load the rows newer than the watermark, then advance it."""
    with StateStore(url) as store:
        state = store.asset_state(ASSET)
        watermark = state.get("watermark")
        new = sorted(row for row in source if watermark is None or row[0] > watermark)
        if new:  # advance only after the rows are loaded: a failed run reloads them
            state.set("watermark", new[-1][0])
        loaded = [order for _, order in new]
        print(f"{run_id}: watermark {watermark} -> {state.get('watermark')}, loaded {loaded}")
        return loaded


def database_url(tmp: str) -> str:
    """argv[1], else $STATESTORE__DATABASE__URL, else a SQLite file in ``tmp``."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("STATESTORE__DATABASE__URL", f"sqlite:///{Path(tmp) / 'example.db'}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url(tmp)
        print(f"database: {make_url(url)!r}")
        with StateStore(url) as store:
            store.asset_state(ASSET).clear()  # start afresh, so the example can be rerun
        source: list[tuple[str, str]] = []
        warehouse: list[str] = []
        for day, rows in ARRIVALS.items():
            source.extend(rows)
            warehouse.extend(run(url, f"scheduled__{day}", source))
    print(f"warehouse: {len(warehouse)} rows, {len(set(warehouse))} distinct")
    if sorted(warehouse) != sorted(order for _, order in source):
        sys.exit("a row was loaded twice or never")


if __name__ == "__main__":
    main()
