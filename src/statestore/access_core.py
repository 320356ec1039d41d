"""What the accessors share: decoding stored text, items, and paged listing.

Pure helpers plus one mixin; the accessor classes in ``accessors`` add validation of
their own arguments and make the one backend call of each operation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from statestore.backends.worker import MARKER, parse_envelope
from statestore.codec import decode_value
from statestore.exceptions import ConfigError, InvalidTypeError, InvalidValueError
from statestore.items import StateItem, StoredItem
from statestore.scopes import StateScope, check_key

if TYPE_CHECKING:
    from statestore.backends.base import BaseStateBackend

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "KeyedState",
    "apages",
    "check_listing",
    "decode",
    "pages",
    "to_item",
]


def decode(raw: str | None, default: Any) -> Any:
    if raw is None:
        return default
    value = decode_value(raw)
    if isinstance(value, dict) and MARKER in value:
        envelope = parse_envelope(value)
        if envelope.ref is not None:
            raise ConfigError(
                "this value was stored through a worker-side backend; set [workers] "
                "state_backend (and its settings) to read it"
            )
        return envelope.value
    return value


def to_item(stored: StoredItem | None) -> StateItem | None:
    if stored is None:
        return None
    return StateItem(
        decode(stored.value, None), stored.version, stored.updated_at, stored.updated_by,
        stored.expires_at,
    )  # fmt: skip


DEFAULT_PAGE_SIZE = 1000
"""Keys fetched per round trip by ``keys()``/``items()``."""


def check_listing(prefix: object, page_size: object) -> None:
    if not isinstance(prefix, str):
        raise InvalidTypeError(f"prefix must be a str, not {type(prefix).__name__}")
    if prefix:
        check_key(prefix)  # a prefix of a valid key is itself a valid key
    if not isinstance(page_size, int) or isinstance(page_size, bool):
        raise InvalidTypeError(f"page_size must be an int, not {type(page_size).__name__}")
    if page_size < 1:
        raise InvalidValueError(f"page_size must be >= 1, not {page_size}")


def pages(
    backend: BaseStateBackend, scope: StateScope, prefix: str, page_size: int, *, values: bool
) -> Iterator[tuple[str, str | None]]:
    check_listing(prefix, page_size)
    after = ""
    while True:
        page = backend.list_items(scope, prefix=prefix, after=after, limit=page_size, values=values)
        yield from page
        if len(page) < page_size:
            return
        after = page[-1][0]


async def apages(
    backend: BaseStateBackend, scope: StateScope, prefix: str, page_size: int, *, values: bool
) -> AsyncIterator[tuple[str, str | None]]:
    check_listing(prefix, page_size)
    after = ""
    while True:
        page = await backend.alist_items(
            scope, prefix=prefix, after=after, limit=page_size, values=values
        )
        for entry in page:
            yield entry
        if len(page) < page_size:
            return
        after = page[-1][0]


class KeyedState:
    """What task and asset state accessors do alike, given ``_backend`` and ``_scope``:
    read, read with metadata, delete, and list -- each with its async twin."""

    __slots__ = ()
    _backend: BaseStateBackend
    _scope: StateScope

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it is absent (or expired)."""
        check_key(key)
        return decode(self._backend.get(self._scope, key), default)

    def get_item(self, key: str) -> StateItem | None:
        """The value of ``key`` with its version and provenance, or ``None``."""
        check_key(key)
        return to_item(self._backend.get_item(self._scope, key))

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is fine."""
        check_key(key)
        self._backend.delete(self._scope, key)

    async def aget(self, key: str, default: Any = None) -> Any:
        """Async twin of :meth:`get`."""
        check_key(key)
        return decode(await self._backend.aget(self._scope, key), default)

    async def aget_item(self, key: str) -> StateItem | None:
        """Async twin of :meth:`get_item`."""
        check_key(key)
        return to_item(await self._backend.aget_item(self._scope, key))

    async def adelete(self, key: str) -> None:
        """Async twin of :meth:`delete`."""
        check_key(key)
        await self._backend.adelete(self._scope, key)

    def keys(self, *, prefix: str = "", page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[str]:
        """Live keys in code point order, fetched ``page_size`` at a time (never the
        whole scope at once); ``prefix``: only keys starting with it."""
        for key, _ in pages(self._backend, self._scope, prefix, page_size, values=False):
            yield key

    def items(
        self, *, prefix: str = "", page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[tuple[str, Any]]:
        """Live ``(key, value)`` pairs in key order, paged like :meth:`keys`."""
        for key, raw in pages(self._backend, self._scope, prefix, page_size, values=True):
            yield key, decode(raw, None)

    async def akeys(
        self, *, prefix: str = "", page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[str]:
        """Async twin of :meth:`keys`."""
        async for key, _ in apages(self._backend, self._scope, prefix, page_size, values=False):
            yield key

    async def aitems(
        self, *, prefix: str = "", page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[tuple[str, Any]]:
        """Async twin of :meth:`items`."""
        async for key, raw in apages(self._backend, self._scope, prefix, page_size, values=True):
            yield key, decode(raw, None)
