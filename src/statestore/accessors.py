"""What task code holds: accessors for one task instance's or one asset's state.

Each method validates and encodes *before* touching the backend (so bad input never
writes anything), then makes exactly one backend call. The sync and async methods share
the pure ``_prepare_*`` helpers and differ only by ``await``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from statestore.access_core import KeyedState, to_item
from statestore.backends.worker import escape_value
from statestore.batches import AssetBatches, BatchShorthands, TaskBatches
from statestore.codec import encode_value
from statestore.exceptions import (
    AmbiguousAssetError,
    InvalidTypeError,
    UndeclaredAssetError,
)
from statestore.items import (
    DEFAULT_UPDATE_RETRIES,
    arun_update,
    check_version_arg,
    run_update,
)
from statestore.retention import compute_expires_at, utcnow
from statestore.scopes import (
    AssetScope,
    TaskScope,
    check_key,
    to_asset_scope,
    writer_name,
)
from statestore.update_steps import aupdate_steps, update_steps

if TYPE_CHECKING:
    from datetime import datetime

    from statestore.store import StateStore

__all__ = ["AssetStateAccessor", "AssetStateAccessors", "TaskStateAccessor"]

T = TypeVar("T")


def _resolve_store(store: StateStore | None) -> StateStore:
    if store is None:
        from statestore.store import default_store  # noqa: PLC0415 - avoids an import cycle

        store = default_store()
    _ = store.backend  # a closed store raises StoreClosedError now, not at first use
    return store


def _value_limit(store: StateStore) -> int:
    # With a worker-side backend, values go to it whatever their size, under its limit.
    if store.worker_backend is not None:
        return store.config.workers.max_object_bytes
    return store.config.state_store.max_value_bytes


class TaskStateAccessor(TaskBatches, KeyedState):
    """Task state of one task instance: survives crashes and retries of that instance."""

    __slots__ = ("_max_bytes", "_retention_days", "_scope", "_store", "_updated_by")
    _scope: TaskScope

    def __init__(
        self, scope: TaskScope, *, store: StateStore | None = None, updated_by: object = None
    ) -> None:
        if not isinstance(scope, TaskScope):
            raise InvalidTypeError(f"scope must be a TaskScope, not {type(scope).__name__}")
        self._scope = scope
        self._store = _resolve_store(store)
        self._max_bytes = _value_limit(self._store)
        self._retention_days = self._store.config.state_store.default_retention_days
        self._updated_by = writer_name(updated_by) or self._store.updated_by

    @classmethod
    def _of(cls, scope: TaskScope, store: StateStore, settings: tuple[int, int, str | None]
            ) -> TaskStateAccessor:  # fmt: skip
        """An accessor for a validated ``scope`` from the settings another accessor of
        ``store`` resolved (:meth:`_settings`): what ``store.task_state(scope)`` builds per
        call, without resolving them again."""
        accessor = object.__new__(cls)
        accessor._scope, accessor._store = scope, store
        accessor._max_bytes, accessor._retention_days, accessor._updated_by = settings
        return accessor

    def _settings(self) -> tuple[int, int, str | None]:
        return self._max_bytes, self._retention_days, self._updated_by

    @property
    def scope(self) -> TaskScope:
        """The task instance this accessor reads and writes."""
        return self._scope

    def __repr__(self) -> str:
        return f"TaskStateAccessor({self._scope!r})"

    def __setitem__(self, key: str, value: Any) -> None:
        """``state[key] = value``: :meth:`set` with the default retention."""
        self.set(key, value)

    def _prepare_set(self, key: str, value: Any, retention: object) -> tuple[str, datetime | None]:
        check_key(key)
        text = encode_value(escape_value(value), max_bytes=self._max_bytes)
        expires_at = compute_expires_at(
            retention, now=utcnow(), default_retention_days=self._retention_days
        )
        return text, expires_at

    def set(
        self,
        key: str,
        value: Any,
        *,
        retention: timedelta | None = None,
        if_version: int | None = None,
    ) -> None:
        """Write ``value`` (JSON-compatible, not ``None``) under ``key``.

        ``retention``: a positive ``timedelta``, ``NEVER_EXPIRE``, or ``None`` for
        ``[state_store] default_retention_days``. ``if_version``: write only if the
        key's current version is this number (``0``: only if it is absent), else raise
        ``VersionConflictError`` and write nothing; ``None``: last writer wins.
        """
        text, expires_at = self._prepare_set(key, value, retention)
        self._backend.set_item(
            self._scope, key, text, expires_at=expires_at,
            if_version=check_version_arg(if_version), updated_by=self._updated_by,
        )  # fmt: skip

    def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        retention: timedelta | None = None,
        retries: int = DEFAULT_UPDATE_RETRIES,
    ) -> Any:
        """Read-modify-write without lost updates: ``fn(current or default)`` is written
        only if nobody wrote ``key`` in between, else re-read and re-applied, up to
        ``retries`` more times (then ``VersionConflictError``). Returns the new value."""
        steps = update_steps(
            self._backend, self._scope, key, self._updated_by,
            lambda new: self._prepare_set(key, new, retention),
        )  # fmt: skip
        return run_update(*steps, fn, default, retries, to_item)

    def clear(self, *, all_map_indices: bool = False) -> None:
        """Remove every key of this task instance, or of every map index of the task."""
        self._backend.clear(self._scope, all_map_indices=bool(all_map_indices))

    async def aset(
        self,
        key: str,
        value: Any,
        *,
        retention: timedelta | None = None,
        if_version: int | None = None,
    ) -> None:
        """Async twin of :meth:`set`."""
        text, expires_at = self._prepare_set(key, value, retention)
        await self._backend.aset_item(
            self._scope, key, text, expires_at=expires_at,
            if_version=check_version_arg(if_version), updated_by=self._updated_by,
        )  # fmt: skip

    async def aupdate(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        retention: timedelta | None = None,
        retries: int = DEFAULT_UPDATE_RETRIES,
    ) -> Any:
        """Async twin of :meth:`update` (``fn`` stays a plain function)."""
        steps = aupdate_steps(
            self._backend, self._scope, key, self._updated_by,
            lambda new: self._prepare_set(key, new, retention),
        )  # fmt: skip
        return await arun_update(*steps, fn, default, retries, to_item)

    async def aclear(self, *, all_map_indices: bool = False) -> None:
        """Async twin of :meth:`clear`."""
        await self._backend.aclear(self._scope, all_map_indices=bool(all_map_indices))


class AssetStateAccessor(AssetBatches, KeyedState):
    """State of one asset: persists across runs until deleted, cleared or swept."""

    __slots__ = ("_max_bytes", "_scope", "_store", "_updated_by")
    _scope: AssetScope

    def __init__(
        self, asset: object, *, store: StateStore | None = None, updated_by: object = None
    ) -> None:
        self._scope = to_asset_scope(asset)
        self._store = _resolve_store(store)
        self._max_bytes = _value_limit(self._store)
        # Who writes: the writing task instance, say, so a watermark can be traced back.
        self._updated_by = writer_name(updated_by) or self._store.updated_by

    @property
    def scope(self) -> AssetScope:
        """The asset this accessor reads and writes."""
        return self._scope

    def __repr__(self) -> str:
        return f"AssetStateAccessor({self._scope!r})"

    def __setitem__(self, key: str, value: Any) -> None:
        """``state[key] = value``: :meth:`set`."""
        self.set(key, value)

    def _prepare_set(self, key: str, value: Any) -> str:
        check_key(key)
        return encode_value(escape_value(value), max_bytes=self._max_bytes)

    def set(self, key: str, value: Any, *, if_version: int | None = None) -> None:
        """Write ``value`` under ``key``; asset state has no retention. ``if_version``:
        as :meth:`TaskStateAccessor.set`."""
        self._backend.set_item(
            self._scope, key, self._prepare_set(key, value),
            if_version=check_version_arg(if_version), updated_by=self._updated_by,
        )  # fmt: skip

    def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        retries: int = DEFAULT_UPDATE_RETRIES,
    ) -> Any:
        """Read-modify-write without lost updates; see :meth:`TaskStateAccessor.update`.
        For example, advance a watermark only forward when two runs race:
        ``state.update("watermark", lambda w: max(w, new), default=new)``."""
        steps = update_steps(
            self._backend, self._scope, key, self._updated_by,
            lambda new: (self._prepare_set(key, new), None),
        )  # fmt: skip
        return run_update(*steps, fn, default, retries, to_item)

    def clear(self) -> None:
        """Remove every key of this asset."""
        self._backend.clear(self._scope)

    async def aset(self, key: str, value: Any, *, if_version: int | None = None) -> None:
        """Async twin of :meth:`set`."""
        await self._backend.aset_item(
            self._scope, key, self._prepare_set(key, value),
            if_version=check_version_arg(if_version), updated_by=self._updated_by,
        )  # fmt: skip

    async def aupdate(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        retries: int = DEFAULT_UPDATE_RETRIES,
    ) -> Any:
        """Async twin of :meth:`update`."""
        steps = aupdate_steps(
            self._backend, self._scope, key, self._updated_by,
            lambda new: (self._prepare_set(key, new), None),
        )  # fmt: skip
        return await arun_update(*steps, fn, default, retries, to_item)

    async def aclear(self) -> None:
        """Async twin of :meth:`clear`."""
        await self._backend.aclear(self._scope)


class AssetStateAccessors(BatchShorthands):
    """The asset state a task may use: one accessor per declared inlet or outlet.

    Subscript with any asset reference (an ``AssetScope``, a name, or an object with
    ``.name``/``.uri`` such as an Airflow ``Asset``); it matches a declared asset by name,
    uri or id. Assets declared only as outlets work too. With exactly one declared
    asset, ``get/set/delete/clear`` (and async twins) may be called on this object.
    """

    __slots__ = ("_accessors",)

    def __init__(
        self,
        inlets: Iterable[object] = (),
        outlets: Iterable[object] = (),
        *,
        store: StateStore | None = None,
        updated_by: object = None,
    ) -> None:
        resolved = _resolve_store(store)
        declared: list[AssetScope] = []
        for asset in (*inlets, *outlets):
            scope = to_asset_scope(asset)
            if not any(scope.matches(seen) for seen in declared):
                declared.append(scope)
        self._accessors = tuple(
            AssetStateAccessor(s, store=resolved, updated_by=updated_by) for s in declared
        )

    def __getitem__(self, asset: object) -> AssetStateAccessor:
        wanted = to_asset_scope(asset)
        for accessor in self._accessors:
            if wanted.matches(accessor.scope):
                return accessor
        names = ", ".join(a.scope.describe() for a in self._accessors) or "none"
        raise UndeclaredAssetError(
            f"{wanted.describe()} is not an inlet or outlet of this task (declared: {names})"
        )

    def __contains__(self, asset: object) -> bool:
        try:
            self[asset]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[AssetScope]:
        return (accessor.scope for accessor in self._accessors)

    def __len__(self) -> int:
        return len(self._accessors)

    def __repr__(self) -> str:
        return f"AssetStateAccessors({[a.scope for a in self._accessors]!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AssetStateAccessors):
            return NotImplemented
        return self._accessors == other._accessors

    def __hash__(self) -> int:
        return hash(self._accessors)

    @property
    def _only(self) -> AssetStateAccessor:
        if len(self._accessors) != 1:
            raise AmbiguousAssetError(
                f"this task declares {len(self._accessors)} assets; the shorthand needs "
                "exactly one, so subscript instead: asset_state[my_asset].get(...)"
            )
        return self._accessors[0]

    @overload
    def get(self, key: str) -> Any: ...
    @overload
    def get(self, key: str, default: T) -> Any | T: ...
    def get(self, key: str, default: Any = None) -> Any:
        """Shorthand for ``self[only_asset].get(key, default)``."""
        return self._only.get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Shorthand for ``self[only_asset].set(key, value)``."""
        self._only.set(key, value)

    def delete(self, key: str) -> None:
        """Shorthand for ``self[only_asset].delete(key)``."""
        self._only.delete(key)

    def clear(self) -> None:
        """Shorthand for ``self[only_asset].clear()``."""
        self._only.clear()

    @overload
    async def aget(self, key: str) -> Any: ...
    @overload
    async def aget(self, key: str, default: T) -> Any | T: ...
    async def aget(self, key: str, default: Any = None) -> Any:
        """Async twin of :meth:`get`."""
        return await self._only.aget(key, default)

    async def aset(self, key: str, value: Any) -> None:
        """Async twin of :meth:`set`."""
        await self._only.aset(key, value)

    async def adelete(self, key: str) -> None:
        """Async twin of :meth:`delete`."""
        await self._only.adelete(key)

    async def aclear(self) -> None:
        """Async twin of :meth:`clear`."""
        await self._only.aclear()
