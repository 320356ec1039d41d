"""The StateStore facade, the default store, and backend loading."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from statestore import (
    AssetScope,
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


def make_store(backend: BaseStateBackend, **state_store: Any) -> StateStore:
    return StateStore(backend=backend, config=StateStoreConfig(state_store=state_store))


def test_backend_and_url_together_is_config_error() -> None:
    with pytest.raises(ConfigError):
        StateStore("sqlite:///x.db", backend=InMemoryStateBackend())


def test_backend_must_be_a_backend() -> None:
    with pytest.raises(InvalidTypeError):
        StateStore(backend=object())  # type: ignore[arg-type]


def test_on_task_success_clears_only_this_instance_when_enabled() -> None:
    store = make_store(InMemoryStateBackend(), clear_on_success=True)
    sibling = TaskScope("dag", "run", "task", 1)
    store.task_state(SCOPE).set("k", 1)
    store.task_state(sibling).set("k", 1)
    store.asset_state("a").set("k", 1)
    store.on_task_success(SCOPE)
    assert store.task_state(SCOPE).get("k") is None
    assert store.task_state(sibling).get("k") == 1
    assert store.asset_state("a").get("k") == 1


async def test_on_task_success_async_and_disabled() -> None:
    enabled = make_store(RecordingBackend(), clear_on_success=True)
    enabled.task_state(SCOPE).set("k", 1)
    await enabled.aon_task_success(SCOPE)
    assert enabled.task_state(SCOPE).get("k") is None
    disabled_backend = RecordingBackend()
    disabled = make_store(disabled_backend)
    disabled.task_state(SCOPE).set("k", 1)
    disabled.on_task_success(SCOPE)
    await disabled.aon_task_success(SCOPE)
    assert disabled.task_state(SCOPE).get("k") == 1
    assert "clear" not in disabled_backend.methods
    assert "aclear" not in disabled_backend.methods
    with pytest.raises(InvalidTypeError):
        disabled.on_task_success(AssetScope(name="a"))  # type: ignore[arg-type]


async def test_context_managers_close_the_backend() -> None:
    backend = RecordingBackend()
    with make_store(backend) as store:
        assert store.backend is backend
    async with make_store(backend):
        pass
    assert backend.closed == ["close", "aclose"]


def test_metastore_only_operations_on_other_backends() -> None:
    store = make_store(InMemoryStateBackend())
    with pytest.raises(UnsupportedOperationError):
        store.upgrade()
    with pytest.raises(UnsupportedOperationError):
        store.list_assets()
    with pytest.raises(UnsupportedOperationError):
        store.deactivate_assets("a")


def test_default_store_is_built_once_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "STATESTORE__STATE_STORE__BACKEND", "statestore.backends.memory.InMemoryStateBackend"
    )
    first = default_store()
    assert isinstance(first.backend, InMemoryStateBackend)
    assert default_store() is first
    TaskStateAccessor(SCOPE).set("k", 1)  # store=None -> the default store
    assert first.task_state(SCOPE).get("k") == 1


def test_set_default_store_replaces_it() -> None:
    mine = make_store(InMemoryStateBackend())
    assert set_default_store(mine) is None
    assert default_store() is mine
    assert set_default_store(None) is mine
    with pytest.raises(InvalidTypeError):
        set_default_store("nope")  # type: ignore[arg-type]


def test_no_arguments_uses_sqlite_in_the_working_directory() -> None:
    with StateStore() as store:
        store.task_state(SCOPE).set("k", 1)
        assert store.task_state(SCOPE).get("k") == 1


class CountingBackend(InMemoryStateBackend):
    created: ClassVar[int] = 0

    def __init__(self) -> None:
        type(self).created += 1
        super().__init__()


class AbstractBackend(BaseStateBackend):
    pass


def not_a_class() -> None:
    pass


class Unrelated:
    pass


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nodots", "dotted path"),
        ("no_such_module_xyz.Backend", "cannot import"),
        ("tests.unit.test_store.Missing", "has no"),
        ("tests.unit.test_store.not_a_class", "not a BaseStateBackend"),
        ("tests.unit.test_store.Unrelated", "not a BaseStateBackend"),
        ("statestore.backends.base.BaseStateBackend", "abstract"),
        ("tests.unit.test_store.AbstractBackend", "abstract"),
    ],
)
def test_load_backend_rejects(path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_backend(path)


def test_configured_backend_is_instantiated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_backend("tests.unit.test_store.CountingBackend") is CountingBackend
    assert CountingBackend.created == 0  # loading instantiates nothing
    config = StateStoreConfig(state_store={"backend": "tests.unit.test_store.CountingBackend"})
    StateStore(config=config)
    assert CountingBackend.created == 1
    with pytest.raises(ConfigError, match="not the metastore"):
        StateStore("sqlite:///x.db", config=config)
