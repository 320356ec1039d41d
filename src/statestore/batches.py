"""Many keys of one scope in one call: ``get_many``, ``get_items``, ``set_many``,
``delete_many`` (and async twins), mixed into every accessor.

The semantics, the same on every backend:

* **Validated before any I/O, all or nothing.** Every key (and, for ``set_many``, every
  value) is checked and encoded first; the first bad entry raises the typed error it
  would raise on its own (``InvalidKeyError``, ``UnserializableValueError``,
  ``ValueTooLargeError``, ...), its message starting with the key, and nothing is read
  or written.
* **Limits.** More distinct keys than ``[state_store] max_batch_keys``, or more UTF-8
  bytes of keys plus encoded values than ``max_batch_bytes`` (``set_many``), raise
  :class:`~statestore.exceptions.BatchTooLargeError` before any I/O.
* **Duplicates.** A key named twice counts once: ``get_many`` returns it once,
  ``delete_many`` deletes it once. ``set_many`` takes a mapping, which cannot repeat one.
* **Empty batches** are valid and cost no round trip: ``{}`` back, nothing written.
* **Results.** ``get_many``/``get_items`` return a ``dict`` in the order the keys were
  first given; absent and expired keys are left out.
* **One write time.** ``set_many`` stamps every key with one ``updated_at`` and one
  ``expires_at`` (from its one ``retention``); every key's version goes up by one.
  Batches take no ``if_version``: use ``update``/``set(..., if_version=)`` per key.

How many round trips a batch costs is the backend's business: one statement on the
metastore, one request through a state server, a loop of single calls on a backend
that has no batch methods of its own (see ``BaseStateBackend.set_many``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from statestore.access_core import decode, to_item
from statestore.backends.worker import escape_value
from statestore.codec import encode_value
from statestore.exceptions import BatchTooLargeError, InvalidTypeError, StateStoreError
from statestore.retention import compute_expires_at, utcnow
from statestore.scopes import MAX_KEY_LENGTH, check_key

if TYPE_CHECKING:
    from statestore.accessors import AssetStateAccessor
    from statestore.backends.base import BaseStateBackend
    from statestore.items import StateItem, StoredItem
    from statestore.scopes import StateScope
    from statestore.store import StateStore

__all__ = [
    "AssetBatches",
    "BatchShorthands",
    "KeyedBatches",
    "TaskBatches",
    "batch_bytes",
    "check_keys",
    "encode_entries",
]


def _naming(exc: StateStoreError, key: object) -> StateStoreError:
    """``exc`` with the offending key at the start of its message (same type, same
    attributes), so a caller of a 100-key batch knows which entry was refused."""
    exc.args = (f"key {key!r}: {exc}", *exc.args[1:])
    return exc


def _limits(store: StateStore) -> tuple[int, int]:
    settings = store.config.state_store
    return settings.max_batch_keys, settings.max_batch_bytes


def check_keys(keys: object, max_keys: int) -> list[str]:
    """``keys`` validated and de-duplicated in first-seen order; a ``str`` is refused
    (it is an iterable of characters, almost certainly a mistake)."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise InvalidTypeError(
            f"keys must be an iterable of str (a list, a tuple...), not {type(keys).__name__}"
        )
    given = list(keys)
    for key in given:  # before de-duplicating: an unhashable key is an InvalidTypeError
        # check_key's own fast path, inlined: this loop runs for every key of a batch.
        plain = type(key) is str and 0 < len(key) <= MAX_KEY_LENGTH and key.isascii()
        if plain and "\x00" not in key:
            continue
        try:
            check_key(key)
        except StateStoreError as exc:
            raise _naming(exc, key) from None
    distinct = list(dict.fromkeys(given))
    if len(distinct) > max_keys:
        raise BatchTooLargeError(len(distinct), max_keys, "keys")
    return distinct


def batch_bytes(entries: list[tuple[str, str]]) -> int:
    """UTF-8 bytes of the keys and encoded values (what ``max_batch_bytes`` counts)."""
    return sum(
        (len(k) if k.isascii() else len(k.encode())) + (len(v) if v.isascii() else len(v.encode()))
        for k, v in entries
    )


def encode_entries(
    mapping: object, max_value_bytes: int, max_keys: int, max_bytes: int, *, escape: bool = True
) -> list[tuple[str, str]]:
    """``(key, JSON text)`` for every entry, each validated as ``set`` validates it
    (``escape=False``: values that were escaped already, as a state server gets them)."""
    if not isinstance(mapping, Mapping):
        raise InvalidTypeError(
            f"set_many takes a mapping of key to value, not {type(mapping).__name__}"
        )
    if len(mapping) > max_keys:  # before encoding anything of a huge batch
        raise BatchTooLargeError(len(mapping), max_keys, "keys")
    entries: list[tuple[str, str]] = []
    for key, value in mapping.items():
        try:
            check_key(key)
            plain = escape_value(value) if escape else value
            entries.append((key, encode_value(plain, max_bytes=max_value_bytes)))
        except StateStoreError as exc:
            raise _naming(exc, key) from None
    if max_bytes:
        size = batch_bytes(entries)
        if size > max_bytes:
            raise BatchTooLargeError(size, max_bytes, "bytes")
    return entries


def _items(wanted: list[str], found: Mapping[str, StoredItem]) -> dict[str, StateItem]:
    items: dict[str, StateItem] = {}
    for key in wanted:
        stored = found.get(key)
        if stored is not None:
            item = to_item(stored)
            assert item is not None
            items[key] = item
    return items


class KeyedBatches:
    """The batch reads and deletes every accessor has (given ``_store`` and ``_scope``)."""

    __slots__ = ()
    _scope: StateScope
    _store: StateStore
    _updated_by: str | None
    _max_bytes: int

    if TYPE_CHECKING:

        @property
        def _backend(self) -> BaseStateBackend: ...

    def _keys(self, keys: Iterable[str]) -> list[str]:
        return check_keys(keys, _limits(self._store)[0])

    def _entries(self, mapping: Mapping[str, Any]) -> list[tuple[str, str]]:
        max_keys, max_bytes = _limits(self._store)
        return encode_entries(mapping, self._max_bytes, max_keys, max_bytes)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of ``keys`` in one call, as ``{key: value}`` in the order given;
        absent and expired keys are left out. Keys are validated first (a bad one raises
        its error, naming it, with no I/O); a key given twice counts once; more than
        ``[state_store] max_batch_keys`` raise ``BatchTooLargeError``."""
        wanted = self._keys(keys)
        if not wanted:
            return {}
        found = self._backend.get_many(self._scope, wanted)
        return {key: decode(found[key], None) for key in wanted if key in found}

    def get_items(self, keys: Iterable[str]) -> dict[str, StateItem]:
        """:meth:`get_many` with each value's version and provenance, as ``get_item``."""
        wanted = self._keys(keys)
        if not wanted:
            return {}
        found = self._backend.get_items(self._scope, wanted)
        return _items(wanted, found)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove ``keys`` in one call; absent keys are fine."""
        wanted = self._keys(keys)
        if wanted:
            self._backend.delete_many(self._scope, wanted)

    async def aget_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Async twin of :meth:`get_many`."""
        wanted = self._keys(keys)
        if not wanted:
            return {}
        found = await self._backend.aget_many(self._scope, wanted)
        return {key: decode(found[key], None) for key in wanted if key in found}

    async def aget_items(self, keys: Iterable[str]) -> dict[str, StateItem]:
        """Async twin of :meth:`get_items`."""
        wanted = self._keys(keys)
        if not wanted:
            return {}
        found = await self._backend.aget_items(self._scope, wanted)
        return _items(wanted, found)

    async def adelete_many(self, keys: Iterable[str]) -> None:
        """Async twin of :meth:`delete_many`."""
        wanted = self._keys(keys)
        if wanted:
            await self._backend.adelete_many(self._scope, wanted)


class TaskBatches(KeyedBatches):
    """Batches of task state: ``set_many`` takes one ``retention`` for every key."""

    __slots__ = ()
    _retention_days: int

    def _expiry(self, retention: object) -> Any:
        return compute_expires_at(
            retention, now=utcnow(), default_retention_days=self._retention_days
        )

    def set_many(self, mapping: Mapping[str, Any], *, retention: timedelta | None = None) -> None:
        """Write every ``key: value`` of ``mapping`` in one call, all or nothing: every
        entry is validated first, and one bad entry raises its error (naming the key)
        with nothing written. ``retention`` as :meth:`set`, for every key."""
        entries = self._entries(mapping)
        expires_at = self._expiry(retention)
        if entries:
            self._backend.set_many(
                self._scope, entries, expires_at=expires_at, updated_by=self._updated_by
            )

    async def aset_many(
        self, mapping: Mapping[str, Any], *, retention: timedelta | None = None
    ) -> None:
        """Async twin of :meth:`set_many`."""
        entries = self._entries(mapping)
        expires_at = self._expiry(retention)
        if entries:
            await self._backend.aset_many(
                self._scope, entries, expires_at=expires_at, updated_by=self._updated_by
            )


class AssetBatches(KeyedBatches):
    """Batches of asset state (no retention): a batch for an asset not registered yet
    registers it once, as a single write does."""

    __slots__ = ()

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Write every ``key: value`` of ``mapping`` in one call, all or nothing (see
        :meth:`TaskStateAccessor.set_many`)."""
        entries = self._entries(mapping)
        if entries:
            self._backend.set_many(self._scope, entries, updated_by=self._updated_by)

    async def aset_many(self, mapping: Mapping[str, Any]) -> None:
        """Async twin of :meth:`set_many`."""
        entries = self._entries(mapping)
        if entries:
            await self._backend.aset_many(self._scope, entries, updated_by=self._updated_by)


class BatchShorthands:
    """``AssetStateAccessors``' batch shorthands for its one declared asset."""

    __slots__ = ()

    if TYPE_CHECKING:

        @property
        def _only(self) -> AssetStateAccessor: ...

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Shorthand for ``self[only_asset].get_many(keys)``."""
        return self._only.get_many(keys)

    def get_items(self, keys: Iterable[str]) -> dict[str, StateItem]:
        """Shorthand for ``self[only_asset].get_items(keys)``."""
        return self._only.get_items(keys)

    def set_many(self, mapping: Mapping[str, Any]) -> None:
        """Shorthand for ``self[only_asset].set_many(mapping)``."""
        self._only.set_many(mapping)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Shorthand for ``self[only_asset].delete_many(keys)``."""
        self._only.delete_many(keys)

    async def aget_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Async twin of :meth:`get_many`."""
        return await self._only.aget_many(keys)

    async def aget_items(self, keys: Iterable[str]) -> dict[str, StateItem]:
        """Async twin of :meth:`get_items`."""
        return await self._only.aget_items(keys)

    async def aset_many(self, mapping: Mapping[str, Any]) -> None:
        """Async twin of :meth:`set_many`."""
        await self._only.aset_many(mapping)

    async def adelete_many(self, keys: Iterable[str]) -> None:
        """Async twin of :meth:`delete_many`."""
        await self._only.adelete_many(keys)
