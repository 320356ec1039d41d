"""A store used before ``fork()``: the parent and a fork pool's workers share it safely.

The parent writes a watermark, then a ``multiprocessing`` pool started with ``fork``
(as Celery prefork, gunicorn or Airflow's LocalExecutor do) uses the very same store
object, inherited from the parent, while the parent keeps using it too. Each worker
writes and reads back its own partition's progress; every read must be that process's
own write. Afterwards the parent reads everything the workers wrote, through the
connections it had before the fork.

Run it (default database: a SQLite file in a temporary directory)::

    python examples/fork_pool.py [DATABASE_URL]

A server database must be migrated first: ``statestore --url DATABASE_URL db upgrade``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
from pathlib import Path

from statestore import StateStore, TaskScope

RUN = "run-2026-12-01"
PARTITIONS, WRITES = 6, 50

url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{Path(tempfile.mkdtemp()) / 's.db'}"
store = StateStore(url)  # module level: a fork pool's workers inherit it as it is


def load_partition(partition: int) -> tuple[int, int, int]:
    """Write progress WRITES times and read each write back; count wrong reads."""
    state = store.task_state(TaskScope("export", RUN, "load", map_index=partition))
    wrong = 0
    for done in range(1, WRITES + 1):
        progress = {"partition": partition, "done": done, "pid": os.getpid()}
        state.set("progress", progress)
        wrong += state.get("progress") != progress
    return partition, os.getpid(), wrong


def main() -> int:
    watermark = store.asset_state("orders")
    watermark.set("watermark", "2026-11-30")  # the parent's connection is open now
    print(f"parent {os.getpid()}: watermark = {watermark.get('watermark')}")
    with multiprocessing.get_context("fork").Pool(3) as pool:
        pending = pool.map_async(load_partition, range(PARTITIONS))
        for day in range(1, 31):  # the parent keeps working while the children do
            watermark.set("watermark", f"2026-12-{day:02d}")
            assert watermark.get("watermark") == f"2026-12-{day:02d}"
        results = pending.get(timeout=120)
    workers = {pid for _, pid, _ in results}
    wrong = sum(count for _, _, count in results)
    print(f"{PARTITIONS} partitions in {len(workers)} forked workers: {wrong} wrong reads")
    done = [
        store.task_state(TaskScope("export", RUN, "load", map_index=p)).get("progress")["done"]
        for p in range(PARTITIONS)
    ]
    print(f"parent reads every partition's progress: {done}")
    print(f"parent: watermark = {watermark.get('watermark')}")
    store.close()
    ok = wrong == 0 and done == [WRITES] * PARTITIONS and os.getpid() not in workers
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
