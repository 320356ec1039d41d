"""A complete backend in a dict: for tests, notebooks and ephemeral runs.

It keeps every promise of the contract (expiry on read, exact keys, scope isolation,
atomic overwrite) so code tested against it behaves the same on the metastore. Nothing
survives the process. One lock guards the dicts; the async methods take the same lock
and never await while holding it, so they are safe from threads and tasks alike.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from statestore.backends.base import BaseStateBackend
from statestore.exceptions import UnknownAssetError
from statestore.items import StoredItem, check_version
from statestore.retention import is_expired, utcnow
from statestore.scopes import AssetScope, StateScope, TaskScope
from statestore.write_ids import RECEIPT_TTL, receipt_id

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["InMemoryStateBackend"]

_Entries = dict[str, StoredItem]


@dataclass
class _Asset:
    name: str
    uri: str | None
    asset_id: int


class InMemoryStateBackend(BaseStateBackend):
    """Thread-safe, asyncio-safe, process-local state. Honours ``expires_at`` on read."""

    keeps_write_receipts = True
    """Receipts in this process, kept as long as the metastore keeps them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (dag_id, run_id, task_id) -> map_index -> key -> StoredItem; nesting
        # by task keeps clear(all_map_indices=True) proportional to that task's state.
        self._tasks: dict[tuple[str, str, str], dict[str, _Entries]] = {}
        self._assets: dict[str, _Entries] = {}
        self._registry: dict[str, _Asset] = {}
        # Write receipts (statestore.write_ids) in the order written, so the oldest
        # are dropped from the front once past RECEIPT_TTL.
        self._receipts: dict[bytes, datetime] = {}

    def __repr__(self) -> str:
        return "InMemoryStateBackend()"

    # -- asset identity -------------------------------------------------------------

    def _find_asset(self, scope: AssetScope) -> _Asset | None:
        if scope.name is not None:
            return self._registry.get(scope.name)
        for asset in self._registry.values():
            if (scope.uri is not None and asset.uri == scope.uri) or (
                scope.asset_id is not None and asset.asset_id == scope.asset_id
            ):
                return asset
        return None

    def _asset_for_write(self, scope: AssetScope) -> _Asset:
        asset = self._find_asset(scope)
        if asset is None:
            if scope.name is None and scope.uri is None:
                raise UnknownAssetError(f"no asset has id {scope.asset_id}")
            # Like the reference: an asset given only by uri is named by its uri.
            name = scope.name if scope.name is not None else scope.uri
            assert name is not None
            asset = _Asset(name=name, uri=scope.uri, asset_id=len(self._registry) + 1)
            self._registry[name] = asset
        elif asset.uri is None and scope.uri is not None:
            asset.uri = scope.uri
        return asset

    # -- the shared, lock-held core -------------------------------------------------------

    def _entries(self, scope: StateScope, *, create: bool) -> _Entries | None:
        if isinstance(scope, TaskScope):
            task_key = (scope.dag_id, scope.run_id, scope.task_id)
            if create:
                return self._tasks.setdefault(task_key, {}).setdefault(scope.instance, {})
            return self._tasks.get(task_key, {}).get(scope.instance)
        if create:
            return self._assets.setdefault(self._asset_for_write(scope).name, {})
        asset = self._find_asset(scope)
        return None if asset is None else self._assets.get(asset.name)

    def _get_item(self, scope: StateScope, key: str) -> StoredItem | None:
        with self._lock:
            entries = self._entries(scope, create=False)
            found = None if entries is None else entries.get(key)
        if found is None or is_expired(found.expires_at, utcnow()):
            return None
        return found

    def _get(self, scope: StateScope, key: str) -> str | None:
        found = self._get_item(scope, key)
        return None if found is None else found.value

    def _set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        expires_at: datetime | None,
        if_version: int | None = None,
        updated_by: str | None = None,
        write_id: str | None = None,
    ) -> None:
        now = utcnow()
        receipt = None if write_id is None else receipt_id(scope, key, write_id)
        with self._lock:
            if receipt is not None and receipt in self._receipts:
                return  # a copy of a write applied before: answered as applied
            if if_version is not None:
                check_version(self._live(scope, key, now), if_version, scope, key)
            entries = self._entries(scope, create=True)
            assert entries is not None
            old = entries.get(key)
            version = 1 if old is None else old.version + 1
            entries[key] = StoredItem(value, version, now, updated_by, expires_at)
            if receipt is not None:
                self._keep_receipt(receipt, now)

    def _keep_receipt(self, receipt: bytes, now: datetime) -> None:
        receipts = self._receipts
        receipts[receipt] = now
        oldest = next(iter(receipts.values()))
        while now - oldest > RECEIPT_TTL:
            del receipts[next(iter(receipts))]
            oldest = next(iter(receipts.values()))

    def _live(self, scope: StateScope, key: str, now: datetime) -> StoredItem | None:
        entries = self._entries(scope, create=False)
        found = None if entries is None else entries.get(key)
        return None if found is None or is_expired(found.expires_at, now) else found

    def _delete(self, scope: StateScope, key: str) -> None:
        with self._lock:
            entries = self._entries(scope, create=False)
            if entries is not None:
                entries.pop(key, None)

    def _clear(self, scope: StateScope, all_map_indices: bool) -> None:
        with self._lock:
            if isinstance(scope, TaskScope):
                task_key = (scope.dag_id, scope.run_id, scope.task_id)
                if all_map_indices:
                    self._tasks.pop(task_key, None)
                else:
                    self._tasks.get(task_key, {}).pop(scope.instance, None)
                return
            asset = self._find_asset(scope)
            if asset is not None:
                self._assets.pop(asset.name, None)

    def _cleanup(self, now: datetime | None) -> int:
        now = now or utcnow()
        deleted = 0
        with self._lock:
            for by_index in self._tasks.values():
                for entries in by_index.values():
                    expired = [k for k, i in entries.items() if is_expired(i.expires_at, now)]
                    for key in expired:
                        del entries[key]
                    deleted += len(expired)
        return deleted

    def _get_items(self, scope: StateScope, keys: Sequence[str]) -> dict[str, StoredItem]:
        now = utcnow()
        with self._lock:
            entries = self._entries(scope, create=False) or {}
            found = {key: entries[key] for key in keys if key in entries}
        return {k: item for k, item in found.items() if not is_expired(item.expires_at, now)}

    def _get_many(self, scope: StateScope, keys: Sequence[str]) -> dict[str, str]:
        return {key: item.value for key, item in self._get_items(scope, keys).items()}

    def _set_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        expires_at: datetime | None,
        updated_by: str | None,
    ) -> None:
        # Under one lock: no reader sees half a batch, and it cannot fail half-way.
        now = utcnow()
        with self._lock:
            stored = self._entries(scope, create=True)
            assert stored is not None
            for key, value in entries:
                old = stored.get(key)
                version = 1 if old is None else old.version + 1
                stored[key] = StoredItem(value, version, now, updated_by, expires_at)

    def _delete_many(self, scope: StateScope, keys: Sequence[str]) -> None:
        with self._lock:
            entries = self._entries(scope, create=False)
            if entries is not None:
                for key in keys:
                    entries.pop(key, None)

    # -- the contract ---------------------------------------------------------------------

    def get(self, scope: StateScope, key: str, *, session: Session | None = None) -> str | None:
        return self._get(scope, key)

    def _list(
        self, scope: StateScope, prefix: str, after: str, limit: int
    ) -> list[tuple[str, str | None]]:
        now = utcnow()
        with self._lock:
            entries = self._entries(scope, create=False) or {}
            live: list[tuple[str, str | None]] = [
                (key, item.value)
                for key, item in entries.items()
                if key > after and key.startswith(prefix) and not is_expired(item.expires_at, now)
            ]
        return sorted(live)[:limit]  # str order is code point order, as in the databases

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
        return self._list(scope, prefix, after, limit)

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
        return self._list(scope, prefix, after, limit)

    def get_item(
        self, scope: StateScope, key: str, *, session: Session | None = None
    ) -> StoredItem | None:
        return self._get_item(scope, key)

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
        self._set(scope, key, value, expires_at, if_version, updated_by)

    async def aget_item(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> StoredItem | None:
        return self._get_item(scope, key)

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
        self._set(scope, key, value, expires_at, if_version, updated_by)

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
        self._set(scope, key, value, expires_at, if_version, updated_by, write_id)

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
        self._set(scope, key, value, expires_at, if_version, updated_by, write_id)

    def set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> None:
        self._set(scope, key, value, expires_at)

    def delete(self, scope: StateScope, key: str, *, session: Session | None = None) -> None:
        self._delete(scope, key)

    def clear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Session | None = None
    ) -> None:
        self._clear(scope, all_map_indices)

    async def aget(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> str | None:
        return self._get(scope, key)

    async def aset(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        self._set(scope, key, value, expires_at)

    async def adelete(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> None:
        self._delete(scope, key)

    async def aclear(
        self,
        scope: StateScope,
        *,
        all_map_indices: bool = False,
        session: AsyncSession | None = None,
    ) -> None:
        self._clear(scope, all_map_indices)

    def get_many(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> dict[str, str]:
        return self._get_many(scope, keys)

    def get_items(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> dict[str, StoredItem]:
        return self._get_items(scope, keys)

    def set_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        *,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
        session: Session | None = None,
    ) -> None:
        self._set_many(scope, entries, expires_at, updated_by)

    def delete_many(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> None:
        self._delete_many(scope, keys)

    async def aget_many(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> dict[str, str]:
        return self._get_many(scope, keys)

    async def aget_items(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> dict[str, StoredItem]:
        return self._get_items(scope, keys)

    async def aset_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        *,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        self._set_many(scope, entries, expires_at, updated_by)

    async def adelete_many(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> None:
        self._delete_many(scope, keys)

    def cleanup(self, *, now: datetime | None = None) -> int:
        """Drop expired task state (asset state never expires) and return the count."""
        return self._cleanup(now)

    async def acleanup(self, *, now: datetime | None = None) -> int:
        return self._cleanup(now)
