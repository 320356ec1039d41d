"""``store.task_state(TaskScope(...)).get(k)``: an accessor built per call, cheaply.

The store keeps the settings its first task accessor resolved (plain values) and builds
later ones from them; these tests check that such accessors are the same as ones built
the long way, that a closed store still refuses, and that the store keeps no accessor
itself -- one would reference the store, a cycle that keeps a dropped store (and its
connections) alive until the garbage collector runs.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from statestore import (
    InMemoryStateBackend,
    InvalidTypeError,
    StateStore,
    StateStoreConfig,
    StoreClosedError,
    TaskScope,
)
from statestore.accessors import TaskStateAccessor

SCOPE = TaskScope("dag", "run", "task")


@pytest.fixture
def store() -> Iterator[StateStore]:
    config = StateStoreConfig(state_store={"default_retention_days": 3, "max_value_bytes": 64})
    with StateStore(backend=InMemoryStateBackend(), config=config, updated_by="me") as built:
        yield built


def test_an_inline_accessor_is_the_one_built_the_long_way(store: StateStore) -> None:
    first = store.task_state(SCOPE)
    second = store.task_state(TaskScope("dag", "run", "task"))
    long_way = TaskStateAccessor(SCOPE, store=store)
    assert first == second == long_way
    assert hash(first) == hash(second) == hash(long_way)
    for accessor in (first, second):
        assert (accessor._max_bytes, accessor._retention_days, accessor._updated_by) == (
            64, 3, "me",
        )  # fmt: skip
    second.set("k", 1)
    assert first.get("k") == 1
    item = store.task_state("dag", "run", "task").get_item("k")
    assert item is not None
    assert item.updated_by == "me"
    assert item.expires_at is not None


def test_an_explicit_writer_is_checked_and_kept(store: StateStore) -> None:
    store.task_state(SCOPE)
    named = store.task_state(SCOPE, updated_by="other")
    assert named._updated_by == "other"
    with pytest.raises(InvalidTypeError):
        store.task_state(SCOPE, updated_by=5)
    assert store.task_state(SCOPE)._updated_by == "me"


def test_a_closed_store_still_refuses_new_accessors(store: StateStore) -> None:
    store.task_state(SCOPE).set("k", 1)
    store.close()
    with pytest.raises(StoreClosedError):
        store.task_state(SCOPE)


def test_a_dropped_store_is_freed_without_the_garbage_collector() -> None:
    gc.disable()
    try:
        built = StateStore(backend=InMemoryStateBackend())
        for _ in range(3):
            built.task_state(SCOPE).set("k", 1)
            built.asset_state("orders").set("k", 1)
        ref = weakref.ref(built)
        del built
        assert ref() is None
    finally:
        gc.enable()
