"""The public surface: curated names, typed package, sync/async parity."""

from __future__ import annotations

import inspect
from pathlib import Path

import statestore
from statestore import exceptions
from statestore.backends.offload import WorkerBackedStateBackend

SPEC_NAMES = {
    "NEVER_EXPIRE", "AssetScope", "AssetStateAccessor", "AssetStateAccessors",
    "BaseStateBackend", "CleanupReport", "InMemoryStateBackend", "MetastoreStateBackend",
    "StateScope", "StateStore", "StateStoreConfig", "StateStoreError", "TaskScope",
    "TaskStateAccessor", "cleanup_task_states", "default_store", "sweep_asset_states",
}  # fmt: skip


def test_all_is_sorted_and_complete() -> None:
    assert statestore.__all__ == sorted(statestore.__all__)
    assert set(statestore.__all__) >= SPEC_NAMES
    for name in statestore.__all__:
        assert getattr(statestore, name) is not None


def test_every_exception_is_a_statestore_error_and_a_builtin() -> None:
    builtins = (ValueError, TypeError, KeyError, LookupError, ConnectionError, RuntimeError,
                NotImplementedError, PermissionError)  # fmt: skip
    for name in exceptions.__all__:
        error = getattr(exceptions, name)
        assert issubclass(error, exceptions.StateStoreError)
        if error is not exceptions.StateStoreError:
            assert issubclass(error, builtins), name
        assert getattr(statestore, name) is error


def test_every_exception_class_is_exported() -> None:
    defined = {
        name
        for name, obj in vars(exceptions).items()
        if isinstance(obj, type)
        and issubclass(obj, BaseException)
        and obj.__module__ == exceptions.__name__
    }
    assert defined == set(exceptions.__all__)
    assert exceptions.__all__ == sorted(exceptions.__all__)


def test_package_is_typed() -> None:
    assert (Path(statestore.__file__).parent / "py.typed").is_file()


PARITY_CLASSES = [
    statestore.TaskStateAccessor,
    statestore.AssetStateAccessor,
    statestore.AssetStateAccessors,
    statestore.BaseStateBackend,
    statestore.InMemoryStateBackend,
    statestore.MetastoreStateBackend,
    statestore.HttpStateBackend,
    statestore.StateStore,
    WorkerBackedStateBackend,
]
# Methods that do no I/O and so have no reason for an async twin.
NO_IO = {"task_state", "asset_state", "asset_states", "from_config", "describe", "matches"}


def _shape(function: object) -> list[tuple[str, object, object]]:
    parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in parameters]


def _is_async(member: object) -> bool:
    """A coroutine function, or an async generator (``akeys``, ``aitems``)."""
    return inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)


def test_every_sync_method_has_an_async_twin_with_the_same_parameters() -> None:
    checked = 0
    for cls in PARITY_CLASSES:
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("_") or name in NO_IO or _is_async(member):
                continue
            twin = getattr(cls, f"a{name}", None)
            assert twin is not None, f"{cls.__name__}.{name} has no a{name}"
            assert _is_async(twin), f"{cls.__name__}.a{name} is not async"
            assert _shape(member) == _shape(twin), f"{cls.__name__}.{name} vs a{name}"
            checked += 1
    assert checked >= 30


def test_every_async_method_has_a_sync_twin() -> None:
    for cls in PARITY_CLASSES:
        for name, _ in inspect.getmembers(cls, _is_async):
            if not name.startswith("_"):
                assert callable(getattr(cls, name[1:], None)), f"{cls.__name__}.{name} has no twin"
