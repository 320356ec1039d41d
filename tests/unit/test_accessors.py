"""Accessors: behaviour, validation before I/O, retention, and the async twins."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine

from statestore import (
    NEVER_EXPIRE,
    AmbiguousAssetError,
    AssetScope,
    AssetStateAccessor,
    AssetStateAccessors,
    StateStore,
    StateStoreConfig,
    TaskScope,
    TaskStateAccessor,
    UndeclaredAssetError,
)
from statestore.exceptions import (
    InvalidKeyError,
    InvalidRetentionError,
    InvalidTypeError,
    InvalidValueError,
    UnserializableValueError,
    ValueTooLargeError,
)
from tests.unit.recording import RecordingBackend

SCOPE = TaskScope("dag", "run", "task")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


def make_store(backend: RecordingBackend, **state_store: Any) -> StateStore:
    return StateStore(backend=backend, config=StateStoreConfig(state_store=state_store))


@pytest.fixture
def store(backend: RecordingBackend) -> StateStore:
    return make_store(backend, max_value_bytes=100, default_retention_days=30)


def test_task_state_round_trip(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    assert state.scope == SCOPE
    assert state.get("k") is None
    assert state.get("k", "fallback") == "fallback"
    state.set("k", {"rows": 3})
    assert state.get("k") == {"rows": 3}
    assert state.get("k", "fallback") == {"rows": 3}
    state.delete("k")
    state.delete("k")
    assert state.get("k") is None


def test_falsy_values_are_not_defaults(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    falsy: list[object] = [0, "", False, [], {}, 0.0]
    for value in falsy:
        state.set("k", value)
        assert state.get("k", "default") == value


def test_clear_this_index_or_all(store: StateStore) -> None:
    indices = [store.task_state(TaskScope("dag", "run", "task", i)) for i in range(3)]
    for accessor in indices:
        accessor.set("k", 1)
    indices[0].clear()
    assert [a.get("k") for a in indices] == [None, 1, 1]
    indices[1].clear(all_map_indices=True)
    assert [a.get("k") for a in indices] == [None, None, None]


BAD_KEYS: list[tuple[object, type[Exception]]] = [
    (1, InvalidTypeError), (None, InvalidTypeError), (b"k", InvalidTypeError),
    ("", InvalidKeyError), ("k" * 513, InvalidKeyError), ("a\x00", InvalidKeyError),
]  # fmt: skip


@pytest.mark.parametrize(("key", "error"), BAD_KEYS)
def test_bad_keys_rejected_before_io(
    store: StateStore, backend: RecordingBackend, key: Any, error: type[Exception]
) -> None:
    task, asset = store.task_state(SCOPE), store.asset_state("a")
    for call in (
        lambda: task.get(key), lambda: task.set(key, 1), lambda: task.delete(key),
        lambda: asset.get(key), lambda: asset.set(key, 1), lambda: asset.delete(key),
    ):  # fmt: skip
        with pytest.raises(error):
            call()
    assert backend.calls == []


@pytest.mark.parametrize(("key", "error"), BAD_KEYS)
async def test_bad_keys_rejected_before_io_async(
    store: StateStore, backend: RecordingBackend, key: Any, error: type[Exception]
) -> None:
    task = store.task_state(SCOPE)
    with pytest.raises(error):
        await task.aget(key)
    with pytest.raises(error):
        await task.aset(key, 1)
    with pytest.raises(error):
        await task.adelete(key)
    assert backend.calls == []


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (None, InvalidValueError),
        (math.nan, InvalidValueError),
        ({"a": b"x"}, UnserializableValueError),
        ((1, 2), UnserializableValueError),
        ("x" * 200, ValueTooLargeError),
    ],
)
def test_bad_values_write_nothing(
    store: StateStore, backend: RecordingBackend, value: Any, error: type[Exception]
) -> None:
    store.task_state(SCOPE).set("k", "before")
    backend.calls.clear()
    with pytest.raises(error):
        store.task_state(SCOPE).set("k", value)
    with pytest.raises(error):
        store.asset_state("a").set("k", value)
    assert backend.calls == []
    assert store.task_state(SCOPE).get("k") == "before"


@pytest.mark.parametrize(
    ("retention", "error"),
    [
        (7, InvalidTypeError),
        ("7", InvalidTypeError),
        (True, InvalidTypeError),
        (timedelta(0), InvalidRetentionError),
        (timedelta(days=-1), InvalidRetentionError),
    ],
)
async def test_bad_retention_writes_nothing(
    store: StateStore, backend: RecordingBackend, retention: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.task_state(SCOPE).set("k", 1, retention=retention)
    with pytest.raises(error):
        await store.task_state(SCOPE).aset("k", 1, retention=retention)
    assert backend.calls == []


def test_retention_becomes_expires_at(store: StateStore, backend: RecordingBackend) -> None:
    state = store.task_state(SCOPE)
    with time_machine.travel(T0, tick=False):
        state.set("six_hours", 1, retention=timedelta(hours=6))
        state.set("default", 1)
        state.set("never", 1, retention=NEVER_EXPIRE)
    written = {args[0]: args[2] for name, _, args in backend.calls if name == "set"}
    assert written == {
        "six_hours": T0 + timedelta(hours=6),
        "default": T0 + timedelta(days=30),
        "never": None,
    }


def test_default_retention_zero_means_never(backend: RecordingBackend) -> None:
    store = make_store(backend, default_retention_days=0)
    store.task_state(SCOPE).set("k", 1)
    assert backend.calls[-1][2][2] is None


def test_expired_keys_read_as_absent_without_cleanup(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    with time_machine.travel(T0, tick=False):
        state.set("short", 1, retention=timedelta(hours=1))
        state.set("default", 1)
        state.set("never", 1, retention=NEVER_EXPIRE)
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        assert state.get("short") == 1  # expires_at == now: not yet passed
    with time_machine.travel(T0 + timedelta(hours=1, microseconds=1), tick=False):
        assert state.get("short") is None
        assert state.get("default") == 1
    with time_machine.travel(T0 + timedelta(days=31), tick=False):
        assert state.get("default") is None
    with time_machine.travel(datetime(2999, 1, 1, tzinfo=timezone.utc), tick=False):
        assert state.get("never") == 1


async def test_async_twins_only_call_async_methods(
    store: StateStore, backend: RecordingBackend
) -> None:
    task = store.task_state(SCOPE)
    asset = store.asset_state("a")
    await task.aset("k", [1])
    assert await task.aget("k") == [1]
    assert await task.aget("missing", 0) == 0
    await task.adelete("k")
    await task.aclear(all_map_indices=True)
    await asset.aset("k", "v")
    assert await asset.aget("k") == "v"
    await asset.adelete("k")
    await asset.aclear()
    assert all(name.startswith("a") for name in backend.methods)
    assert len(backend.methods) == 9


def test_sync_methods_only_call_sync_methods(store: StateStore, backend: RecordingBackend) -> None:
    task = store.task_state(SCOPE)
    task.set("k", 1)
    task.get("k")
    task.delete("k")
    task.clear()
    assert backend.methods == ["set", "get", "delete", "clear"]


def test_asset_state_has_no_retention(store: StateStore, backend: RecordingBackend) -> None:
    asset = store.asset_state(AssetScope(name="a", uri="s3://a"))
    asset.set("wm", "2026-01-01")
    assert backend.calls[-1][2][2] is None
    with pytest.raises(TypeError):
        asset.set("wm", "x", retention=timedelta(days=1))  # type: ignore[call-arg]
    assert asset.get("wm") == "2026-01-01"
    asset.clear()
    assert asset.get("wm") is None


def test_accessor_type_checks(store: StateStore) -> None:
    with pytest.raises(InvalidTypeError):
        TaskStateAccessor("not a scope", store=store)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        AssetStateAccessor(42, store=store)


@dataclass
class Asset:
    """Shaped like Airflow's Asset: name and uri attributes."""

    name: str
    uri: str


ORDERS = Asset("orders", "s3://b/orders")
USERS = Asset("users", "s3://b/users")


def test_asset_accessors_subscript_by_any_reference(store: StateStore) -> None:
    accessors = store.asset_states(inlets=[ORDERS], outlets=[ORDERS, USERS])
    assert len(accessors) == 2  # orders declared twice counts once
    accessors[ORDERS].set("wm", 1)
    assert accessors["orders"].get("wm") == 1
    assert accessors[AssetScope(uri="s3://b/orders")].get("wm") == 1
    assert accessors[Asset("orders", "s3://elsewhere")].get("wm") == 1
    assert ORDERS in accessors
    assert "nope" not in accessors
    assert [s.name for s in accessors] == ["orders", "users"]


def test_outlets_only_assets_work(store: StateStore) -> None:
    accessors = AssetStateAccessors(outlets=[USERS], store=store)
    accessors[USERS].set("cursor", 10)
    assert accessors.get("cursor") == 10


def test_undeclared_asset_is_key_error_naming_declared(store: StateStore) -> None:
    accessors = store.asset_states(inlets=[ORDERS], outlets=[USERS])
    with pytest.raises(UndeclaredAssetError) as info:
        accessors["payments"]
    assert isinstance(info.value, KeyError)
    assert "orders" in str(info.value)
    assert "users" in str(info.value)


async def test_shorthand_with_exactly_one_asset(store: StateStore) -> None:
    one = store.asset_states(inlets=[ORDERS])
    one.set("wm", 1)
    assert one.get("wm") == 1
    assert one.get("missing", 5) == 5
    await one.aset("wm", 2)
    assert await one.aget("wm") == 2
    await one.adelete("wm")
    assert one.get("wm") is None
    one.set("x", 1)
    one.clear()
    assert one.get("x") is None
    await one.aset("x", 1)
    await one.aclear()
    one.delete("x")
    for declared in ([], [ORDERS, USERS]):
        accessors = store.asset_states(inlets=declared)
        with pytest.raises(AmbiguousAssetError) as info:
            accessors.get("wm")
        assert isinstance(info.value, ValueError)
        with pytest.raises(ValueError, match="subscript"):
            await accessors.aset("wm", 1)
