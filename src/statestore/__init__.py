"""statestore: durable task state and asset state for workflow code.

Task state belongs to one task instance and survives its crashes and retries (external
job ids, checkpoints, progress); asset state belongs to one data asset and persists
across runs (watermarks, cursors). Build a :class:`StateStore`, then use its accessors::

    from statestore import StateStore, TaskScope

    with StateStore() as store:
        state = store.task_state(TaskScope("etl", "2026-01-01", "load"))
        state.set("job_id", "job-42")
"""

from typing import TYPE_CHECKING, Any

from statestore.accessors import AssetStateAccessor, AssetStateAccessors, TaskStateAccessor
from statestore.backends import BaseStateBackend, InMemoryStateBackend
from statestore.exceptions import (
    AccessDeniedError,
    AmbiguousAssetError,
    AuthenticationError,
    BackendUnavailableError,
    BatchTooLargeError,
    ConfigError,
    InactiveAssetError,
    InvalidKeyError,
    InvalidRetentionError,
    InvalidScopeError,
    InvalidTypeError,
    InvalidValueError,
    KeyNotFoundError,
    ReadOnlyServerError,
    SchemaOutOfDateError,
    StateStoreError,
    StoreClosedError,
    UndeclaredAssetError,
    UnknownAssetError,
    UnserializableValueError,
    UnsupportedOperationError,
    ValueTooLargeError,
    VersionConflictError,
)
from statestore.items import StateItem
from statestore.retention import NEVER_EXPIRE
from statestore.scopes import AssetScope, StateScope, TaskScope, map_key_for
from statestore.shortcuts import asset_state, run_id_for, task_state
from statestore.store import StateStore, default_store, set_default_store

if TYPE_CHECKING:
    from statestore.backends.http import HttpStateBackend
    from statestore.cleanup import CleanupReport, cleanup_task_states, sweep_asset_states
    from statestore.config import StateStoreConfig
    from statestore.metastore import MetastoreStateBackend

__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> Any:
    # The metastore pulls in SQLAlchemy's dialect machinery and Alembic, the settings
    # pydantic; load them on first use so `import statestore` stays cheap (at most
    # 150 ms, none of them imported: tests/unit/test_import_cost.py).
    if name == "StateStoreConfig":
        from statestore.config import StateStoreConfig  # noqa: PLC0415

        return StateStoreConfig
    if name == "HttpStateBackend":  # needs httpx, which only a state server's clients use
        from statestore.backends.http import HttpStateBackend  # noqa: PLC0415

        return HttpStateBackend
    if name == "MetastoreStateBackend":
        from statestore.metastore import MetastoreStateBackend  # noqa: PLC0415

        return MetastoreStateBackend
    if name in {"CleanupReport", "cleanup_task_states", "sweep_asset_states"}:
        from statestore import cleanup  # noqa: PLC0415

        return getattr(cleanup, name)
    raise AttributeError(f"module 'statestore' has no attribute {name!r}")


__all__ = [  # noqa: RUF022 - plainly sorted, checked by a test
    "AccessDeniedError",
    "AmbiguousAssetError",
    "AssetScope",
    "AssetStateAccessor",
    "AssetStateAccessors",
    "AuthenticationError",
    "BackendUnavailableError",
    "BaseStateBackend",
    "BatchTooLargeError",
    "CleanupReport",
    "ConfigError",
    "HttpStateBackend",
    "InMemoryStateBackend",
    "InactiveAssetError",
    "InvalidKeyError",
    "InvalidRetentionError",
    "InvalidScopeError",
    "InvalidTypeError",
    "InvalidValueError",
    "KeyNotFoundError",
    "MetastoreStateBackend",
    "NEVER_EXPIRE",
    "ReadOnlyServerError",
    "SchemaOutOfDateError",
    "StateItem",
    "StateScope",
    "StateStore",
    "StateStoreConfig",
    "StateStoreError",
    "StoreClosedError",
    "TaskScope",
    "TaskStateAccessor",
    "UndeclaredAssetError",
    "UnknownAssetError",
    "UnserializableValueError",
    "UnsupportedOperationError",
    "ValueTooLargeError",
    "VersionConflictError",
    "asset_state",
    "cleanup_task_states",
    "default_store",
    "map_key_for",
    "run_id_for",
    "set_default_store",
    "sweep_asset_states",
    "task_state",
]
