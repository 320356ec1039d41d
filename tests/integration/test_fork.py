"""A store used before ``fork()`` keeps working in the parent and in every child.

Fork pools (multiprocessing, Celery prefork, gunicorn, Airflow's LocalExecutor) copy the
parent's open connections into each child. Sharing one would interleave two processes'
statements on one server session, so each would read the other's rows; closing one in
the child would end the parent's session. Every read here is checked against what the
reading process itself wrote.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import URL

from statestore import StateStore, TaskScope

pytestmark = [
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

OPS = 150
_INHERITED: dict[str, StateStore] = {}  # the parent's store, inherited by forked children


def _scope(owner: str) -> TaskScope:
    return TaskScope("fork_dag", "run", owner)


def _round_trips(store: StateStore, owner: str, ops: int) -> list[str]:
    """Write and read back ``ops`` values of this owner's own; return every mismatch."""
    state = store.task_state(_scope(owner))
    wrong = []
    for i in range(ops):
        value = {"owner": owner, "i": i}
        state.set("k", value)
        got = state.get("k")
        if got != value:
            wrong.append(f"{owner} wrote {value} read {got}")
    return wrong


def _child_work(index: int) -> list[str]:
    return _round_trips(_INHERITED["store"], f"child-{index}-{os.getpid()}", OPS)


def _child_async_work(index: int) -> list[str]:
    store = _INHERITED["store"]

    async def run() -> list[str]:
        state = store.task_state(_scope(f"achild-{index}"))
        wrong = []
        for i in range(OPS // 3):
            await state.aset("k", i)
            if (got := await state.aget("k")) != i:
                wrong.append(f"achild-{index} wrote {i} read {got}")
        return wrong

    return asyncio.run(run())


@pytest.fixture
def parent_store(migrated_url: URL) -> Iterator[StateStore]:
    store = StateStore(migrated_url.render_as_string(hide_password=False))
    # Used before the fork: the hot path's idle connection, the pool, an async engine.
    assert _round_trips(store, "parent-before", 10) == []

    async def warm() -> None:
        await store.task_state(_scope("parent-async")).aset("k", 1)

    asyncio.run(warm())
    _INHERITED["store"] = store
    try:
        yield store
    finally:
        _INHERITED.clear()
        store.close()


@pytest.mark.slow
def test_parent_and_forked_children_at_once_each_read_their_own_writes(
    parent_store: StateStore,
) -> None:
    parent_wrong: list[str] = []
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        pending = pool.map_async(_child_work, range(6))
        # The parent keeps using the very connections the children inherited.
        worker = threading.Thread(
            target=lambda: parent_wrong.extend(_round_trips(parent_store, "parent", OPS))
        )
        worker.start()
        results = pending.get(timeout=120)
        worker.join(timeout=120)
    assert not worker.is_alive()
    assert parent_wrong == []
    assert [wrong for wrong in results if wrong] == []
    # What every process wrote last is there, side by side.
    assert parent_store.task_state(_scope("parent")).get("k") == {"owner": "parent", "i": OPS - 1}


@pytest.mark.slow
def test_async_use_in_forked_children(parent_store: StateStore) -> None:
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        results = pool.map(_child_async_work, range(2), chunksize=1)
    assert results == [[], []]
    for index in range(2):
        assert parent_store.task_state(_scope(f"achild-{index}")).get("k") == OPS // 3 - 1
    assert _round_trips(parent_store, "parent-after-async", 20) == []


def test_a_child_that_used_the_store_alone_leaves_the_parent_working(
    parent_store: StateStore,
) -> None:
    pid = os.fork()
    if pid == 0:  # the child: use the store hard, then exit without cleanup
        code = 0
        try:
            code = 1 if _round_trips(parent_store, "lone-child", 30) else 0
            parent_store.close()  # must not end the parent's sessions either
        except BaseException:  # noqa: BLE001 - any failure is the child's exit code
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _round_trips(parent_store, "parent-after-child", 30) == []
    lone = parent_store.task_state(_scope("lone-child")).get("k")
    assert lone == {"owner": "lone-child", "i": 29}
