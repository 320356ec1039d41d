"""Checkpointing a long loop: the rerun resumes after the last checkpoint.

The loop works through items 1..30 and writes a checkpoint to task state every 5 items
(one write per 5 items instead of one per item). Attempt 1 is interrupted right after
item 13; attempt 2 opens a new store, reads the checkpoint (10 done) and starts at item
11. Only items 11-13 are processed twice: never more than 4, the checkpoint interval
minus one.

Run it (default database: a SQLite file in a temporary directory)::

    python examples/checkpointing.py [DATABASE_URL]

A server database must be migrated first: ``statestore --url DATABASE_URL db upgrade``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from statestore import StateStore, TaskScope

ITEMS, EVERY, INTERRUPT_AFTER = 30, 5, 13


class WorkerStoppedError(Exception):
    """The worker was stopped: pre-empted, killed for memory, redeployed..."""


def attempt(number: int, url: str, scope: TaskScope, processed: list[int]) -> None:
    with StateStore(url) as store:  # a new store per attempt, as in a new worker
        state = store.task_state(scope)
        done = state.get("checkpoint", {"done": 0})["done"]
        print(f"attempt {number} starts at item {done + 1} (checkpoint: {done} done)")
        for item in range(done + 1, ITEMS + 1):
            processed.append(item)  # the real work: load a row, call an API, ...
            if item % EVERY == 0 or item == ITEMS:
                progress = {"done": item, "total": ITEMS}
                state.set("checkpoint", progress, retention=timedelta(days=1))
                print(f"  checkpoint: {item}/{ITEMS} done")
            if number == 1 and item == INTERRUPT_AFTER:
                raise WorkerStoppedError(f"interrupted after item {item}")


def database_url(tmp: str) -> str:
    """argv[1], else $STATESTORE__DATABASE__URL, else a SQLite file in ``tmp``."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("STATESTORE__DATABASE__URL", f"sqlite:///{Path(tmp) / 'example.db'}")


def main() -> None:
    scope = TaskScope("paginated_ingest", f"run-{uuid.uuid4().hex[:8]}", "ingest_items")
    processed: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url(tmp)
        print(f"database: {make_url(url)!r}")
        try:
            attempt(1, url, scope, processed)
        except WorkerStoppedError as exc:
            print(f"attempt 1 {exc}; rerunning")
        attempt(2, url, scope, processed)
    twice = sorted({item for item in processed if processed.count(item) > 1})
    print(f"processed {len(set(processed))} distinct items in {len(processed)} steps")
    print(f"processed twice: {twice} (at most {EVERY - 1} with a checkpoint every {EVERY})")
    if set(processed) != set(range(1, ITEMS + 1)) or len(twice) >= EVERY:
        sys.exit("an item was skipped, or repeated beyond the checkpoint interval")


if __name__ == "__main__":
    main()
