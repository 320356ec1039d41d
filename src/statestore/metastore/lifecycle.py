"""Connections across ``fork()`` and across event loops: who may close what, and when.

**fork().** A child process inherits the parent's open sockets. If the child runs a
statement on one, parent and child interleave bytes on one server session and read each
other's rows; if it *closes* one (SQLAlchemy returning a connection, psycopg's
``close()``, PyMySQL's quit), it ends the parent's session. So in the child every
backend forgets its engines, hot paths and idle connections without closing anything,
and keeps them referenced for the child's lifetime (``_LEFT_BEHIND``), so garbage
collection never finalizes them either. The child opens its own connections on first
use. A host's own engines are the host's to handle (SQLAlchemy's recipe:
``engine.dispose(close=False)`` in the child).

**Event loops.** Async connections belong to the loop that opened them and cannot be
closed from another one. ``asyncio.run()`` per call is common, so each loop's engine is
released *on that loop* as it shuts down: an async generator parked on the loop is
closed by ``loop.shutdown_asyncgens()`` (which ``asyncio.run``, ``asyncio.Runner`` and
uvloop call), and its ``finally`` disposes of the loop's engine while the loop still
runs. A loop closed without that step has its connections ended synchronously
(:func:`abandon_pool`) the next time the backend looks.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

# The backend-neutral half lives in statestore.lifecycle (one fork registry for every
# backend, the HTTP client included); re-exported so this module stays the metastore's
# one place to look.
from statestore.lifecycle import (
    ForkAware,
    finish_parked,
    leave_behind,
    loop_is_gone,
    on_loop_shutdown,
    track_forks,
)
from statestore.metastore.deadlines import shutdown_socket

__all__ = [
    "ForkAware",
    "abandon_pool",
    "finish_parked",
    "leave_behind",
    "loop_is_gone",
    "on_loop_shutdown",
    "track_forks",
]


def _stop_aiosqlite(driver_connection: Any) -> bool:
    """Close an aiosqlite connection on its own worker thread, with no future to
    resolve; ``False`` if it is not one.

    Left to garbage collection, aiosqlite's ``__del__`` calls ``stop()``, which binds
    its future to ``asyncio.get_event_loop()`` -- in a thread whose loop has closed, the
    worker thread then dies with "Event loop is closed" after closing the file.
    """
    queue = getattr(driver_connection, "_tx", None)
    raw = getattr(driver_connection, "_connection", None)
    if queue is None or raw is None or type(driver_connection).__module__ != "aiosqlite.core":
        return False
    stop = getattr(sys.modules.get("aiosqlite.core"), "_STOP_RUNNING_SENTINEL", None)
    driver_connection._connection = None  # its __del__ now does nothing
    driver_connection._running = False

    def close_and_stop() -> object:
        raw.close()  # on the worker thread, which owns the sqlite3 connection
        return stop

    queue.put_nowait((None, close_and_stop))
    return True


def _end_session(driver_connection: Any) -> None:
    """End a driver connection's server session without its (gone) event loop."""
    pgconn = getattr(driver_connection, "pgconn", None)
    if pgconn is not None:  # psycopg: libpq closes synchronously, and marks it closed
        pgconn.finish()
        return
    if _stop_aiosqlite(driver_connection):
        return
    writer = getattr(driver_connection, "_writer", None)  # asyncmy / aiomysql
    sock = getattr(getattr(writer, "transport", None), "get_extra_info", lambda _: None)("socket")
    fileno = sock.fileno() if sock is not None else -1
    if fileno >= 0:
        # shutdown() reaches the socket without the transport's loop; the server then
        # ends the session, and the descriptor closes when the objects are collected.
        shutdown_socket(fileno)


def abandon_pool(engine: AsyncEngine, idle: list[Any]) -> None:
    """Release the connections of an engine whose event loop is closed.

    ``idle``: the hot path's kept connections (checked out of the pool). Nothing here
    awaits; each driver connection is ended directly, then the pool is dropped.
    """
    records = list(getattr(getattr(engine.pool, "_pool", None), "queue", ()))
    drivers = [getattr(rec.dbapi_connection, "driver_connection", None) for rec in records]
    for fairy in idle:
        drivers.append(fairy.driver_connection)
        with contextlib.suppress(Exception):
            fairy.detach()  # no pool finalizer may try to close it on the dead loop
    for driver in drivers:
        if driver is not None:
            with contextlib.suppress(Exception):
                _end_session(driver)
    idle.clear()
    engine.sync_engine.dispose(close=False)
