"""Versioned writes and provenance: get_item, set(if_version=...), update(), updated_by.

Run against the in-memory backend and every database, through the public accessors.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy.engine import URL

from statestore import (
    NEVER_EXPIRE,
    InactiveAssetError,
    InMemoryStateBackend,
    InvalidTypeError,
    InvalidValueError,
    StateStore,
    TaskScope,
    VersionConflictError,
)

TASK = TaskScope("dag", "run", "task")
WRITER = TaskScope("dag", "run", "writer", 3)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_versions_count_writes_and_items_carry_provenance(store: StateStore) -> None:
    state = store.task_state(TASK)
    assert state.get_item("k") is None
    state.set("k", {"n": 1})
    first = state.get_item("k")
    assert first is not None
    assert (first.value, first.version, first.updated_by) == ({"n": 1}, 1, "worker-1")
    assert first.updated_at.tzinfo is not None
    assert first.expires_at is not None  # the default retention
    state.set("k", {"n": 2}, retention=NEVER_EXPIRE)
    second = state.get_item("k")
    assert second is not None
    assert (second.value, second.version, second.expires_at) == ({"n": 2}, 2, None)
    assert second.updated_at >= first.updated_at
    asset = store.asset_state("orders", updated_by=WRITER)
    asset.set("watermark", "2026-01-01")
    item = asset.get_item("watermark")
    assert item is not None
    assert (item.version, item.updated_by) == (1, "task dag/run/writer[3]")
    assert store.task_state(TASK, updated_by="manual").get_item("k") == second  # reads agree


def test_if_version_writes_only_at_that_version(store: StateStore) -> None:
    for state in (store.task_state(TASK), store.asset_state("orders")):
        state.set("k", "created", if_version=0)
        with pytest.raises(VersionConflictError) as lost:
            state.set("k", "again", if_version=0)
        assert lost.value.current_version == 1
        state.set("k", "second", if_version=1)
        for stale in (1, 3):
            with pytest.raises(VersionConflictError) as info:
                state.set("k", "stale", if_version=stale)
            assert info.value.current_version == 2
        item = state.get_item("k")
        assert item is not None
        assert (item.value, item.version) == ("second", 2)  # the losers wrote nothing
        with pytest.raises(VersionConflictError) as absent:
            state.set("missing", "x", if_version=1)
        assert absent.value.current_version == 0
        assert state.get("missing") is None


def test_an_expired_key_counts_as_absent(store: StateStore) -> None:
    state = store.task_state(TASK)
    with time_machine.travel(T0, tick=False):
        state.set("k", "old", retention=timedelta(hours=1))
    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        assert state.get_item("k") is None
        with pytest.raises(VersionConflictError):
            state.set("k", "x", if_version=1)  # the expired row's version is gone
        state.set("k", "new", if_version=0)
        item = state.get_item("k")
        assert item is not None
        assert item.value == "new"


def test_versioned_asset_writes_keep_the_registry_rules(store: StateStore) -> None:
    with pytest.raises(VersionConflictError) as info:
        store.asset_state("never_seen").set("k", "v", if_version=2)
    assert info.value.current_version == 0
    store.asset_state("brand_new").set("k", "v", if_version=0)  # registers it
    assert store.asset_state("brand_new").get("k") == "v"
    if store.list_assets is not None and not isinstance(store.backend, InMemoryStateBackend):
        store.deactivate_assets("brand_new")
        with pytest.raises(InactiveAssetError):
            store.asset_state("brand_new").set("k", "w", if_version=1)
        assert store.asset_state("brand_new").get("k") == "v"


def test_bad_versions_are_typed_and_write_nothing(store: StateStore) -> None:
    state = store.task_state(TASK)
    for bad, error in ((-1, InvalidValueError), (True, InvalidTypeError), ("1", InvalidTypeError)):
        with pytest.raises(error):
            state.set("k", "v", if_version=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        state.update("k", lambda v: v, retries=-1)
    assert state.get_item("k") is None


THREADS, INCREMENTS = 6, 20


def test_threads_updating_one_counter_lose_nothing(store: StateStore) -> None:
    state = store.task_state(TASK)
    asset = store.asset_state("counters")

    def work() -> None:
        for _ in range(INCREMENTS):
            state.update("n", lambda n: n + 1, default=0, retries=1000)
            asset.update("n", lambda n: n + 1, default=0, retries=1000)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state.get("n") == THREADS * INCREMENTS
    assert asset.get("n") == THREADS * INCREMENTS
    item = asset.get_item("n")
    assert item is not None
    assert item.version == THREADS * INCREMENTS  # one write per increment, none lost


async def test_tasks_updating_one_counter_lose_nothing(store: StateStore) -> None:
    state = store.task_state(TASK)

    async def work() -> None:
        for _ in range(INCREMENTS):
            await state.aupdate("n", lambda n: n + 1, default=0, retries=1000)

    try:
        await asyncio.gather(*(work() for _ in range(THREADS)))
        assert await state.aget("n") == THREADS * INCREMENTS
        item = await state.aget_item("n")
        assert item is not None
        assert item.version == THREADS * INCREMENTS
        with pytest.raises(VersionConflictError):
            await state.aset("n", 0, if_version=1)
    finally:
        await store.aclose()  # async connections belong to this test's loop


def _increment(url: str, times: int) -> None:
    with StateStore(url) as store:
        state = store.asset_state("shared")
        for _ in range(times):
            state.update("n", lambda n: n + 1, default=0, retries=1000)


def test_processes_updating_one_counter_lose_nothing(migrated_url: URL) -> None:
    url = migrated_url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_increment, args=(url, INCREMENTS)) for _ in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [p.exitcode for p in workers] == [0] * 4
    with StateStore(url) as store:
        assert store.asset_state("shared").get("n") == 4 * INCREMENTS


def test_update_gives_up_after_its_retries(store: StateStore) -> None:
    state = store.task_state(TASK)
    state.set("n", 0)

    def meddle(n: int) -> int:
        state.set("n", n + 100)  # someone else writes between the read and the write
        return n + 1

    with pytest.raises(VersionConflictError):
        state.update("n", meddle, retries=2)
    assert state.get("n") == 300  # three attempts, each beaten; none of ours landed
