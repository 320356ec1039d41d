"""Batches: the accessor's validation and limits, and ``BaseStateBackend``'s fallback.

The fallback is what a custom backend without batch methods of its own gets: a loop
over its single-key methods. It must pass the batch conformance suite like any native
implementation, and the accessor must never call the backend for a refused batch.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from statestore import (
    AssetScope,
    BatchTooLargeError,
    InMemoryStateBackend,
    InvalidKeyError,
    InvalidTypeError,
    StateStore,
    TaskScope,
    ValueTooLargeError,
)
from statestore.backends.base import BaseStateBackend
from statestore.config import StateStoreConfig
from statestore.exceptions import ConfigError, InvalidRetentionError
from statestore.items import StoredItem
from statestore.scopes import StateScope
from statestore.testing.batch_conformance import AsyncBatchConformance, BatchConformance

TASK = TaskScope("dag", "run", "task")


class SingleKeyBackend(BaseStateBackend):
    """Only the single-key methods (and versions), over an in-memory backend: every
    batch goes through ``BaseStateBackend``'s fallback. Counts the calls it gets."""

    def __init__(self) -> None:
        self.inner = InMemoryStateBackend()
        self.calls: list[str] = []

    def get(self, scope: StateScope, key: str, *, session: Any = None) -> str | None:
        self.calls.append("get")
        return self.inner.get(scope, key)

    def set(
        self, scope: StateScope, key: str, value: str, *, expires_at: datetime | None = None,
        session: Any = None,
    ) -> None:  # fmt: skip
        self.calls.append("set")
        self.inner.set(scope, key, value, expires_at=expires_at)

    def delete(self, scope: StateScope, key: str, *, session: Any = None) -> None:
        self.calls.append("delete")
        self.inner.delete(scope, key)

    def clear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Any = None
    ) -> None:
        self.inner.clear(scope, all_map_indices=all_map_indices)

    def get_item(self, scope: StateScope, key: str, *, session: Any = None) -> StoredItem | None:
        self.calls.append("get_item")
        return self.inner.get_item(scope, key)

    def set_item(
        self, scope: StateScope, key: str, value: str, *, expires_at: datetime | None = None,
        if_version: int | None = None, updated_by: str | None = None, session: Any = None,
    ) -> None:  # fmt: skip
        self.calls.append("set_item")
        self.inner.set_item(
            scope, key, value, expires_at=expires_at, if_version=if_version, updated_by=updated_by
        )

    async def aget(self, scope: StateScope, key: str, *, session: Any = None) -> str | None:
        self.calls.append("aget")
        return self.get(scope, key)

    async def aset(
        self, scope: StateScope, key: str, value: str, *, expires_at: datetime | None = None,
        session: Any = None,
    ) -> None:  # fmt: skip
        self.set(scope, key, value, expires_at=expires_at)

    async def adelete(self, scope: StateScope, key: str, *, session: Any = None) -> None:
        self.calls.append("adelete")
        self.delete(scope, key)

    async def aclear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Any = None
    ) -> None:
        self.clear(scope, all_map_indices=all_map_indices)

    async def aget_item(
        self, scope: StateScope, key: str, *, session: Any = None
    ) -> StoredItem | None:
        return self.get_item(scope, key)

    async def aset_item(
        self, scope: StateScope, key: str, value: str, *, expires_at: datetime | None = None,
        if_version: int | None = None, updated_by: str | None = None, session: Any = None,
    ) -> None:  # fmt: skip
        self.set_item(
            scope, key, value, expires_at=expires_at, if_version=if_version, updated_by=updated_by
        )


class TestFallbackBatches(BatchConformance):
    @pytest.fixture
    def backend(self) -> SingleKeyBackend:
        return SingleKeyBackend()


class TestFallbackBatchesAsync(AsyncBatchConformance):
    @pytest.fixture
    def backend(self) -> SingleKeyBackend:
        return SingleKeyBackend()


def test_fallback_loops_over_the_single_key_methods() -> None:
    backend = SingleKeyBackend()
    backend.set_many(TASK, [("a", "1"), ("b", "2")], updated_by="me")
    assert backend.get_many(TASK, ["a", "b", "c"]) == {"a": "1", "b": "2"}
    backend.delete_many(TASK, ["a", "c"])
    assert backend.calls == ["set_item", "set_item", "get", "get", "get", "delete", "delete"]
    item = backend.inner.get_item(TASK, "b")
    assert item is not None
    assert (item.value, item.updated_by) == ("2", "me")


@pytest.fixture
def counted() -> tuple[StateStore, SingleKeyBackend]:
    backend = SingleKeyBackend()
    return StateStore(backend=backend), backend


def test_refused_batches_never_reach_the_backend(
    counted: tuple[StateStore, SingleKeyBackend],
) -> None:
    store, backend = counted
    state = store.task_state(TASK)
    refusals: list[tuple[type[Exception], Any]] = [
        (InvalidKeyError, lambda: state.set_many({"ok": 1, "": 2})),
        (InvalidTypeError, lambda: state.set_many({"ok": 1, 3: 2})),  # type: ignore[dict-item]
        (InvalidTypeError, lambda: state.set_many([("a", 1)])),  # type: ignore[arg-type]
        (InvalidTypeError, lambda: state.get_many("abc")),
        (InvalidTypeError, lambda: state.get_many(5)),  # type: ignore[arg-type]
        (InvalidTypeError, lambda: state.get_many([["unhashable"]])),  # type: ignore[list-item]
        (InvalidKeyError, lambda: state.delete_many(["ok", "x" * 513])),
        (InvalidRetentionError, lambda: state.set_many({"a": 1}, retention=timedelta(0))),
        (ValueTooLargeError, lambda: state.set_many({"a": 1, "big": "x" * 70_000})),
    ]
    for error, call in refusals:
        with pytest.raises(error):
            call()
    assert backend.calls == []


def test_the_error_names_the_bad_key(counted: tuple[StateStore, SingleKeyBackend]) -> None:
    state = counted[0].task_state(TASK)
    with pytest.raises(ValueTooLargeError, match=r"^key 'big': value is 70002 bytes") as raised:
        state.set_many({"a": 1, "big": "x" * 70_000})
    assert (raised.value.size, raised.value.limit) == (70_002, 65535)
    with pytest.raises(InvalidKeyError, match=r"^key '': key must not be empty"):
        state.get_many(["a", ""])


def test_empty_batches_cost_nothing(counted: tuple[StateStore, SingleKeyBackend]) -> None:
    store, backend = counted
    state, asset = store.task_state(TASK), store.asset_state(AssetScope(name="a"))
    for accessor in (state, asset):
        assert accessor.get_many([]) == {}
        assert accessor.get_items(iter(())) == {}
        accessor.set_many({})
        accessor.delete_many(())
    assert backend.calls == []


def test_duplicate_keys_count_once(counted: tuple[StateStore, SingleKeyBackend]) -> None:
    store, backend = counted
    state = store.task_state(TASK)
    state.set_many({"a": 1, "b": 2})
    backend.calls.clear()
    assert state.get_many(["b", "a", "b", "a"]) == {"b": 2, "a": 1}
    assert backend.calls == ["get", "get"]
    limited = StateStore(
        config=StateStoreConfig(state_store={"max_batch_keys": 2}), backend=InMemoryStateBackend()
    )
    assert limited.task_state(TASK).get_many(["a", "b", "a", "b"]) == {}  # 2 distinct keys
    with pytest.raises(BatchTooLargeError) as raised:
        limited.task_state(TASK).get_many(["a", "b", "c"])
    assert (raised.value.size, raised.value.limit, raised.value.unit) == (3, 2, "keys")


def test_byte_limit_counts_keys_and_encoded_values() -> None:
    store = StateStore(
        config=StateStoreConfig(state_store={"max_batch_bytes": 20}), backend=InMemoryStateBackend()
    )
    state = store.task_state(TASK)
    state.set_many({"ab": "é" * 7, "c": 1})  # 2 + 16 ('"ééééééé"' in UTF-8) + 1 + 1 == 20
    with pytest.raises(BatchTooLargeError, match="max_batch_bytes") as raised:
        state.set_many({"ab": "é" * 7, "cd": 2})
    assert (raised.value.size, raised.value.limit, raised.value.unit) == (21, 20, "bytes")
    assert state.get_many(["ab", "c", "cd"]) == {"ab": "é" * 7, "c": 1}


def test_limits_are_validated_settings() -> None:
    for bad in ({"max_batch_keys": 0}, {"max_batch_keys": 5001}, {"max_batch_bytes": -1}):
        with pytest.raises(ConfigError):
            StateStoreConfig(state_store=bad)
    settings = StateStoreConfig().state_store
    assert (settings.max_batch_keys, settings.max_batch_bytes) == (1000, 16 * 1024 * 1024)
    assert StateStoreConfig(state_store={"max_batch_bytes": 0}).state_store.max_batch_bytes == 0


def test_asset_shorthands_batch_the_one_declared_asset() -> None:
    from statestore import AssetStateAccessors

    store = StateStore(backend=InMemoryStateBackend())
    only = AssetStateAccessors(outlets=[AssetScope(name="orders")], store=store)
    only.set_many({"a": 1, "b": 2})
    assert only.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    assert {k: i.version for k, i in only.get_items(["a"]).items()} == {"a": 1}
    only.delete_many(["a"])
    assert store.asset_state(AssetScope(name="orders")).get_many(["a", "b"]) == {"b": 2}


async def test_async_accessor_batches_round_trip() -> None:
    store = StateStore(backend=InMemoryStateBackend())
    state = store.task_state(TASK)
    await state.aset_many({"a": [1], "b": {"c": 2}}, retention=timedelta(hours=1))
    assert await state.aget_many(["b", "a"]) == {"b": {"c": 2}, "a": [1]}
    items = await state.aget_items(["a"])
    assert items["a"].value == [1]
    assert items["a"].expires_at is not None
    await state.adelete_many(["a"])
    assert await state.aget_many(["a", "b"]) == {"b": {"c": 2}}
