"""Accessors: behaviour, validation before I/O, retention, and the async twins."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
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
from tests.unit.recording import ForbiddenCallError, RecordingBackend

SCOPE = TaskScope("dag", "run", "task")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
LIMIT = 100


@pytest.fixture
def backend() -> RecordingBackend:
    return RecordingBackend()


def make_store(backend: RecordingBackend, **state_store: Any) -> StateStore:
    return StateStore(backend=backend, config=StateStoreConfig(state_store=state_store))


@pytest.fixture
def store(backend: RecordingBackend) -> StateStore:
    return make_store(backend, max_value_bytes=LIMIT, default_retention_days=30)


@dataclass(frozen=True)
class Asset:
    """Shaped like Airflow's Asset: name and uri attributes."""

    name: str
    uri: str


ORDERS = Asset("orders", "s3://b/orders")
USERS = Asset("users", "s3://b/users")


# -- task state -----------------------------------------------------------------------------


def test_task_state_round_trip(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    assert state.scope == SCOPE
    assert state.get("k") is None
    assert state.get("k", "fallback") == "fallback"
    state.set("k", {"rows": 3})
    assert state.get("k") == {"rows": 3}
    assert state.get("k", "fallback") == {"rows": 3}
    state.set("k", [1])  # last writer wins
    assert state.get("k") == [1]
    state.delete("k")
    state.delete("k")  # missing: a no-op
    assert state.get("k") is None


async def test_task_state_round_trip_async(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    assert await state.aget("k") is None
    assert await state.aget("k", 7) == 7
    await state.aset("k", {"rows": 3})
    assert await state.aget("k") == {"rows": 3}
    await state.adelete("k")
    await state.adelete("k")
    assert await state.aget("k", "gone") == "gone"


def test_falsy_values_are_not_defaults(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    falsy: list[object] = [0, "", False, [], {}, 0.0]
    for value in falsy:
        state.set("k", value)
        got = state.get("k", "default")
        assert got == value
        assert type(got) is type(value)


def test_clear_this_index_or_all(store: StateStore) -> None:
    indices = [store.task_state(TaskScope("dag", "run", "task", i)) for i in (-1, 0, 1)]
    other = store.task_state(TaskScope("dag", "run", "other"))
    for accessor in [*indices, other]:
        accessor.set("k", 1)
    indices[1].clear()
    assert [a.get("k") for a in indices] == [1, None, 1]
    indices[2].clear(all_map_indices=True)
    assert [a.get("k") for a in indices] == [None, None, None]
    assert other.get("k") == 1


async def test_aclear_this_index_or_all(store: StateStore, backend: RecordingBackend) -> None:
    indices = [store.task_state(TaskScope("dag", "run", "task", i)) for i in (0, 1)]
    for accessor in indices:
        await accessor.aset("k", 1)
    await indices[0].aclear()
    assert [await a.aget("k") for a in indices] == [None, 1]
    await indices[0].aclear(all_map_indices=True)
    assert [await a.aget("k") for a in indices] == [None, None]
    assert [d for name, _, d in backend.calls if name == "aclear"] == [False, True]


def test_accessor_type_checks(store: StateStore) -> None:
    with pytest.raises(InvalidTypeError):
        TaskStateAccessor("not a scope", store=store)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        TaskStateAccessor(AssetScope(name="a"), store=store)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        AssetStateAccessor(42, store=store)


# -- asset state ----------------------------------------------------------------------------


def test_asset_state_round_trip_and_no_retention(
    store: StateStore, backend: RecordingBackend
) -> None:
    asset = store.asset_state(AssetScope(name="a", uri="s3://a"))
    task = store.task_state(SCOPE)
    task.set("wm", "task")
    asset.set("wm", "2026-01-01")
    assert backend.writes[-1][4] is None  # asset state never expires
    with pytest.raises(TypeError):
        asset.set("wm", "x", retention=timedelta(days=1))  # type: ignore[call-arg]
    assert asset.get("wm") == "2026-01-01"
    assert store.asset_state("a").get("wm") == "2026-01-01"
    assert asset.get("missing", 0) == 0
    asset.clear()
    assert asset.get("wm") is None
    assert task.get("wm") == "task"  # clearing an asset never touches task state


async def test_asset_state_round_trip_async(store: StateStore) -> None:
    asset = store.asset_state("a")
    await asset.aset("wm", 5)
    assert await asset.aget("wm") == 5
    await asset.adelete("wm")
    assert await asset.aget("wm", "none") == "none"
    await asset.aset("wm", 6)
    await asset.aclear()
    assert await asset.aget("wm") is None


# -- validation happens before any I/O --------------------------------------------------------

BAD_KEYS: list[tuple[object, type[Exception]]] = [
    (1, InvalidTypeError), (None, InvalidTypeError), (b"k", InvalidTypeError),
    ("", InvalidKeyError), ("k" * 513, InvalidKeyError), ("a\x00", InvalidKeyError),
]  # fmt: skip


def sync_key_calls(store: StateStore, key: Any) -> list[Callable[[], object]]:
    task, asset = store.task_state(SCOPE), store.asset_state("a")
    one = store.asset_states(inlets=["a"])
    return [
        lambda: task.get(key), lambda: task.set(key, 1), lambda: task.delete(key),
        lambda: asset.get(key), lambda: asset.set(key, 1), lambda: asset.delete(key),
        lambda: one.get(key), lambda: one.set(key, 1), lambda: one.delete(key),
    ]  # fmt: skip


def async_key_calls(store: StateStore, key: Any) -> list[Callable[[], Awaitable[object]]]:
    task, asset = store.task_state(SCOPE), store.asset_state("a")
    one = store.asset_states(inlets=["a"])
    return [
        lambda: task.aget(key), lambda: task.aset(key, 1), lambda: task.adelete(key),
        lambda: asset.aget(key), lambda: asset.aset(key, 1), lambda: asset.adelete(key),
        lambda: one.aget(key), lambda: one.aset(key, 1), lambda: one.adelete(key),
    ]  # fmt: skip


@pytest.mark.parametrize(("key", "error"), BAD_KEYS)
def test_bad_keys_rejected_before_io(
    store: StateStore, backend: RecordingBackend, key: Any, error: type[Exception]
) -> None:
    for call in sync_key_calls(store, key):
        with pytest.raises(error):
            call()
    assert backend.calls == []


@pytest.mark.parametrize(("key", "error"), BAD_KEYS)
async def test_bad_keys_rejected_before_io_async(
    store: StateStore, backend: RecordingBackend, key: Any, error: type[Exception]
) -> None:
    for call in async_key_calls(store, key):
        with pytest.raises(error):
            await call()
    assert backend.calls == []


def test_longest_key_is_accepted(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    state.set("k" * 512, 1)
    assert state.get("k" * 512) == 1


BAD_VALUES: list[tuple[object, type[Exception]]] = [
    (None, InvalidValueError),
    (math.nan, InvalidValueError),
    ({"a": [math.inf]}, InvalidValueError),
    ({"a": b"x"}, UnserializableValueError),
    ((1, 2), UnserializableValueError),
    ({1: "a"}, UnserializableValueError),
    ({datetime(2026, 1, 1)}, UnserializableValueError),
    ("x" * LIMIT, ValueTooLargeError),  # 102 bytes with its quotes
]


@pytest.mark.parametrize(("value", "error"), BAD_VALUES)
async def test_bad_values_write_nothing(
    store: StateStore, backend: RecordingBackend, value: Any, error: type[Exception]
) -> None:
    task, asset = store.task_state(SCOPE), store.asset_state("a")
    task.set("k", "before")
    asset.set("k", "before")
    backend.calls.clear()
    with pytest.raises(error):
        task.set("k", value)
    with pytest.raises(error):
        asset.set("k", value)
    with pytest.raises(error):
        await task.aset("k", value)
    with pytest.raises(error):
        await asset.aset("k", value)
    assert backend.calls == []
    assert backend.get(SCOPE, "k") == '"before"'
    assert backend.get(AssetScope(name="a"), "k") == '"before"'


def test_size_limit_is_exact_and_reported(store: StateStore, backend: RecordingBackend) -> None:
    state = store.task_state(SCOPE)
    state.set("k", "é" * 49)  # 98 bytes + 2 quotes = exactly the limit
    assert state.get("k") == "é" * 49
    with pytest.raises(ValueTooLargeError) as info:
        state.set("k", "é" * 49 + "x")  # one byte over
    assert (info.value.size, info.value.limit) == (LIMIT + 1, LIMIT)
    assert state.get("k") == "é" * 49
    assert len(backend.writes) == 1


def test_no_size_limit_with_zero(backend: RecordingBackend) -> None:
    state = make_store(backend, max_value_bytes=0).task_state(SCOPE)
    state.set("k", "x" * 200_000)
    assert state.get("k") == "x" * 200_000


BAD_RETENTIONS: list[tuple[object, type[Exception]]] = [
    (7, InvalidTypeError),
    (7.5, InvalidTypeError),
    ("7", InvalidTypeError),
    (True, InvalidTypeError),
    (timedelta(0), InvalidRetentionError),
    (timedelta(days=-1), InvalidRetentionError),
    (NEVER_EXPIRE - timedelta(days=1), InvalidRetentionError),
]


@pytest.mark.parametrize(("retention", "error"), BAD_RETENTIONS)
async def test_bad_retention_writes_nothing(
    store: StateStore, backend: RecordingBackend, retention: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.task_state(SCOPE).set("k", 1, retention=retention)
    with pytest.raises(error):
        await store.task_state(SCOPE).aset("k", 1, retention=retention)
    assert backend.calls == []
    assert backend.get(SCOPE, "k") is None


# -- retention and expiry -------------------------------------------------------------------


async def test_retention_becomes_expires_at(store: StateStore, backend: RecordingBackend) -> None:
    state = store.task_state(SCOPE)
    with time_machine.travel(T0, tick=False):
        state.set("six_hours", 1, retention=timedelta(hours=6))
        state.set("default", 1)
        state.set("never", 1, retention=NEVER_EXPIRE)
        await state.aset("async_hour", 1, retention=timedelta(hours=1))
        await state.aset("async_default", 1)
    written = {key: expires_at for _, _, key, _, expires_at in backend.writes}
    assert written == {
        "six_hours": T0 + timedelta(hours=6),
        "default": T0 + timedelta(days=30),
        "never": None,
        "async_hour": T0 + timedelta(hours=1),
        "async_default": T0 + timedelta(days=30),
    }
    assert all(e is None or e.utcoffset() == timedelta(0) for e in written.values())


@pytest.mark.parametrize(("days", "expected"), [(0, None), (1, T0 + timedelta(days=1))])
def test_default_retention_comes_from_config(
    backend: RecordingBackend, days: int, expected: datetime | None
) -> None:
    store = make_store(backend, default_retention_days=days)
    with time_machine.travel(T0, tick=False):
        store.task_state(SCOPE).set("k", 1)
    assert backend.writes[-1][4] == expected


async def test_expired_keys_read_as_absent_without_cleanup(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    with time_machine.travel(T0, tick=False):
        state.set("short", 1, retention=timedelta(hours=1))
        state.set("default", 1)
        state.set("never", 1, retention=NEVER_EXPIRE)
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        assert state.get("short") == 1  # expires_at == now: not yet passed
    with time_machine.travel(T0 + timedelta(hours=1, microseconds=1), tick=False):
        assert state.get("short") is None
        assert await state.aget("short", "gone") == "gone"
        assert state.get("default") == 1
    with time_machine.travel(T0 + timedelta(days=30, microseconds=1), tick=False):
        assert state.get("default") is None
    with time_machine.travel(datetime(3000, 1, 1, tzinfo=timezone.utc), tick=False):
        assert state.get("never") == 1
        assert await state.aget("never") == 1


def test_overwrite_resets_retention(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    with time_machine.travel(T0, tick=False):
        state.set("k", 1, retention=timedelta(hours=1))
        state.set("k", 2, retention=NEVER_EXPIRE)
    with time_machine.travel(T0 + timedelta(days=3650), tick=False):
        assert state.get("k") == 2


# -- sync methods call sync backend methods, async call async --------------------------------


async def test_async_methods_only_call_async_backend_methods() -> None:
    backend = RecordingBackend(forbid="sync")
    store = make_store(backend)
    task, asset = store.task_state(SCOPE), store.asset_state("a")
    one = store.asset_states(outlets=["a"])
    await task.aset("k", [1], retention=timedelta(hours=1))
    assert await task.aget("k") == [1]
    assert await task.aget("missing", 0) == 0
    await task.adelete("k")
    await task.aclear()
    await task.aclear(all_map_indices=True)
    await asset.aset("k", "v")
    assert await asset.aget("k") == "v"
    await asset.adelete("k")
    await asset.aclear()
    await one.aset("k", 1)
    assert await one.aget("k") == 1
    await one.adelete("k")
    await one.aclear()
    assert len(backend.methods) == 14
    assert all(name.startswith("a") for name in backend.methods)


def test_sync_methods_only_call_sync_backend_methods() -> None:
    backend = RecordingBackend(forbid="async")
    store = make_store(backend)
    task, asset = store.task_state(SCOPE), store.asset_state("a")
    one = store.asset_states(inlets=["a"])
    task.set("k", 1)
    task.get("k")
    task.delete("k")
    task.clear(all_map_indices=True)
    asset.set("k", 1)
    asset.get("k")
    asset.delete("k")
    asset.clear()
    one.set("k", 1)
    one.get("k")
    one.delete("k")
    one.clear()
    assert backend.methods == ["set", "get", "delete", "clear"] * 3


async def test_recording_backend_really_forbids() -> None:
    with pytest.raises(ForbiddenCallError):
        make_store(RecordingBackend(forbid="sync")).task_state(SCOPE).get("k")
    with pytest.raises(ForbiddenCallError):
        await make_store(RecordingBackend(forbid="async")).task_state(SCOPE).aget("k")


# -- AssetStateAccessors --------------------------------------------------------------------


def test_asset_accessors_subscript_by_any_reference(store: StateStore) -> None:
    accessors = store.asset_states(inlets=[ORDERS], outlets=[ORDERS, USERS])
    assert len(accessors) == 2  # orders declared twice counts once
    accessors[ORDERS].set("wm", 1)
    assert accessors["orders"].get("wm") == 1
    assert accessors[AssetScope(name="orders")].get("wm") == 1
    assert accessors[AssetScope(uri="s3://b/orders")].get("wm") == 1
    assert accessors[Asset("orders", "s3://elsewhere")].get("wm") == 1
    assert isinstance(accessors[ORDERS], AssetStateAccessor)
    assert accessors[USERS].get("wm") is None  # the other asset is separate


def test_asset_accessors_membership_length_and_iteration(store: StateStore) -> None:
    accessors = store.asset_states(inlets=[ORDERS, "orders"], outlets=[USERS])
    assert len(accessors) == 2
    assert ORDERS in accessors
    assert "users" in accessors
    assert AssetScope(uri="s3://b/users") in accessors
    assert "nope" not in accessors
    assert Asset("nope", "s3://nope") not in accessors
    scopes = list(accessors)
    assert all(isinstance(s, AssetScope) for s in scopes)
    assert [s.name for s in scopes] == ["orders", "users"]  # inlets first, in order
    assert len(store.asset_states()) == 0
    assert list(store.asset_states()) == []


def test_outlets_only_assets_work(store: StateStore) -> None:
    accessors = AssetStateAccessors(outlets=[USERS], store=store)
    assert USERS in accessors
    accessors[USERS].set("cursor", 10)
    assert accessors.get("cursor") == 10
    assert store.asset_state("users").get("cursor") == 10


def test_undeclared_asset_is_key_error_naming_declared(store: StateStore) -> None:
    accessors = store.asset_states(inlets=[ORDERS], outlets=[USERS])
    with pytest.raises(UndeclaredAssetError) as info:
        accessors["payments"]
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert "payments" in message
    assert "orders" in message
    assert "users" in message


def test_undeclared_asset_with_nothing_declared(store: StateStore) -> None:
    with pytest.raises(KeyError, match="none"):
        store.asset_states()["orders"]


async def test_shorthand_with_exactly_one_asset(store: StateStore) -> None:
    one = store.asset_states(inlets=[ORDERS])
    one.set("wm", 1)
    assert one.get("wm") == 1
    assert one[ORDERS].get("wm") == 1
    assert one.get("missing", 5) == 5
    await one.aset("wm", 2)
    assert await one.aget("wm") == 2
    assert await one.aget("missing", 6) == 6
    await one.adelete("wm")
    assert one.get("wm") is None
    one.set("x", 1)
    one.delete("x")
    assert one.get("x") is None
    one.set("x", 1)
    one.clear()
    assert one.get("x") is None
    await one.aset("x", 1)
    await one.aclear()
    assert await one.aget("x") is None


@pytest.mark.parametrize("declared", [[], [ORDERS, USERS]], ids=["none", "two"])
async def test_shorthand_is_ambiguous_without_exactly_one_asset(
    store: StateStore, backend: RecordingBackend, declared: list[Asset]
) -> None:
    accessors = store.asset_states(inlets=declared)
    sync_calls: list[Callable[[], object]] = [
        lambda: accessors.get("wm"),
        lambda: accessors.set("wm", 1),
        lambda: accessors.delete("wm"),
        accessors.clear,
    ]
    for call in sync_calls:
        with pytest.raises(AmbiguousAssetError) as info:
            call()
        assert isinstance(info.value, ValueError)
        assert "subscript" in str(info.value)
    async_calls: list[Callable[[], Awaitable[object]]] = [
        lambda: accessors.aget("wm"),
        lambda: accessors.aset("wm", 1),
        lambda: accessors.adelete("wm"),
        accessors.aclear,
    ]
    for acall in async_calls:
        with pytest.raises(ValueError, match="subscript"):
            await acall()
    assert backend.calls == []
