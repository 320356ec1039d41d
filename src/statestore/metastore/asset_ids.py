"""Asset registry ids remembered per backend, so that an asset read is one single-table
lookup instead of a join with the registry.

Why remembering is safe: statestore never deletes, renames or re-keys a registry row
(a sweep deletes an asset's *state*, deactivation flips a flag, and nothing else writes
the row), and ids come from a sequence or auto-increment that never hands one out twice.
So once a name (or uri) has resolved to an id, it resolves to that id for as long as
the database lives. Only ids read through the backend's own autocommit engine are
learnt, so only committed rows: a host's transaction that registers an asset and then
rolls back cannot leave an id behind that a later registration would reuse (SQLite's
rowid would). Entries still expire after :data:`REMEMBER_S`, which bounds what a
database restored from an older backup under running processes could confuse.

What is *not* remembered: whether an asset is active. Any process may deactivate an
asset at any moment, so writes still address the asset by name and check the flag in
their own statement; reads never needed it. A write that matches no active asset row
(unknown, inactive, or a registry emptied behind the process's back: a test harness's
``DELETE``, a restore) makes the backend forget every remembered id before it looks
into why, so its own next reads resolve afresh. What stays possible: the registry
emptied and refilled by *another* process while this one keeps reading, which it then
does by a stale id for at most :data:`REMEMBER_S`.

The first read of an asset resolves its id in the same statement and round trip
(``asset LEFT JOIN asset_state``), so a read is still one statement and one trip.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Select, and_, bindparam, select

from statestore.metastore.digests import ref_digest
from statestore.metastore.statements import _asset_match, _item_columns, _not_expired
from statestore.metastore.tables import asset, asset_state
from statestore.scopes import AssetScope, StateScope

__all__ = [
    "DIRECT_GET",
    "DIRECT_GET_ITEM",
    "REMEMBER_S",
    "RESOLVE_GET",
    "RESOLVE_GET_ITEM",
    "AssetIds",
    "lookup_of",
    "resolving_params",
]

REMEMBER_S = 300.0
"""How long a resolved id is used before it is resolved again (seconds)."""

_s = asset_state.c
_key_match = _s.key_digest == bindparam("key_digest", type_=_s.key_digest.type)


def _direct(columns: list[Any]) -> Select[Any]:
    """The live row of one key of a known asset id: the state table alone."""
    return select(*columns).where(
        _s.asset_id == bindparam("asset_id", type_=_s.asset_id.type),
        _key_match,
        _not_expired(_s.expires_at),
    )


def _resolving(columns: list[Any], lookup: str) -> Select[Any]:
    """The asset's id and the live row of one key (NULLs when absent), in one read:
    no row at all means the asset is not registered."""
    state = and_(_s.asset_id == asset.c.id, _key_match, _not_expired(_s.expires_at))
    return (
        select(asset.c.id, *columns)
        .select_from(asset.outerjoin(asset_state, state))
        .where(_asset_match(lookup))
    )


DIRECT_GET = _direct([_s.value])
DIRECT_GET_ITEM = _direct(_item_columns(asset_state))
RESOLVE_GET = {lookup: _resolving([_s.value], lookup) for lookup in ("name", "uri")}
RESOLVE_GET_ITEM = {
    lookup: _resolving(_item_columns(asset_state), lookup) for lookup in ("name", "uri")
}


def lookup_of(scope: AssetScope) -> tuple[str, str] | None:
    """What a scope resolves by (``name`` wins, as in every statement), or ``None``
    for an id-only scope, which needs no resolving."""
    if scope.name is not None:
        return "name", scope.name
    if scope.uri is not None:
        return "uri", scope.uri
    return None


class AssetIds:
    """Resolved ids of one backend: ``(lookup, name or uri) -> (id, until)``.

    Plain dict reads and writes (atomic under the GIL): threads share it without a lock,
    and at worst two of them resolve the same asset once each.
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], tuple[int, float]] = {}

    def known(self, scope: AssetScope) -> int | None:
        """The asset's id, if resolved recently (an id-only scope's own id)."""
        ref = lookup_of(scope)
        if ref is None:
            return scope.asset_id
        entry = self._ids.get(ref)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def hint(self, scope: StateScope, fast: bool) -> dict[str, Any]:
        """A read plan's arguments on a fast path (the backend's own engine, no host
        session): the remembered id, or a read that resolves it; elsewhere none."""
        if not fast or not isinstance(scope, AssetScope):
            return {}
        known = self.known(scope)
        return {"asset_id": known} if known is not None else {"resolve": True}

    def remember(self, scope: AssetScope, asset_id: int) -> None:
        """Record the id a resolving read returned."""
        ref = lookup_of(scope)
        if ref is not None:
            self._ids[ref] = (int(asset_id), time.monotonic() + REMEMBER_S)

    def learn(self, scope: AssetScope, row: tuple[Any, ...] | None, *, whole: bool) -> Any:
        """What a resolving read found, as the plain read would return it (the value,
        or with ``whole`` the row's columns), after remembering the asset's id."""
        if row is None:  # no such asset registered: nothing stored under it either
            return None
        self.remember(scope, row[0])
        if row[1] is None:  # registered, but no live row (a value is never NULL)
            return None
        return row[1:] if whole else row[1]

    def forget(self) -> None:
        """Drop every entry (a forked child starts over; nothing depends on it)."""
        self._ids = {}


def resolving_params(scope: AssetScope, key_digest: bytes) -> tuple[str, dict[str, Any]]:
    """The lookup and parameters of a resolving read (``now`` added by the caller)."""
    ref = lookup_of(scope)
    assert ref is not None
    return ref[0], {"asset_digest": ref_digest(ref[1]), "key_digest": key_digest}
