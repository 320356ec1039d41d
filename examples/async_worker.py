"""Async usage: concurrent asyncio tasks share one store through the async twins.

A mapped task fans out over four partitions, each an asyncio task with its own task
state (``map_index`` = partition) that it checkpoints after every page with ``aset``.
Partition 2 fails on page 3 in the first round; the retry reads its checkpoint with
``aget`` and resumes at page 3, so every page is fetched exactly once. At the end the
run is recorded in asset state and the task state of every map index is cleared with
``aclear(all_map_indices=True)``. ``async with`` closes the store's async engine.

Run it (default database: a SQLite file in a temporary directory)::

    python examples/async_worker.py [DATABASE_URL]

A server database must be migrated first: ``statestore --url DATABASE_URL db upgrade``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from statestore import StateStore, TaskScope

PARTITIONS, PAGES, FAILING = 4, 5, (2, 3)  # partition 2 fails on page 3, once
RUN_ID = f"run-{uuid.uuid4().hex[:8]}"
fetched: list[tuple[int, int]] = []  # (partition, page), in the order they were fetched


def scope(partition: int) -> TaskScope:
    return TaskScope("crawl", RUN_ID, "fetch_partition", map_index=partition)


async def fetch_partition(store: StateStore, partition: int, *, retry: bool) -> str:
    state = store.task_state(scope(partition))
    start = await state.aget("last_page", 0) + 1
    for page in range(start, PAGES + 1):
        await asyncio.sleep(0.01)  # the real work: an HTTP request, a query, ...
        if (partition, page) == FAILING and not retry:
            raise ConnectionError(f"partition {partition}: failed on page {page}")
        fetched.append((partition, page))
        await state.aset("last_page", page)  # checkpoint: a retry starts after it
    return f"partition {partition}: fetched pages {start}-{PAGES}"


async def main(url: str) -> None:
    print(f"database: {make_url(url)!r}")
    async with StateStore(url) as store:
        partitions = range(PARTITIONS)
        first = await asyncio.gather(
            *(fetch_partition(store, p, retry=False) for p in partitions), return_exceptions=True
        )
        print("\n".join(f"round 1: {result}" for result in first))
        failed = [p for p, result in enumerate(first) if isinstance(result, Exception)]
        retried = await asyncio.gather(*(fetch_partition(store, p, retry=True) for p in failed))
        print("\n".join(f"round 2 (retry): {result}" for result in retried))
        states = [store.task_state(scope(p)) for p in partitions]
        checkpoints = await asyncio.gather(*(state.aget("last_page") for state in states))
        print(f"checkpoints by map index: {checkpoints}")
        crawl = store.asset_state("examples.crawl")  # outlives the run, unlike task state
        await crawl.aset("last_complete_run", RUN_ID)
        await states[0].aclear(all_map_indices=True)  # the run is done: drop every index
        left = [await state.aget("last_page") for state in states]
        print(f"after aclear(all_map_indices=True): {left}")
        print(f"asset state: last_complete_run = {await crawl.aget('last_complete_run')}")
    print(f"fetch order: {' '.join(f'{p}:{n}' for p, n in fetched[:8])} ... (interleaved)")
    print(f"pages fetched: {len(fetched)}, distinct: {len(set(fetched))}")
    if sorted(fetched) != [(p, n) for p in partitions for n in range(1, PAGES + 1)]:
        sys.exit("a page was fetched twice or never")


def database_url(tmp: str) -> str:
    """argv[1], else $STATESTORE__DATABASE__URL, else a SQLite file in ``tmp``."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("STATESTORE__DATABASE__URL", f"sqlite:///{Path(tmp) / 'example.db'}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(database_url(tmp)))
