"""The read and the write that ``update`` repeats, for one key of one scope.

``items.run_update`` owns the loop (apply ``fn``, write at the version read, pause and
go again after a lost race); this module gives it its two steps. Where the backend
offers a :class:`~statestore.metastore.key_updates.KeyUpdater` (the metastore, in its
steady state) a step is one statement with everything about the key worked out once
per call -- on PostgreSQL a lost race's write answers the row it lost to, and the next
read is that row, no second statement; elsewhere, and for what the updater leaves to
the general path (creating an absent key, saying why a write matched nothing), the
steps are the backend's own ``get_item`` and ``set_item``. Values are encoded and
decoded here as the accessors' ``set`` and ``get_item`` do, so ``update`` stores and
sees exactly what they would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from statestore.access_core import decode, to_item
from statestore.scopes import check_key

if TYPE_CHECKING:
    from statestore.backends.base import BaseStateBackend
    from statestore.items import Versioned
    from statestore.scopes import StateScope

__all__ = ["Current", "Prepare", "aupdate_steps", "update_steps"]

Prepare = Callable[[Any], tuple[str, datetime | None]]
"""A new value -> its stored text and expiry, as the accessor's ``set`` makes them."""


class Current(NamedTuple):
    """A key's decoded value and version, as the updater read them."""

    value: Any
    version: int


def _decoded(found: tuple[str, int] | None) -> Current | None:
    """The updater's read (stored text and version) as ``update`` sees it, decoded as
    ``get_item`` decodes a value."""
    return None if found is None else Current(decode(found[0], None), found[1])


def update_steps(
    backend: BaseStateBackend,
    scope: StateScope,
    key: str,
    updated_by: str | None,
    prepare: Prepare,
) -> tuple[Callable[[], Versioned | None], Callable[[Any, int], None]]:
    """``run_update``'s read and write of ``key``."""
    check_key(key)
    updater = backend._key_updater(scope, key, updated_by)

    def write(new: Any, version: int) -> None:
        text, expires_at = prepare(new)
        if version and updater is not None:  # a key that exists: replace it, if it can
            replaced = updater.written(updater.write(text, expires_at, version), version)
            if replaced:
                return
        backend.set_item(
            scope, key, text, expires_at=expires_at, if_version=version, updated_by=updated_by
        )

    if updater is None:
        return lambda: to_item(backend.get_item(scope, key)), write

    def read() -> Current | None:
        lost = updater.lost_to()  # the row the last write lost to, if it answered one
        return _decoded(updater.current(updater.read()) if lost is None else lost[0])

    return read, write


def aupdate_steps(
    backend: BaseStateBackend,
    scope: StateScope,
    key: str,
    updated_by: str | None,
    prepare: Prepare,
) -> tuple[Callable[[], Awaitable[Versioned | None]], Callable[[Any, int], Awaitable[None]]]:
    """Async twin of :func:`update_steps` (call it on the loop that runs the steps)."""
    check_key(key)
    updater = backend._key_updater(scope, key, updated_by, in_loop=True)

    async def write(new: Any, version: int) -> None:
        text, expires_at = prepare(new)
        if version and updater is not None:
            replaced = updater.written(await updater.write(text, expires_at, version), version)
            if replaced:
                return
        await backend.aset_item(
            scope, key, text, expires_at=expires_at, if_version=version, updated_by=updated_by
        )

    async def read() -> Versioned | None:
        if updater is None:
            return to_item(await backend.aget_item(scope, key))
        lost = updater.lost_to()
        return _decoded(updater.current(await updater.read()) if lost is None else lost[0])

    return read, write
