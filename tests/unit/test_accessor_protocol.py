"""Accessors as values and mappings, one task_state convention, and a store's lifecycle
(over the in-memory backend; the mapping on every backend is in statestore.testing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from typing_extensions import assert_type

import statestore
from statestore import (
    AssetScope,
    InMemoryStateBackend,
    InvalidTypeError,
    KeyNotFoundError,
    StateStore,
    StateStoreError,
    StoreClosedError,
    TaskScope,
    UnsupportedOperationError,
)
from statestore.scopes import StateScope

SCOPE = TaskScope("etl", "2026-01-01", "load")


@pytest.fixture
def store() -> StateStore:
    return StateStore(backend=InMemoryStateBackend())


def test_accessors_for_one_scope_and_store_are_equal_and_hash_alike(store: StateStore) -> None:
    one, two = store.task_state(SCOPE), store.task_state(TaskScope("etl", "2026-01-01", "load"))
    assert one == two
    assert hash(one) == hash(two)
    assert len({one, two}) == 1
    assert one != store.task_state(TaskScope("etl", "2026-01-01", "load", 0))
    assert one != store.task_state(SCOPE, updated_by="someone-else")
    other_store = StateStore(backend=store.backend)  # same backend, another store
    assert one != other_store.task_state(SCOPE)
    asset = store.asset_state("orders")
    assert asset == store.asset_state(AssetScope(name="orders"))
    assert asset != store.asset_state("customers")
    assert asset != one
    assert store.asset_states(["a", "b"]) == store.asset_states(["a"], ["b"])
    assert hash(store.asset_states(["a", "b"])) == hash(store.asset_states(["a"], ["b"]))
    assert store.asset_states(["a"]) != store.asset_states(["b"])


def test_task_state_takes_one_convention_on_the_store_and_as_a_shortcut(
    store: StateStore,
) -> None:
    mapped = TaskScope("etl", "r", "load", 3)
    keyed = TaskScope("etl", "r", "load", map_key="2026-01-01.csv")

    def shortcut(*args: Any, **kwargs: Any) -> statestore.TaskStateAccessor:
        return statestore.task_state(*args, store=store, **kwargs)

    task_state: Any
    for task_state in (store.task_state, shortcut):
        assert task_state(SCOPE).scope == SCOPE
        assert task_state("etl", "2026-01-01", "load").scope == SCOPE
        assert task_state("etl", "r", "load", 3).scope == mapped
        assert task_state("etl", "r", "load", map_index=3).scope == mapped
        assert task_state("etl", "r", "load", map_key="2026-01-01.csv").scope == keyed
        with pytest.raises(InvalidTypeError, match="not both"):
            task_state(SCOPE, "r", "t")
        with pytest.raises(InvalidTypeError, match="not both"):
            task_state(SCOPE, map_index=2)
        with pytest.raises(InvalidTypeError, match="needs run_id and task_id"):
            task_state("etl", "r")
        with pytest.raises(InvalidTypeError, match="TaskScope or a dag_id"):
            task_state(42, "r", "t")
    store.task_state("etl", "r", "load", 3)["k"] = 1
    assert statestore.task_state(mapped, store=store)["k"] == 1  # one scope, both ways


def test_store_repr_names_the_backend_and_hides_the_password() -> None:
    store = StateStore("postgresql+psycopg://app:s3cret@db.example:5432/state")
    shown = repr(store)
    assert shown == (
        "StateStore(MetastoreStateBackend('postgresql+psycopg://app:***@db.example:5432/state'))"
    )
    store.close()
    assert repr(store).endswith(", closed)")
    memory = StateStore(backend=InMemoryStateBackend())
    assert repr(memory) == "StateStore(InMemoryStateBackend())"


def test_a_closed_store_and_its_accessors_refuse_every_use(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    state["k"] = 1
    assets = store.asset_states(["orders"])
    store.close()
    assert store.closed
    uses: list[Callable[[], object]] = [
        lambda: state.get("k"), lambda: state.set("k", 2), lambda: state["k"],
        lambda: "k" in state, lambda: len(state), lambda: state.delete("k"),
        state.clear, lambda: assets.get("wm"), lambda: store.task_state(SCOPE),
        lambda: store.asset_state("x"), lambda: statestore.TaskStateAccessor(SCOPE, store=store),
        lambda: store.on_task_success(SCOPE), lambda: store.backend,
    ]  # fmt: skip
    for use in uses:
        with pytest.raises(StoreClosedError, match=r"StateStore\(InMemoryStateBackend\(\)"):
            use()
    assert issubclass(StoreClosedError, StateStoreError)
    assert issubclass(StoreClosedError, RuntimeError)
    store.close()  # twice is fine


async def test_async_use_of_a_closed_store_raises(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    await state.aset("k", 1)
    assert await state.aget("k") == 1
    await store.aclose()
    with pytest.raises(StoreClosedError):
        await state.aget("k")
    with pytest.raises(StoreClosedError):
        await state.aset("k", 2)


def test_missing_key_error_is_a_key_error_naming_key_and_scope(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    with pytest.raises(KeyError) as missing:
        state["nope"]
    assert type(missing.value) is KeyNotFoundError
    assert missing.value.args == ("nope",)
    assert str(missing.value) == f"'nope' is not set in {SCOPE.describe()} (absent or expired)"
    assert not state
    state["yes"] = 1
    assert state  # bool() reads one key, it does not count
    assert dict(state.items()) == {"yes": 1}
    assert state.keys() != state.keys()  # views compare by identity, as dict views do


class _NoListing(InMemoryStateBackend):
    def list_items(
        self, scope: StateScope, *, prefix: str = "", after: str = "", limit: int | None = None,
        values: bool = True, session: Any = None,
    ) -> list[tuple[str, str | None]]:  # fmt: skip
        raise UnsupportedOperationError("no listing here")


def test_views_print_even_when_the_backend_cannot_list() -> None:
    state = StateStore(backend=_NoListing()).task_state(SCOPE)
    state["k"] = 1
    assert state["k"] == 1  # the mapping's reads need no listing
    assert repr(state.keys()) == "StateKeys([<cannot list: UnsupportedOperationError>])"
    with pytest.raises(UnsupportedOperationError):
        len(state)


def test_get_is_typed_by_its_default(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    state["n"] = 3
    # Checked by mypy --strict (tests are type-checked), and the values at run time.
    count = state.get("n", 0)
    assert_type(count, "Any | int")
    assert count == 3
    name: str | None = state.get("name")
    assert name is None
    assert_type(store.asset_states(["a"]).get("w", "x"), "Any | str")
