"""Connections across ``fork()`` and across event loops, for every backend that holds any.

**fork().** A child process inherits the parent's open sockets. A child that talks on
one interleaves bytes with the parent on one server session (or one TLS stream); one
that *closes* it may end the parent's session (a database protocol's goodbye, a TLS
``close_notify``). So in the child every tracked backend forgets its connection-holding
objects without closing anything, and they stay referenced for the child's lifetime
(:func:`leave_behind`), so garbage collection never finalizes them either. The child
opens its own connections on first use.

**Event loops.** Async connections belong to the loop that opened them and cannot be
closed from another one. ``asyncio.run()`` per call is common, so each loop's resources
are released *on that loop* as it shuts down: an async generator parked on the loop is
closed by ``loop.shutdown_asyncgens()`` (which ``asyncio.run``, ``asyncio.Runner`` and
uvloop call), and its ``finally`` releases them while the loop still runs.

No third-party imports here: the HTTP client uses this without loading SQLAlchemy's
async machinery (``statestore.metastore.lifecycle`` adds the database-specific part).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

__all__ = [
    "ForkAware",
    "finish_parked",
    "leave_behind",
    "loop_is_gone",
    "on_loop_shutdown",
    "track_forks",
]


class ForkAware(Protocol):
    """What a backend offers to be reset in a forked child."""

    def _forget_after_fork(self) -> list[object]:
        """Drop every connection-holding object without closing it; return them."""


_TRACKED: weakref.WeakSet[Any] = weakref.WeakSet()
_LEFT_BEHIND: list[object] = []  # the parent's objects, kept alive for the child's lifetime


def track_forks(backend: ForkAware) -> None:
    """Reset ``backend`` in every forked child of this process (weakly referenced)."""
    _TRACKED.add(backend)


def leave_behind(*objects: object) -> None:
    """Keep ``objects`` referenced forever: never closed, never finalized."""
    _LEFT_BEHIND.extend(objects)


def _after_fork_in_child() -> None:
    for backend in list(_TRACKED):
        leave_behind(*backend._forget_after_fork())


os.register_at_fork(after_in_child=_after_fork_in_child)


async def _park_until_shutdown(release: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    try:
        yield
    finally:  # GeneratorExit from shutdown_asyncgens(): the loop still runs here
        await release()


def on_loop_shutdown(release: Callable[[], Awaitable[None]]) -> object:
    """Arrange for ``release()`` to be awaited on the running loop as it shuts down.

    Returns the parked generator: the caller keeps it (the loop holds it weakly).
    """
    parked = _park_until_shutdown(release)
    step: Any = parked.__anext__()  # registers it with the running loop's asyncgen hooks
    with contextlib.suppress(StopIteration):
        step.send(None)  # run to the first yield; nothing in between awaits
    return parked


def finish_parked(parked: object) -> None:
    """Close a parked generator whose release already ran (so it awaits nothing).

    Left to garbage collection, the loop's finalizer hook would schedule its closing on
    the loop -- which fails once that loop is closed.
    """
    closing: Any = parked.aclose()  # type: ignore[attr-defined]
    with contextlib.suppress(StopIteration, RuntimeError):
        closing.send(None)


def loop_is_gone(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` can no longer run anything (its connections are unusable)."""
    return loop.is_closed()
