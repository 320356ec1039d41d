"""The StateStore facade, the default store, and backend loading (no database)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from statestore import (
    AssetScope,
    AssetStateAccessor,
    AssetStateAccessors,
    ConfigError,
    InMemoryStateBackend,
    StateStore,
    StateStoreConfig,
    TaskScope,
    TaskStateAccessor,
    UnsupportedOperationError,
    default_store,
    set_default_store,
)
from statestore.backends.base import BaseStateBackend, load_backend
from statestore.exceptions import InvalidTypeError
from tests.unit.recording import RecordingBackend

SCOPE = TaskScope("dag", "run", "task", 0)
MEMORY = "statestore.backends.memory.InMemoryStateBackend"


def make_store(backend: BaseStateBackend, **state_store: Any) -> StateStore:
    return StateStore(backend=backend, config=StateStoreConfig(state_store=state_store))


# -- construction ---------------------------------------------------------------------------


def test_backend_is_used_as_given() -> None:
    backend = InMemoryStateBackend()
    store = make_store(backend)
    assert store.backend is backend
    assert store.primary_backend is backend
    assert store.worker_backend is None
    assert store.config.state_store.max_value_bytes == 65535


@pytest.mark.parametrize(
    "extra",
    [{"url": "sqlite:///x.db"}, {"engine": object()}, {"async_engine": object()}],
    ids=["url", "engine", "async_engine"],
)
def test_backend_and_a_database_together_is_config_error(extra: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="not both"):
        StateStore(backend=InMemoryStateBackend(), **extra)


@pytest.mark.parametrize("bad", [object(), InMemoryStateBackend, "memory"])
def test_backend_must_be_a_backend_instance(bad: object) -> None:
    with pytest.raises(InvalidTypeError):
        StateStore(backend=bad)  # type: ignore[arg-type]


# -- accessor factories ---------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    name: str
    uri: str


def test_factories_build_accessors_bound_to_this_store() -> None:
    backend = RecordingBackend()
    store = make_store(backend)
    task = store.task_state(SCOPE)
    assert isinstance(task, TaskStateAccessor)
    assert task.scope == SCOPE
    for reference in ("a", AssetScope(name="a"), Asset("a", "s3://a")):
        asset = store.asset_state(reference)
        assert isinstance(asset, AssetStateAccessor)
        assert asset.scope.name == "a"
    states = store.asset_states(inlets=["a"], outlets=[Asset("b", "s3://b")])
    assert isinstance(states, AssetStateAccessors)
    assert [s.name for s in states] == ["a", "b"]
    task.set("k", 1)
    store.asset_state("a").set("k", 2)
    states["b"].set("k", 3)
    assert backend.methods == ["set", "set", "set"]  # all through this store's backend
    with pytest.raises(InvalidTypeError):
        store.task_state(AssetScope(name="a"))  # type: ignore[arg-type]


def test_accessors_without_a_store_use_the_default_store() -> None:
    mine = make_store(RecordingBackend())
    set_default_store(mine)
    TaskStateAccessor(SCOPE).set("k", 1)
    AssetStateAccessor("a").set("k", 2)
    AssetStateAccessors(inlets=["b"]).set("k", 3)
    assert mine.task_state(SCOPE).get("k") == 1
    assert mine.asset_state("a").get("k") == 2
    assert mine.asset_state("b").get("k") == 3


# -- host hooks -----------------------------------------------------------------------------


def test_on_task_success_clears_only_this_map_index_when_enabled() -> None:
    store = make_store(InMemoryStateBackend(), clear_on_success=True)
    sibling = TaskScope("dag", "run", "task", 1)
    store.task_state(SCOPE).set("k", 1)
    store.task_state(sibling).set("k", 1)
    store.asset_state("a").set("k", 1)
    store.asset_state("task").set("k", 1)
    store.on_task_success(SCOPE)
    assert store.task_state(SCOPE).get("k") is None
    assert store.task_state(sibling).get("k") == 1
    assert store.asset_state("a").get("k") == 1
    assert store.asset_state("task").get("k") == 1


async def test_aon_task_success_clears_through_the_async_method_when_enabled() -> None:
    backend = RecordingBackend()
    store = make_store(backend, clear_on_success=True)
    store.task_state(SCOPE).set("k", 1)
    store.task_state(TaskScope("dag", "run", "task", 1)).set("k", 1)
    store.asset_state("a").set("k", 1)
    backend.forbid = "sync"
    await store.aon_task_success(SCOPE)
    backend.forbid = None
    assert [(n, s, d) for n, s, d in backend.calls if n.endswith("clear")] == [
        ("aclear", SCOPE, False)
    ]
    assert store.task_state(SCOPE).get("k") is None
    assert store.task_state(TaskScope("dag", "run", "task", 1)).get("k") == 1
    assert store.asset_state("a").get("k") == 1


async def test_on_task_success_does_nothing_when_disabled() -> None:
    backend = RecordingBackend()
    store = make_store(backend)  # clear_on_success defaults to false
    store.task_state(SCOPE).set("k", 1)
    backend.calls.clear()
    store.on_task_success(SCOPE)
    await store.aon_task_success(SCOPE)
    assert backend.calls == []
    assert store.task_state(SCOPE).get("k") == 1


async def test_on_task_success_needs_a_task_scope() -> None:
    store = make_store(InMemoryStateBackend(), clear_on_success=True)
    with pytest.raises(InvalidTypeError):
        store.on_task_success(AssetScope(name="a"))  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError):
        await store.aon_task_success("dag/run/task")  # type: ignore[arg-type]


# -- lifecycle ------------------------------------------------------------------------------


def test_context_manager_closes_the_backend() -> None:
    backend = RecordingBackend()
    with make_store(backend) as store:
        assert store.backend is backend
        assert backend.closed == []
    assert backend.closed == ["close"]


async def test_async_context_manager_acloses_the_backend() -> None:
    backend = RecordingBackend()
    async with make_store(backend) as store:
        assert store.backend is backend
        assert backend.closed == []
    assert backend.closed == ["aclose"]


def test_context_manager_closes_on_error() -> None:
    backend = RecordingBackend()
    with pytest.raises(RuntimeError), make_store(backend):
        raise RuntimeError("boom")
    assert backend.closed == ["close"]


async def test_close_and_aclose_delegate_to_the_backend() -> None:
    backend = RecordingBackend()
    store = make_store(backend)
    store.close()
    await store.aclose()
    assert backend.closed == ["close", "aclose"]


def test_metastore_only_operations_on_other_backends() -> None:
    store = make_store(InMemoryStateBackend())
    with pytest.raises(UnsupportedOperationError, match="InMemoryStateBackend"):
        store.upgrade()
    with pytest.raises(UnsupportedOperationError):
        store.list_assets()
    with pytest.raises(UnsupportedOperationError):
        store.deactivate_assets("a")


# -- the default store ----------------------------------------------------------------------


def test_default_store_is_built_once_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE__STATE_STORE__BACKEND", MEMORY)
    first = default_store()
    assert isinstance(first.backend, InMemoryStateBackend)
    assert default_store() is first
    TaskStateAccessor(SCOPE).set("k", 1)  # store=None -> the default store
    assert first.task_state(SCOPE).get("k") == 1
    assert AssetStateAccessor("a").get("k") is None


def test_set_default_store_replaces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE__STATE_STORE__BACKEND", MEMORY)
    built = default_store()
    mine = make_store(InMemoryStateBackend())
    assert set_default_store(mine) is built
    assert default_store() is mine
    TaskStateAccessor(SCOPE).set("k", 1)
    assert mine.task_state(SCOPE).get("k") == 1
    assert set_default_store(None) is mine
    rebuilt = default_store()  # forgotten: the next use builds a fresh one
    assert rebuilt is not mine
    assert rebuilt is not built
    with pytest.raises(InvalidTypeError):
        set_default_store("nope")  # type: ignore[arg-type]


# -- loading the configured backend ---------------------------------------------------------


class CountingBackend(InMemoryStateBackend):
    created: ClassVar[int] = 0

    def __init__(self) -> None:
        type(self).created += 1
        super().__init__()


class AbstractBackend(BaseStateBackend):
    """Implements nothing: still abstract."""

    created: ClassVar[int] = 0

    def __init__(self) -> None:
        type(self).created += 1


class HalfBackend(InMemoryStateBackend):
    """A concrete-looking subclass that re-abstracts one method."""

    created: ClassVar[int] = 0

    def __init__(self) -> None:
        type(self).created += 1
        super().__init__()


HalfBackend.__abstractmethods__ = frozenset({"aget"})


class Unrelated:
    created: ClassVar[int] = 0

    def __init__(self) -> None:
        type(self).created += 1


def not_a_class() -> None:
    raise AssertionError("must never be called")


counted = CountingBackend  # an alias: loaded by another name, still one class
HERE = __name__


@pytest.fixture(autouse=True)
def _reset_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in (CountingBackend, AbstractBackend, HalfBackend, Unrelated):
        monkeypatch.setattr(cls, "created", 0)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nodots", "dotted path"),
        ("trailing.", "dotted path"),
        (".Leading", "dotted path"),
        ("no_such_module_xyz.Backend", "cannot import"),
        (f"{HERE}.Missing", "has no"),
        (f"{HERE}.not_a_class", "not a BaseStateBackend"),
        (f"{HERE}.Unrelated", "not a BaseStateBackend"),
        (f"{HERE}.HERE", "not a BaseStateBackend"),
        ("statestore.backends.base.BaseStateBackend", "abstract"),
        (f"{HERE}.AbstractBackend", "abstract"),
        (f"{HERE}.HalfBackend", "abstract"),
    ],
)
def test_load_backend_rejects_without_instantiating(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_backend(path)
    assert repr(path) in str(info.value) or path in str(info.value)
    assert (AbstractBackend.created, HalfBackend.created, Unrelated.created) == (0, 0, 0)


@pytest.mark.parametrize(
    "path",
    [f"{HERE}.Unrelated", f"{HERE}.AbstractBackend", f"{HERE}.HalfBackend", f"{HERE}.not_a_class"],
)
def test_store_with_a_bad_backend_setting_builds_nothing(path: str) -> None:
    with pytest.raises(ConfigError):
        StateStore(config=StateStoreConfig(state_store={"backend": path}))
    assert (AbstractBackend.created, HalfBackend.created, Unrelated.created) == (0, 0, 0)


def test_load_backend_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"\[workers\] state_backend"):
        load_backend("nodots", setting="[workers] state_backend")


def test_configured_backend_is_loaded_then_instantiated_once() -> None:
    assert load_backend(f"{HERE}.CountingBackend") is CountingBackend
    assert load_backend(f"{HERE}.counted") is CountingBackend
    assert load_backend(MEMORY) is InMemoryStateBackend
    assert CountingBackend.created == 0  # loading instantiates nothing
    config = StateStoreConfig(state_store={"backend": f"{HERE}.CountingBackend"})
    store = StateStore(config=config)
    assert CountingBackend.created == 1
    assert type(store.backend) is CountingBackend


def test_a_url_with_a_non_metastore_backend_is_config_error() -> None:
    config = StateStoreConfig(state_store={"backend": f"{HERE}.CountingBackend"})
    with pytest.raises(ConfigError, match="not the metastore"):
        StateStore("sqlite:///x.db", config=config)
    assert CountingBackend.created == 0


def test_a_sqlalchemy_url_object_keeps_its_password() -> None:
    from sqlalchemy.engine import make_url

    from statestore import MetastoreStateBackend

    store = StateStore(make_url("postgresql+psycopg://app:s3cret@db.invalid/state"))
    backend = store.primary_backend
    assert isinstance(backend, MetastoreStateBackend)
    assert backend.url.password == "s3cret"  # str(url) would have given "***"
    assert "s3cret" not in repr(store)
    store.close()
