"""Several processes writing one database at once: no error, every value readable."""

from __future__ import annotations

import multiprocessing

from sqlalchemy.engine import URL

from statestore.metastore import MetastoreStateBackend
from statestore.scopes import AssetScope, TaskScope

PROCESSES = 4
WRITES = 150


def _writer(url: str, worker: int) -> None:
    backend = MetastoreStateBackend(url)
    try:
        own = TaskScope("dag", "run", "task", worker)
        shared = TaskScope("dag", "run", "task")
        for i in range(WRITES):
            backend.set(own, f"k{i % 10}", f"{worker}:{i}")
            backend.set(shared, "hot", f"{worker}:{i}")
            backend.set(AssetScope(name="shared_asset"), "cursor", f"{worker}:{i}")
            assert backend.get(own, f"k{i % 10}") == f"{worker}:{i}"
    finally:
        backend.close()


def test_processes_write_concurrently(migrated_url: URL) -> None:
    url = migrated_url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(url, w)) for w in range(PROCESSES)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=240)
    assert [p.exitcode for p in workers] == [0] * PROCESSES

    backend = MetastoreStateBackend(url)
    try:
        for worker in range(PROCESSES):
            scope = TaskScope("dag", "run", "task", worker)
            for k in range(10):
                assert backend.get(scope, f"k{k}") == f"{worker}:{WRITES - 10 + k}"
        last_writes = {f"{w}:{WRITES - 1}" for w in range(PROCESSES)}
        assert backend.get(TaskScope("dag", "run", "task"), "hot") in last_writes
        assert backend.get(AssetScope(name="shared_asset"), "cursor") in last_writes
    finally:
        backend.close()


def _first_use(url: str, worker: int) -> None:
    from statestore import StateStore

    with StateStore(url) as store:
        store.task_state(TaskScope("dag", "run", "task", worker)).set("k", worker)


def test_processes_migrate_a_fresh_sqlite_file_on_first_use(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_first_use, args=(url, w)) for w in range(PROCESSES)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [p.exitcode for p in workers] == [0] * PROCESSES
    backend = MetastoreStateBackend(url)
    try:
        assert [backend.get(TaskScope("dag", "run", "task", w), "k") for w in range(4)] == [
            "0", "1", "2", "3",
        ]  # fmt: skip
    finally:
        backend.close()
