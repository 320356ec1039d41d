"""A deadline for every statement, so a stalled server never hangs the caller.

PyMySQL and asyncmy take socket timeouts, and async statements sit under
``asyncio.timeout``; but libpq, under psycopg's sync connections, has no read timeout:
a server that stops answering (stopped process, a proxy or firewall that swallows
packets) blocks the calling thread for as long as the kernel keeps the socket. One
daemon thread per process watches the statements in flight and shuts down the socket
of any that outlive their deadline; the blocked read then fails at once, and the
operation reports :class:`StatementTimeout` instead of retrying.

The hot path pays a dict insert and pop under an uncontended lock (well under a
microsecond); the thread wakes a few times per timeout period.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "DEPLOYING_DOCS",
    "StatementTimeout",
    "Watchdog",
    "attach_connecting_socket",
    "bounded_connect",
    "shutdown_socket",
    "watch",
    "watchdog",
    "watched",
]

DEPLOYING_DOCS = "docs/deploying.md"
"""Where error messages about connection limits and waits send the reader."""


class StatementTimeout(Exception):  # noqa: N818 - a signal between two modules, not an error API
    """A statement outlived its deadline; its connection was cut."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"no answer within {seconds:g} s (database.timeout_seconds): the server is "
            "stalled or overloaded, or a pooler in front of it has no free server "
            f"connection (PgBouncer: pool_size, max_client_conn); see {DEPLOYING_DOCS}"
        )
        self.seconds = seconds


def shutdown_socket(fileno: int) -> None:
    """End the connection on socket ``fileno`` without owning or closing it."""
    # shutdown() acts on the socket itself, so a duplicate descriptor reaches the
    # driver's one without taking it over; the driver still owns and closes its own.
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fileno))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


class Watchdog:
    """Cuts the socket of every statement still running past its deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[int, tuple[float, int | None]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        self._tick = 1.0

    def arm(self, fileno: int | None, seconds: float) -> int:
        """Watch a statement about to run on socket ``fileno``; returns its token.

        ``None``: a deadline whose socket is not known yet (a connection being opened),
        which :meth:`attach` names once the driver has one.
        """
        token = next(self._tokens)
        with self._lock:
            self._inflight[token] = (time.monotonic() + seconds, fileno)
            if self._thread is None or seconds / 4 < self._tick:
                self._start(seconds)
        return token

    def attach(self, token: int, fileno: int) -> None:
        """Give a pending deadline its socket (a no-op once disarmed or expired)."""
        with self._lock:
            entry = self._inflight.get(token)
            if entry is not None:
                self._inflight[token] = (entry[0], fileno)

    def forget(self) -> None:
        """Start over with no thread and nothing watched (a forked child's state)."""
        self.__init__()  # type: ignore[misc]

    def disarm(self, token: int) -> bool:
        """Stop watching; ``False`` if the deadline had already passed and the socket
        was cut. Once this returns, the watchdog never touches that socket again."""
        with self._lock:
            return self._inflight.pop(token, None) is not None

    def _start(self, seconds: float) -> None:
        self._tick = max(0.01, min(1.0, seconds / 4))
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="statestore-watchdog", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(self._tick)
            now = time.monotonic()
            with self._lock:  # cut under the lock: see disarm()
                for token, (deadline, fileno) in list(self._inflight.items()):
                    if deadline <= now and fileno is not None:
                        del self._inflight[token]
                        shutdown_socket(fileno)


_WATCHDOG = Watchdog()


# A forked child has no watchdog thread (nor statements in flight), whatever the parent had.
os.register_at_fork(after_in_child=_WATCHDOG.forget)


def watchdog() -> Watchdog:
    """The process's watchdog (its thread starts on first use)."""
    return _WATCHDOG


# The deadline of the connection being opened in this thread or task, if any: a
# ContextVar, because SQLAlchemy's async engines open connections in greenlets that
# carry the awaiting task's context.
_CONNECTING: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "statestore_connecting", default=None
)


@contextlib.contextmanager
def bounded_connect(seconds: float) -> Iterator[None]:
    """Bound opening a connection -- the handshake and the queries SQLAlchemy runs on a
    new connection (a pooler in session mode may hold those for minutes) -- by
    ``seconds``: :class:`StatementTimeout` past it. Taking a pooled connection that is
    already open costs a dict insert and pop."""
    token = _WATCHDOG.arm(None, seconds)
    reset = _CONNECTING.set(token)
    try:
        yield
    except Exception as exc:
        if not _WATCHDOG.disarm(token):
            raise StatementTimeout(seconds) from exc
        raise
    finally:
        _CONNECTING.reset(reset)
        _WATCHDOG.disarm(token)


def attach_connecting_socket(dbapi_connection: Any, _record: Any) -> None:
    """Pool ``connect`` listener (registered first): give the pending deadline of
    :func:`bounded_connect` the new connection's socket."""
    token = _CONNECTING.get()
    if token is None:
        return
    fileno = _fileno_of(getattr(dbapi_connection, "driver_connection", dbapi_connection))
    if fileno is not None:
        _WATCHDOG.attach(token, fileno)


def _fileno_of(driver: Any) -> int | None:
    pgconn = getattr(driver, "pgconn", None)
    if pgconn is not None:  # psycopg, sync or async
        return int(pgconn.socket)
    if type(driver).__module__ == "psycopg2.extensions":  # libpq: fileno() is its socket
        return int(driver.fileno())
    return None


@contextlib.contextmanager
def watched(connection: Any, seconds: float) -> Iterator[None]:
    """Bound SQLAlchemy work on one ``Connection`` (sync, or the sync face of an async
    one inside ``run_sync``) by ``seconds``: :class:`StatementTimeout` past it."""
    token = watch(connection.connection, seconds)
    if token is None:
        yield
        return
    try:
        yield
    except Exception as exc:
        if not _WATCHDOG.disarm(token):
            connection.invalidate(exc)
            raise StatementTimeout(seconds) from exc
        raise
    if not _WATCHDOG.disarm(token):  # cut just after the last answer: it stands
        connection.invalidate()


def watch(connection: Any, seconds: float) -> int | None:
    """Arm the watchdog for a statement about to run on a pooled psycopg (sync or
    async) or psycopg2 connection; ``None`` when it has no socket to watch."""
    # driver_connection: psycopg's own Connection or AsyncConnection, never an adapter.
    fileno = _fileno_of(connection.driver_connection)
    return None if fileno is None else _WATCHDOG.arm(fileno, seconds)
