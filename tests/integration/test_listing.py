"""Listing keys and items: key order, prefixes, pages, expiry, flat memory.

Against the in-memory backend and every database, through the public accessors.
"""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy import create_engine, insert
from sqlalchemy.engine import URL

from statestore import (
    NEVER_EXPIRE,
    InvalidKeyError,
    InvalidTypeError,
    InvalidValueError,
    StateStore,
    TaskScope,
)
from statestore.metastore.digests import task_digest, task_row_id
from statestore.metastore.tables import task_state

TASK = TaskScope("dag", "run", "task")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
# Code point order, the same on every database: "B" < "a" < "é" < "😀".
KEYS = ["a", "a/1", "a/2", "a/10", "B", "b", "b/x", "é", "😀", "k ", "k"]


def test_keys_and_items_in_code_point_order_with_prefix(store: StateStore) -> None:
    for state in (store.task_state(TASK), store.asset_state("orders")):
        for n, key in enumerate(KEYS):
            state.set(key, {"n": n})
        store.task_state(TaskScope("dag", "run", "task", 0)).set("other", 1)  # not listed
        assert list(state.keys()) == sorted(KEYS)
        assert list(state.keys(prefix="a/")) == ["a/1", "a/10", "a/2"]
        assert list(state.keys(prefix="zzz")) == []
        assert dict(state.items(prefix="b")) == {"b": {"n": 5}, "b/x": {"n": 6}}
        assert list(state.keys(page_size=2)) == sorted(KEYS)  # pages join seamlessly
        assert [k for k, _ in state.items(page_size=3)] == sorted(KEYS)


def test_expired_keys_are_not_listed(store: StateStore) -> None:
    state = store.task_state(TASK)
    with time_machine.travel(T0, tick=False):
        state.set("short", 1, retention=timedelta(hours=1))
        state.set("long", 2, retention=NEVER_EXPIRE)
        assert list(state.keys()) == ["long", "short"]
    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        assert list(state.keys()) == ["long"]
        assert list(state.items()) == [("long", 2)]


async def test_async_listing(store: StateStore) -> None:
    state = store.asset_state("orders")
    try:
        for key in KEYS:
            await state.aset(key, key)
        assert [k async for k in state.akeys(page_size=4)] == sorted(KEYS)
        assert [kv async for kv in state.aitems(prefix="a/")] == [
            ("a/1", "a/1"),
            ("a/10", "a/10"),
            ("a/2", "a/2"),
        ]
    finally:
        await store.aclose()


def test_bad_listing_arguments_are_typed(store: StateStore) -> None:
    state = store.task_state(TASK)
    with pytest.raises(InvalidValueError):
        list(state.keys(page_size=0))
    with pytest.raises(InvalidTypeError):
        list(state.keys(prefix=3))  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        list(state.keys(prefix="a\x00"))


ROWS = 100_000


def test_listing_100k_keys_keeps_memory_flat(migrated_url: URL) -> None:
    now = datetime.now(timezone.utc)
    engine = create_engine(migrated_url)
    try:
        with engine.begin() as conn:  # bulk-loaded: 100k single writes take minutes
            for start in range(0, ROWS, 10_000):
                conn.execute(
                    insert(task_state),
                    [
                        {"row_id": task_row_id(TASK, f"k{i:06d}"), "task_digest": task_digest(TASK),
                         "dag_id": "dag", "run_id": "run", "task_id": "task", "map_index": -1,
                         "key": f"k{i:06d}", "value": '"x"', "expires_at": None,
                         "updated_at": now, "version": 1}
                        for i in range(start, start + 10_000)
                    ],
                )  # fmt: skip
    finally:
        engine.dispose()
    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        state = store.task_state(TASK)
        tracemalloc.start()
        try:
            count, last = 0, ""
            for key in state.keys(page_size=1000):
                assert key > last
                count, last = count + 1, key
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == ROWS
    assert peak < 8 * 1024 * 1024, f"listing peaked at {peak / 2**20:.1f} MiB"
