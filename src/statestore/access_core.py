"""What the accessors share: decoding stored text, items, paged listing, the mapping.

Pure helpers, the listing views that ``keys()``/``items()`` return, and one mixin; the
accessor classes in ``accessors`` add validation of their own arguments and make the
one backend call of each operation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from statestore.backends.worker import MARKER, parse_envelope
from statestore.codec import decode_value
from statestore.exceptions import (
    ConfigError,
    InvalidTypeError,
    InvalidValueError,
    KeyNotFoundError,
    StateStoreError,
)
from statestore.items import StateItem, StoredItem
from statestore.scopes import StateScope, check_key

if TYPE_CHECKING:
    from statestore.backends.base import BaseStateBackend
    from statestore.store import StateStore

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "KeyedState",
    "StateItems",
    "StateKeys",
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


T = TypeVar("T")
E = TypeVar("E")

PREVIEW_KEYS = 10
"""How many entries the ``repr`` of a ``keys()``/``items()`` view shows (one read)."""


class _Listing(Generic[E]):
    """A live view of a scope's keys or items, like ``dict.keys()``: every iteration
    reads the backend afresh, ``page_size`` keys per round trip, in code point order."""

    __slots__ = ("_page_size", "_prefix", "_state")
    _values = False

    def __init__(self, state: KeyedState, prefix: str, page_size: int) -> None:
        check_listing(prefix, page_size)  # now, not at the first next()
        self._state, self._prefix, self._page_size = state, prefix, page_size

    def _entry(self, key: str, raw: str | None) -> E:
        raise NotImplementedError

    def _read(self, page_size: int, *, values: bool) -> Iterator[tuple[str, str | None]]:
        state = self._state
        return pages(state._backend, state._scope, self._prefix, page_size, values=values)

    def __iter__(self) -> Iterator[E]:
        for key, raw in self._read(self._page_size, values=self._values):
            yield self._entry(key, raw)

    def __len__(self) -> int:
        """How many live keys the view covers now: counted page by page (a round trip
        per ``page_size`` keys), so it costs what iterating the keys costs."""
        return sum(1 for _ in self._read(self._page_size, values=False))

    def __bool__(self) -> bool:
        # One key read, not a count: `if state.keys():` must not walk the whole scope.
        state = self._state
        first = state._backend.list_items(
            state._scope, prefix=self._prefix, after="", limit=1, values=False
        )
        return bool(first)

    def __repr__(self) -> str:
        state = self._state
        try:  # one read: the first PREVIEW_KEYS entries, and whether there are more
            page = state._backend.list_items(
                state._scope, prefix=self._prefix, after="", limit=PREVIEW_KEYS + 1,
                values=self._values,
            )  # fmt: skip
            shown = [repr(self._entry(key, raw)) for key, raw in page[:PREVIEW_KEYS]]
        except StateStoreError as exc:  # a repr must not raise: say why it cannot list
            shown = [f"<cannot list: {type(exc).__name__}>"]
            page = []
        more = ", ..." if len(page) > PREVIEW_KEYS else ""
        prefix = f", prefix={self._prefix!r}" if self._prefix else ""
        return f"{type(self).__name__}([{', '.join(shown)}{more}]{prefix})"


class StateKeys(_Listing[str]):
    """What ``keys()`` returns: the live keys of one scope (``prefix``: only those
    starting with it). Iterate it (again and again), ``len()`` it, test ``in``, print it;
    ``list(state.keys())`` takes a snapshot."""

    __slots__ = ()

    def _entry(self, key: str, raw: str | None) -> str:
        return key

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.startswith(self._prefix) and key in self._state


class StateItems(_Listing[tuple[str, Any]]):
    """What ``items()`` returns: the live ``(key, value)`` pairs of one scope, paged
    like :class:`StateKeys`; ``dict(state.items())`` takes a snapshot."""

    __slots__ = ()
    _values = True

    def _entry(self, key: str, raw: str | None) -> tuple[str, Any]:
        return key, decode(raw, None)


class KeyedState:
    """What task and asset state accessors do alike, given ``_store`` and ``_scope``:
    read, read with metadata, delete, list and the mapping protocol -- each I/O method
    with its async twin.

    **The mapping protocol.** ``state[key]``, ``state[key] = value``, ``del state[key]``,
    ``key in state``, ``len(state)``, ``iter(state)`` (the keys) and ``bool(state)``
    behave as on a ``dict`` whose entries are the scope's live keys: an expired key is
    absent. ``state[key]`` of an absent key raises :class:`KeyNotFoundError` (a
    ``KeyError``) where ``get`` returns its default; ``del state[key]`` of an absent
    key raises it too -- it reads before deleting, two round trips, where ``delete``
    is one and a no-op for a missing key. ``len`` counts page by page. The model is
    ``collections.abc.MutableMapping``'s protocol, but the accessors are not registered
    as one: their ``keys``/``items`` take ``prefix``/``page_size``, ``update`` is a
    read-modify-write and ``clear`` has its own arguments. Async code uses the ``a``
    methods (``aget``, ``aset``, ``adelete``, ``async for key in state.akeys()``).

    Two accessors are equal (and hash alike) when they are of one class, for one scope,
    on one store, writing as the same ``updated_by``.
    """

    __slots__ = ()
    _scope: StateScope
    _store: StateStore
    _updated_by: str | None

    @property
    def _backend(self) -> BaseStateBackend:
        # Through the store on every call: a closed store raises StoreClosedError here
        # instead of its backend quietly reconnecting.
        return self._store.backend

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyedState) or type(other) is not type(self):
            return NotImplemented
        mine = (self._scope, self._updated_by)
        return self._store is other._store and mine == (other._scope, other._updated_by)

    def __hash__(self) -> int:
        return hash((type(self), self._scope, id(self._store), self._updated_by))

    # -- the mapping protocol (sync only; see the class docstring) ----------------------

    def __getitem__(self, key: str) -> Any:
        """``state[key]``: the value, or :class:`KeyNotFoundError` if absent or expired."""
        check_key(key)
        raw = self._backend.get(self._scope, key)
        if raw is None:
            raise KeyNotFoundError(key, self._scope.describe())
        return decode(raw, None)

    def __delitem__(self, key: str) -> None:
        """``del state[key]``: read, then delete; :class:`KeyNotFoundError` if absent."""
        check_key(key)
        if self._backend.get(self._scope, key) is None:
            raise KeyNotFoundError(key, self._scope.describe())
        self._backend.delete(self._scope, key)

    def __contains__(self, key: object) -> bool:
        """``key in state``: whether ``get`` would find it (expired keys are absent)."""
        check_key(key)  # a non-str key is a TypeError, as on get()
        return self._backend.get(self._scope, cast("str", key)) is not None

    def __iter__(self) -> Iterator[str]:
        """``for key in state``: the live keys, as :meth:`keys` iterates them."""
        return iter(self.keys())

    def __len__(self) -> int:
        """``len(state)``: the live keys, counted page by page (needs listing)."""
        return len(self.keys())

    def __bool__(self) -> bool:
        """``bool(state)``: whether any live key exists (one read of one key)."""
        return bool(self.keys())

    # -- reads, deletes and listing, sync and async -------------------------------------

    @overload
    def get(self, key: str) -> Any: ...
    @overload
    def get(self, key: str, default: T) -> Any | T: ...
    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it is absent (or expired).

        Values come back as decoded JSON (``Any``); annotate to type them for your
        checker, e.g. ``count: int = state.get("count", 0)``.
        """
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

    @overload
    async def aget(self, key: str) -> Any: ...
    @overload
    async def aget(self, key: str, default: T) -> Any | T: ...
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

    def keys(self, *, prefix: str = "", page_size: int = DEFAULT_PAGE_SIZE) -> StateKeys:
        """A live view of the keys, in code point order, fetched ``page_size`` at a
        time when iterated (never the whole scope at once); ``prefix``: only keys
        starting with it. It prints its first keys; ``list()`` it for a snapshot."""
        return StateKeys(self, prefix, page_size)

    def items(self, *, prefix: str = "", page_size: int = DEFAULT_PAGE_SIZE) -> StateItems:
        """A live view of the ``(key, value)`` pairs in key order, paged like
        :meth:`keys`; ``dict()`` it for a snapshot."""
        return StateItems(self, prefix, page_size)

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
