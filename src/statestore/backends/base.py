"""The backend contract: eight abstract methods, and a loader for dotted paths.

A backend stores JSON *text* (the accessor has already validated and encoded the value)
per scope and key. The contract every backend keeps, checked by ``statestore.testing``:

* ``get`` of a missing key returns ``None``; so does ``get`` of a key whose
  ``expires_at`` has passed, whether or not cleanup has removed it yet.
* ``set`` overwrites atomically: last writer wins, concurrent writers never fail.
* ``delete`` of a missing key is a no-op; ``clear`` of an empty scope is a no-op.
* ``clear(TaskScope, all_map_indices=True)`` removes the state of every map index of
  that task in that run; otherwise only the scope's own map index.
* Task state and asset state never collide, and neither do two different scopes.
* Keys are compared exactly (case- and whitespace-sensitive).
* The async twins behave exactly like the sync methods.
* Batches (``get_many``, ``get_items``, ``set_many``, ``delete_many``) answer exactly
  as the single-key methods would, key by key; the defaults here loop over them.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from statestore.exceptions import ConfigError, UnsupportedOperationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    from statestore.items import StoredItem
    from statestore.metastore.key_updates import KeyUpdater
    from statestore.scopes import AssetScope, StateScope, TaskScope

__all__ = ["BaseStateBackend", "load_backend"]


class BaseStateBackend(ABC):
    """Where task and asset state live. Subclass it and implement the eight methods.

    ``session`` lets a host pass its own SQLAlchemy session so the write joins the
    host's transaction; backends that are not SQL-based ignore it.
    """

    # -- the eight abstract methods -------------------------------------------------

    @abstractmethod
    def get(self, scope: StateScope, key: str, *, session: Session | None = None) -> str | None:
        """Return the stored JSON text, or ``None`` if absent or expired."""

    @abstractmethod
    def set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> None:
        """Write or overwrite ``key``; ``expires_at`` is aware UTC, ``None`` = never."""

    @abstractmethod
    def delete(self, scope: StateScope, key: str, *, session: Session | None = None) -> None:
        """Remove ``key``; a missing key is a no-op."""

    @abstractmethod
    def clear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Session | None = None
    ) -> None:
        """Remove every key of ``scope`` (of every map index with ``all_map_indices``)."""

    @abstractmethod
    async def aget(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> str | None:
        """Async twin of :meth:`get`."""

    @abstractmethod
    async def aset(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        """Async twin of :meth:`set`."""

    @abstractmethod
    async def adelete(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> None:
        """Async twin of :meth:`delete`."""

    @abstractmethod
    async def aclear(
        self,
        scope: StateScope,
        *,
        all_map_indices: bool = False,
        session: AsyncSession | None = None,
    ) -> None:
        """Async twin of :meth:`clear`."""

    # -- optional, with safe defaults -----------------------------------------------

    def cleanup(self, *, now: datetime | None = None) -> int:
        """Delete expired task state and return how many keys went; default: nothing.

        statestore's own maintenance commands only clean the metastore backend; a
        custom backend with its own retention implements this and calls it from its
        own maintenance process.
        """
        return 0

    async def acleanup(self, *, now: datetime | None = None) -> int:
        """Async twin of :meth:`cleanup`."""
        return 0

    # -- optional capabilities: versions and provenance --------------------------------
    #
    # A backend without them still works: plain sets go through ``set`` (no provenance
    # kept) and versioned calls raise ``UnsupportedOperationError``. The conformance
    # suite skips their section for such a backend.

    def get_item(
        self, scope: StateScope, key: str, *, session: Session | None = None
    ) -> StoredItem | None:
        """The live row of ``key`` with its version and provenance, or ``None``."""
        raise UnsupportedOperationError(f"{type(self).__name__} does not keep versions")

    def set_item(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        if_version: int | None = None,
        updated_by: str | None = None,
        session: Session | None = None,
    ) -> None:
        """``set`` that records ``updated_by`` and, with ``if_version``, writes only if
        the key's current version is that number (0: only if the key is absent or
        expired), raising ``VersionConflictError`` otherwise -- atomically."""
        if if_version is not None:
            raise UnsupportedOperationError(f"{type(self).__name__} does not keep versions")
        self.set(scope, key, value, expires_at=expires_at, session=session)

    async def aget_item(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> StoredItem | None:
        """Async twin of :meth:`get_item`."""
        raise UnsupportedOperationError(f"{type(self).__name__} does not keep versions")

    async def aset_item(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        if_version: int | None = None,
        updated_by: str | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        """Async twin of :meth:`set_item`."""
        if if_version is not None:
            raise UnsupportedOperationError(f"{type(self).__name__} does not keep versions")
        await self.aset(scope, key, value, expires_at=expires_at, session=session)

    def _key_updater(
        self, scope: StateScope, key: str, updated_by: str | None, *, in_loop: bool = False
    ) -> KeyUpdater | None:
        """``update``'s short read-and-replace of one key (``metastore.key_updates``;
        ``in_loop``: for the running event loop), or ``None``: ``update`` goes through
        ``get_item`` and ``set_item``, as it does for every backend but the metastore."""
        return None

    # -- optional capability: write receipts ----------------------------------------
    #
    # What a state server calls for a conditional write that names a write id
    # (``statestore.write_ids``). The default is the plain conditional write: a backend
    # that keeps no receipts answers a copy of an applied request with the conflict,
    # as HTTP's If-Match alone would. A backend that keeps them says so with
    # ``keeps_write_receipts``; a server tells its clients, which resend an unanswered
    # conditional write only then.

    keeps_write_receipts: bool = False
    """Whether :meth:`set_item_once` keeps receipts (a state server then tells its
    clients that resending an unanswered conditional write is safe)."""

    def set_item_once(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        write_id: str,
        if_version: int,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
    ) -> None:
        """``set_item(..., if_version=...)`` applied at most once per ``write_id``: a
        copy of a write that was applied is answered as applied (no error, no write)."""
        self.set_item(
            scope, key, value, expires_at=expires_at, if_version=if_version, updated_by=updated_by
        )

    async def aset_item_once(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        write_id: str,
        if_version: int,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
    ) -> None:
        """Async twin of :meth:`set_item_once`."""
        await self.aset_item(
            scope, key, value, expires_at=expires_at, if_version=if_version, updated_by=updated_by
        )

    # -- optional capability: batches ------------------------------------------------
    #
    # The accessor has validated, encoded and de-duplicated everything before these are
    # called, and never calls them with no keys. The defaults loop over the single-key
    # methods: correct on any backend, but one round trip per key, and ``set_many`` is
    # then all-or-nothing only up to validation -- a backend failure part-way through
    # (the database going away at key 40 of 100) leaves the keys before it written,
    # each of them whole. A backend that can do better overrides all eight.

    def get_many(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> dict[str, str]:
        """The JSON text of each live key of ``keys`` (absent and expired left out)."""
        found: dict[str, str] = {}
        for key in keys:
            value = self.get(scope, key, session=session)
            if value is not None:
                found[key] = value
        return found

    def get_items(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> dict[str, StoredItem]:
        """:meth:`get_many` with versions and provenance, as :meth:`get_item`."""
        found: dict[str, StoredItem] = {}
        for key in keys:
            item = self.get_item(scope, key, session=session)
            if item is not None:
                found[key] = item
        return found

    def set_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        *,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
        session: Session | None = None,
    ) -> None:
        """Write every ``(key, JSON text)`` of ``entries`` (distinct keys) with one
        ``expires_at``; all or nothing where the backend can (see above)."""
        for key, value in entries:
            self.set_item(
                scope, key, value, expires_at=expires_at, updated_by=updated_by, session=session
            )

    def delete_many(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> None:
        """Remove each of ``keys``; absent ones are a no-op."""
        for key in keys:
            self.delete(scope, key, session=session)

    async def aget_many(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> dict[str, str]:
        """Async twin of :meth:`get_many`."""
        found: dict[str, str] = {}
        for key in keys:
            value = await self.aget(scope, key, session=session)
            if value is not None:
                found[key] = value
        return found

    async def aget_items(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> dict[str, StoredItem]:
        """Async twin of :meth:`get_items`."""
        found: dict[str, StoredItem] = {}
        for key in keys:
            item = await self.aget_item(scope, key, session=session)
            if item is not None:
                found[key] = item
        return found

    async def aset_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        *,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        """Async twin of :meth:`set_many`."""
        for key, value in entries:
            await self.aset_item(
                scope, key, value, expires_at=expires_at, updated_by=updated_by, session=session
            )

    async def adelete_many(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> None:
        """Async twin of :meth:`delete_many`."""
        for key in keys:
            await self.adelete(scope, key, session=session)

    # -- optional capability: listing -------------------------------------------------

    def list_items(
        self,
        scope: StateScope,
        *,
        prefix: str = "",
        after: str = "",
        limit: int = 1000,
        values: bool = True,
        session: Session | None = None,
    ) -> list[tuple[str, str | None]]:
        """Up to ``limit`` live ``(key, JSON text)`` pairs of ``scope`` whose key starts
        with ``prefix`` and sorts after ``after``, in code point order of the keys
        (``values=False``: the text may be ``None``). Accessors page through it."""
        raise UnsupportedOperationError(f"{type(self).__name__} cannot list keys")

    async def alist_items(
        self,
        scope: StateScope,
        *,
        prefix: str = "",
        after: str = "",
        limit: int = 1000,
        values: bool = True,
        session: AsyncSession | None = None,
    ) -> list[tuple[str, str | None]]:
        """Async twin of :meth:`list_items`."""
        raise UnsupportedOperationError(f"{type(self).__name__} cannot list keys")

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately a no-op
        """Release connections and other resources; the default holds none."""

    async def aclose(self) -> None:  # noqa: B027
        """Async twin of :meth:`close`."""

    # -- worker-side hooks: identity by default ----------------------------------------
    #
    # Only called on the backend named by ``[workers] state_backend``. ``value`` is the
    # validated JSON text of the value; the returned reference is stored in its place.

    def serialize_task_state_to_ref(self, *, value: str, key: str, scope: TaskScope) -> str:
        """Store ``value`` elsewhere and return a reference to keep in its place.

        The reference must be deterministic for ``(scope, key)`` so that a retry
        overwrites the object instead of orphaning one.
        """
        return value

    def deserialize_task_state_from_ref(self, stored: str) -> str:
        """Resolve a reference made by :meth:`serialize_task_state_to_ref`.

        Raise ``LookupError`` if the object is gone; the key then reads as absent.
        """
        return stored

    def delete_task_state_objects(  # noqa: B027 - optional hook, a no-op by default
        self, *, scope: TaskScope, key: str | None = None, all_map_indices: bool = False
    ) -> None:
        """Delete the objects of one key, or (``key=None``) of a whole task instance.

        Called *after* the database rows are gone, so a crash in between leaves an
        orphan object (found by ``statestore objects gc``), never a dangling reference.
        """

    def serialize_asset_state_to_ref(self, *, value: str, key: str, scope: AssetScope) -> str:
        """Asset-state twin of :meth:`serialize_task_state_to_ref`."""
        return value

    def deserialize_asset_state_from_ref(self, stored: str) -> str:
        """Asset-state twin of :meth:`deserialize_task_state_from_ref`."""
        return stored

    def delete_asset_state_objects(  # noqa: B027
        self, *, scope: AssetScope, key: str | None = None
    ) -> None:
        """Asset-state twin of :meth:`delete_task_state_objects`."""

    async def aserialize_task_state_to_ref(self, *, value: str, key: str, scope: TaskScope) -> str:
        """Async twin of :meth:`serialize_task_state_to_ref`."""
        return self.serialize_task_state_to_ref(value=value, key=key, scope=scope)

    async def adeserialize_task_state_from_ref(self, stored: str) -> str:
        """Async twin of :meth:`deserialize_task_state_from_ref`."""
        return self.deserialize_task_state_from_ref(stored)

    async def adelete_task_state_objects(
        self, *, scope: TaskScope, key: str | None = None, all_map_indices: bool = False
    ) -> None:
        """Async twin of :meth:`delete_task_state_objects`."""
        self.delete_task_state_objects(scope=scope, key=key, all_map_indices=all_map_indices)

    async def aserialize_asset_state_to_ref(
        self, *, value: str, key: str, scope: AssetScope
    ) -> str:
        """Async twin of :meth:`serialize_asset_state_to_ref`."""
        return self.serialize_asset_state_to_ref(value=value, key=key, scope=scope)

    async def adeserialize_asset_state_from_ref(self, stored: str) -> str:
        """Async twin of :meth:`deserialize_asset_state_from_ref`."""
        return self.deserialize_asset_state_from_ref(stored)

    async def adelete_asset_state_objects(
        self, *, scope: AssetScope, key: str | None = None
    ) -> None:
        """Async twin of :meth:`delete_asset_state_objects`."""
        self.delete_asset_state_objects(scope=scope, key=key)


def load_backend(path: str, *, setting: str = "[state_store] backend") -> type[BaseStateBackend]:
    """Resolve ``"package.module.Class"`` to a :class:`BaseStateBackend` subclass.

    Nothing is instantiated here, and anything that is not such a subclass (a missing
    module, a function, an unrelated class, the ABC itself) is a :class:`ConfigError`
    naming the setting, so a typo fails at start-up rather than at the first write.
    """
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{setting} = {path!r}: expected a dotted path like 'pkg.mod.Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{setting} = {path!r}: cannot import {module_name!r}: {exc}") from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{setting} = {path!r}: {module_name!r} has no {attr!r}") from None
    if not isinstance(obj, type) or not issubclass(obj, BaseStateBackend):
        raise ConfigError(f"{setting} = {path!r}: not a BaseStateBackend subclass")
    if obj is BaseStateBackend or getattr(obj, "__abstractmethods__", None):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ()))) or "all"
        raise ConfigError(f"{setting} = {path!r}: abstract backend (missing: {missing})")
    return obj
