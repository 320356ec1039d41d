"""A stored key with its metadata: what ``get_item`` returns.

Backends return a :class:`StoredItem` (the value still JSON text); accessors decode it
into a :class:`StateItem`. ``version`` increases by one on every write of the key and
is what ``set(..., if_version=N)`` compares against; ``updated_by`` says who wrote it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from statestore.exceptions import InvalidTypeError, InvalidValueError, VersionConflictError

if TYPE_CHECKING:
    from statestore.scopes import StateScope

__all__ = [
    "DEFAULT_UPDATE_RETRIES",
    "MAX_VERSION",
    "StateItem",
    "StoredItem",
    "Versioned",
    "arun_update",
    "check_retries",
    "check_version",
    "check_version_arg",
    "conflict",
    "known_current",
    "run_update",
    "unread_conflict",
    "unread_conflicts_allowed",
    "update_pause",
    "version_of",
]

MAX_VERSION = 2**63 - 1
"""The largest version a key can have: the version column is a signed 64-bit integer
on every dialect, and a larger ``if_version`` would fail in the driver, untyped."""

DEFAULT_UPDATE_RETRIES = 20
"""How many times ``update`` re-applies its function after losing a race. 10 gave up
on 7-9 % of calls with 16 processes on one key, 20 on 0.1-0.4 %, for at most ~1 s of
pauses in all (docs/concurrency.md has the measurements)."""


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One live row as a backend stores it (``value`` is JSON text)."""

    value: str
    version: int
    updated_at: datetime
    updated_by: str | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class StateItem:
    """One key's value and metadata, as task code sees it."""

    value: Any
    """The value, decoded from JSON as ``get`` returns it."""
    version: int
    """1 after the first write, +1 on every write since; pass it to ``if_version``."""
    updated_at: datetime
    """When the key was last written (aware UTC)."""
    updated_by: str | None
    """Who wrote it last (the store's or accessor's ``updated_by``), or ``None``."""
    expires_at: datetime | None
    """When the key stops reading (aware UTC), or ``None`` for never."""


class Versioned(Protocol):
    """What ``update`` needs of a read: the decoded value and its version."""

    @property
    def value(self) -> Any: ...
    @property
    def version(self) -> int: ...


def conflict(
    scope: StateScope, key: str, expected: int, current: int, live: StoredItem | None = None
) -> VersionConflictError:
    """The error for a versioned write that lost (``current`` 0: the key is absent);
    ``live``: the row read to find ``current``, carried for ``update`` to re-apply to."""
    now = "is absent" if current == 0 else f"is at version {current}"
    wanted = "to be absent" if expected == 0 else f"version {expected}"
    return VersionConflictError(
        f"{key!r} of {scope.describe()} {now}; the write expected {wanted} and wrote nothing",
        current_version=current,
        current=live,
    )


def check_version(live: StoredItem | None, expected: int, scope: StateScope, key: str) -> None:
    """Raise :func:`conflict` unless the live row (or its absence) is at ``expected``."""
    current = 0 if live is None else live.version
    if current != expected:
        raise conflict(scope, key, expected, current, live)


_UNREAD_CONFLICTS: ContextVar[bool] = ContextVar("statestore_unread_conflicts", default=False)


def unread_conflicts_allowed() -> bool:
    """Whether the versioned write running now is ``update``'s, which reads the key
    itself after pausing: a backend may then report a lost race without reading the
    row it lost to first (:func:`unread_conflict`) -- a read that would be stale anyway
    by the time the pause is over."""
    return _UNREAD_CONFLICTS.get()


def unread_conflict(scope: StateScope, key: str, expected: int) -> VersionConflictError:
    """A lost race reported without the row it lost to (``current_version`` ``None``)."""
    return VersionConflictError(
        f"{key!r} of {scope.describe()} is no longer at version {expected}; the write "
        "wrote nothing",
        current_version=None,
    )


def known_current(lost: VersionConflictError) -> bool:
    """Whether ``lost`` says what the key holds now: the row it carries, or its absence.

    Correctness never rests on this: the next write is a compare-and-set at the version
    this yields, so a stale answer costs one more lost race, never a lost update.
    """
    if lost.current is not None:
        return lost.current.version == lost.current_version
    return lost.current_version == 0


def check_version_arg(if_version: object) -> int | None:
    """``if_version`` as given by a caller: ``None`` or a whole number >= 0."""
    if if_version is None:
        return None
    if not isinstance(if_version, int) or isinstance(if_version, bool):
        raise InvalidTypeError(f"if_version must be an int, not {type(if_version).__name__}")
    if if_version < 0:
        raise InvalidValueError(f"if_version must be >= 0 (0: the key is absent), not {if_version}")
    if if_version > MAX_VERSION:
        raise InvalidValueError(f"if_version must be at most {MAX_VERSION}, not {if_version}")
    return if_version


def check_retries(retries: object) -> int:
    """``retries`` of ``update``: a whole number >= 0."""
    if not isinstance(retries, int) or isinstance(retries, bool):
        raise InvalidTypeError(f"retries must be an int, not {type(retries).__name__}")
    if retries < 0:
        raise InvalidValueError(f"retries must be >= 0, not {retries}")
    return retries


def update_pause(attempt: int) -> float:
    """A short random pause after a lost race, growing with each attempt."""
    return random.uniform(0, 0.001 * 2 ** min(attempt, 6))  # noqa: S311 - jitter


def version_of(item: Versioned | None) -> int:
    """The version ``if_version`` must name to replace ``item`` (0: there is none)."""
    return 0 if item is None else item.version


def run_update(
    read: Callable[[], Versioned | None],
    write: Callable[[Any, int], None],
    fn: Callable[[Any], Any],
    default: Any,
    retries: int,
    seen: Callable[[StoredItem | None], Versioned | None],
) -> Any:
    """The loop behind ``update``: read, apply ``fn``, write at the version read; after
    a lost race, pause briefly and go again, at most ``retries`` more times.

    A lost race costs one conditional write and one read. Either the backend reports
    it without reading (:func:`unread_conflicts_allowed`) and the loop reads after its
    pause -- so the many losers of a hot key spread out before they read -- or the
    conflict carries the row the backend read anyway (``seen`` decodes it), and ``fn``
    is re-applied to that. The last attempt, and any after a write that failed with the
    key still at its version (not a lost race: an inactive asset, say), let the backend
    say exactly why.
    """
    check_retries(retries)
    item = read()
    unread_ok = retries > 0
    for attempt in range(retries + 1):
        new = fn(default if item is None else item.value)
        expected = version_of(item)
        token = _UNREAD_CONFLICTS.set(unread_ok)
        try:
            write(new, expected)
        except VersionConflictError as lost:
            if attempt == retries:
                raise
            time.sleep(update_pause(attempt))
            item = seen(lost.current) if known_current(lost) else read()
            unread_ok = attempt + 1 < retries and version_of(item) != expected
            continue
        finally:
            _UNREAD_CONFLICTS.reset(token)
        return new
    raise AssertionError("unreachable")  # pragma: no cover


async def arun_update(
    read: Callable[[], Awaitable[Versioned | None]],
    write: Callable[[Any, int], Awaitable[None]],
    fn: Callable[[Any], Any],
    default: Any,
    retries: int,
    seen: Callable[[StoredItem | None], Versioned | None],
) -> Any:
    """Async twin of :func:`run_update` (``fn`` stays a plain function)."""
    check_retries(retries)
    item = await read()
    unread_ok = retries > 0
    for attempt in range(retries + 1):
        new = fn(default if item is None else item.value)
        expected = version_of(item)
        token = _UNREAD_CONFLICTS.set(unread_ok)
        try:
            await write(new, expected)
        except VersionConflictError as lost:
            if attempt == retries:
                raise
            await asyncio.sleep(update_pause(attempt))
            item = seen(lost.current) if known_current(lost) else await read()
            unread_ok = attempt + 1 < retries and version_of(item) != expected
            continue
        finally:
            _UNREAD_CONFLICTS.reset(token)
        return new
    raise AssertionError("unreachable")  # pragma: no cover
