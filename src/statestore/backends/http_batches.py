"""Batches through a state server: one HTTP request per batch (``wire_batch``).

Mixed into :class:`~statestore.backends.http.HttpStateBackend`, on its ``_call`` and
``_acall`` (so batches get the same connection pools, retries and deadline). Every batch
request may be resent after an ambiguous failure: a get is a read, a delete of a key
already deleted is a no-op, and a set-many writes the same values again (their
versions go up once more, as a resent one-key ``PUT`` would).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import httpx

from statestore import wire, wire_batch
from statestore.backends import http_messages as messages
from statestore.backends.http_messages import Call

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    from statestore.items import StoredItem
    from statestore.scopes import StateScope

__all__ = ["HttpBatches", "delete_many_call", "get_many_call", "read_items", "set_many_call"]

T = TypeVar("T")
_JSON = {"Content-Type": "application/json"}


def get_many_call(scope: StateScope, keys: Sequence[str]) -> Call:
    """Read many keys, values and metadata (``get_many`` and ``get_items`` alike)."""
    path = wire_batch.paths_for(scope)[0]
    return Call("POST", path, wire.scope_params(scope), _JSON,
                wire_batch.keys_body(keys))  # fmt: skip


def set_many_call(
    scope: StateScope,
    entries: Sequence[tuple[str, str]],
    *,
    expires_at: datetime | None,
    updated_by: str | None,
) -> Call:
    """Write many keys, all or nothing."""
    params = wire_batch.set_params(scope, expires_at=expires_at, updated_by=updated_by)
    return Call("POST", wire_batch.paths_for(scope)[1], params, _JSON,
                wire_batch.entries_body(entries))  # fmt: skip


def delete_many_call(scope: StateScope, keys: Sequence[str]) -> Call:
    """Delete many keys (absent ones: still a success)."""
    path = wire_batch.paths_for(scope)[2]
    return Call("POST", path, wire.scope_params(scope), _JSON,
                wire_batch.keys_body(keys))  # fmt: skip


def read_items(response: httpx.Response, server: str) -> dict[str, StoredItem]:
    """A get-many answer, or the typed error."""
    if not response.is_success:
        raise messages.error_of(response, server)
    return wire_batch.items_from_json(response.content)


def _values(items: dict[str, StoredItem]) -> dict[str, str]:
    return {key: item.value for key, item in items.items()}


class HttpBatches:
    """The eight batch methods of ``HttpStateBackend``."""

    if TYPE_CHECKING:

        def _call(self, call: Call, read: Callable[[httpx.Response, str], T]) -> T: ...
        def _acall(self, call: Call, read: Callable[[httpx.Response, str], T]) -> Awaitable[T]: ...

    def get_many(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> dict[str, str]:
        return _values(self._call(get_many_call(scope, keys), read_items))

    def get_items(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> dict[str, StoredItem]:
        return self._call(get_many_call(scope, keys), read_items)

    def set_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        *,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
        session: Session | None = None,
    ) -> None:
        call = set_many_call(scope, entries, expires_at=expires_at, updated_by=updated_by)
        self._call(call, messages.read_done)

    def delete_many(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> None:
        self._call(delete_many_call(scope, keys), messages.read_done)

    async def aget_many(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> dict[str, str]:
        return _values(await self._acall(get_many_call(scope, keys), read_items))

    async def aget_items(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> dict[str, StoredItem]:
        return await self._acall(get_many_call(scope, keys), read_items)

    async def aset_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        *,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        call = set_many_call(scope, entries, expires_at=expires_at, updated_by=updated_by)
        await self._acall(call, messages.read_done)

    async def adelete_many(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> None:
        await self._acall(delete_many_call(scope, keys), messages.read_done)
