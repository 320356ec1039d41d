"""The async hot path: compiled statements on the async driver's own connection.

Going through ``AsyncConnection.execute`` costs a greenlet switch and SQLAlchemy's
per-call machinery for every statement. Here a pooled connection is checked out once
and kept (per event loop), and each operation awaits the driver directly — psycopg's
``AsyncCursor``, asyncmy's cursor or aiosqlite's — with the same compiled SQL and
parameters as the sync hot path. Still one statement, one round trip, really async. On
psycopg, plain statements (``run_plain``) skip the cursor and go through libpq, as on
the sync hot path (libpq.py). A task cancelled mid-statement never leaves its
connection checked out or hands it out again (``AsyncHotPath._execute``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from statestore.aio_timeouts import time_limit
from statestore.metastore.asyncpg_statements import AsyncpgStatements
from statestore.metastore.deadlines import StatementTimeout, bounded_connect, watch, watchdog
from statestore.metastore.engine import DroppedConnectionError, dialect_family, looks_dropped
from statestore.metastore.errors import translate_errors
from statestore.metastore.hotpath import Fetch, libpq_ready, shaped
from statestore.metastore.libpq import answered, exec_params_async, numbered
from statestore.metastore.retries import RETRIED, DeadlockError, Retry, is_deadlock, unwrap

__all__ = [
    "AsyncHotPath",
    "AsyncIdleConnections",
    "deadline",
    "driver_module",
    "execute",
    "loop_lock",
]


@functools.cache
def driver_module(driver: str) -> Any:
    """The async driver's module (or its errors module), for translating its errors."""
    name = {"aiosqlite": "sqlite3", "psycopg": "psycopg", "psycopg_async": "psycopg",
            "asyncmy": "asyncmy.errors", "aiomysql": "pymysql"}[driver]  # fmt: skip
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - the extra is not installed
        return None


Statement = Callable[..., Awaitable[Any]]
"""Runs one statement on a pooled connection: ``(connection, sql, params, *, fetch)``."""


def _on_driver(family: str, connection: Any, sql: str, params: Any, *, fetch: Fetch) -> Any:
    if family == "postgresql":
        return _on_kept_cursor(connection, sql, params, fetch=fetch)
    return execute(family, connection.driver_connection, sql, params, fetch=fetch)


_CURSOR = "statestore_cursor"
"""Where a psycopg connection's kept cursor lives (its pool record's ``info``)."""


async def _on_kept_cursor(connection: Any, sql: str, params: Any, *, fetch: Fetch) -> Any:
    """As :func:`execute` on psycopg, on a cursor kept per connection: creating one costs
    several microseconds (as on the sync hot path); any error drops it (see ``_fail``)."""
    driver = connection.driver_connection
    kept = connection.info.get(_CURSOR)
    if kept is None or kept[0] is not driver:
        kept = connection.info[_CURSOR] = (driver, driver.cursor())
    cursor = kept[1]
    await cursor.execute(sql, params)
    if fetch == "rowcount":
        return cursor.rowcount
    if fetch == "rows":
        return shaped(await cursor.fetchall(), fetch)
    row = await cursor.fetchone()
    return shaped([] if row is None else [row], fetch)


async def _on_libpq(connection: Any, sql: str, params: Any, *, fetch: Fetch) -> Any:
    """A plain statement (``run_plain``) on psycopg's async connection straight through
    libpq, as the sync hot path runs it (libpq.py); the kept cursor where libpq's form
    does not fit (not UTF-8, a text with a NUL character) or the opt-in prepares."""
    driver = connection.driver_connection
    statement = numbered(sql)
    ready, prepared = libpq_ready(connection, driver)
    if ready and prepared is None:
        try:
            values, types, formats = statement.parameters(params)
        except TypeError:
            pass
        else:
            try:
                answer = await exec_params_async(
                    driver.pgconn, statement.command, values, types, formats
                )
            except BaseException:  # cancelled while the server may still be running it
                with contextlib.suppress(Exception):
                    await _cancel_on_server(driver)
                raise
            return answered(answer, fetch, driver.info.encoding)
    return await _on_kept_cursor(connection, sql, params, fetch=fetch)


_CANCEL_WAIT_S = 5.0
"""How long a cancelled statement's cancel request may take (psycopg's own bound)."""


async def _cancel_on_server(driver: Any) -> None:
    """Ask the server to stop the statement in flight on ``driver``, as psycopg's async
    cursor does when its task is cancelled: without it a write waiting on a lock would
    still land after the caller was told it was cancelled. The connection is closed
    afterwards either way (``AsyncHotPath._execute``)."""
    if driver.pgconn.transaction_status != _ACTIVE:
        return
    cancel_safe = getattr(driver, "cancel_safe", None)  # psycopg 3.2 and later
    if cancel_safe is not None:
        await cancel_safe(timeout=_CANCEL_WAIT_S)
    else:  # pragma: no cover - psycopg 3.1
        await asyncio.wait_for(asyncio.to_thread(driver.cancel), _CANCEL_WAIT_S)


_ACTIVE = 1
"""libpq's ``PQTRANS_ACTIVE``: a statement is in progress on the connection."""


def _statements(url: URL, engine: AsyncEngine, timeout: float) -> tuple[Any, Statement]:
    """The driver's error classes, and how its statements run (chosen once per engine)."""
    if url.get_driver_name() == "asyncpg":  # no DBAPI cursor: see asyncpg_statements
        dbapi = engine.dialect.loaded_dbapi
        return dbapi, AsyncpgStatements(dbapi, timeout).execute
    family = dialect_family(url)
    return driver_module(url.get_driver_name()), functools.partial(_on_driver, family)


class AsyncIdleConnections:
    """Idle pooled connections of one event loop's engine (see ``IdleConnections``)."""

    def __init__(self, engine: AsyncEngine, keep: int, timeout: float) -> None:
        self._engine = engine
        self._keep = keep
        self._timeout = timeout
        self._idle: list[Any] = []
        self._closed = False

    def take_idle(self) -> Any:
        """An idle connection, or ``None`` (no wait: nothing to bound)."""
        try:
            return self._idle.pop()
        except IndexError:
            return None

    async def acquire(self) -> Any:
        """A ``PoolProxiedConnection``; ``.driver_connection`` is the asyncio driver's."""
        try:
            return self._idle.pop()
        except IndexError:
            pass
        with bounded_connect(self._timeout):  # a new one may be opened: bound it
            return await self._engine.raw_connection()

    async def release(self, connection: Any) -> None:
        """Keep a healthy connection for the next operation, or return it to the pool."""
        if len(self._idle) < self._keep and not self._closed:
            self._idle.append(connection)
        elif self._closed:
            await greenlet_spawn(connection.close)
        else:  # beyond pool_size: closed, as in IdleConnections.release
            await greenlet_spawn(connection.invalidate)

    async def discard(self, connection: Any, error: BaseException) -> None:
        """Throw a broken connection away (the pool opens a new one when needed)."""
        await greenlet_spawn(connection.invalidate, error)

    async def discard_all(self) -> None:
        """Throw away every idle connection (after one was found dead)."""
        while self._idle:
            connection = self._idle.pop()
            with contextlib.suppress(Exception):  # it is being thrown away anyway
                await greenlet_spawn(connection.invalidate)

    async def return_idle(self) -> None:
        """Hand the idle connections back to the pool (see ``IdleConnections``)."""
        while self._idle:
            await greenlet_spawn(self._idle.pop().close)

    async def aclose(self) -> None:
        """Return every idle connection to the pool."""
        self._closed = True
        await self.return_idle()

    def forget(self) -> list[Any]:
        """Drop the idle connections unclosed (their loop is gone, or this is a forked
        child); returns them."""
        kept, self._idle = self._idle, []
        return kept


async def execute(family: str, driver: Any, sql: str, params: Any, *, fetch: Fetch) -> Any:
    """Run one statement; return its result in the shape ``fetch`` names."""
    if family == "sqlite":
        # Every aiosqlite call is a hop to its worker thread: one hop per operation.
        if fetch == "rowcount":
            cursor = await driver.execute(sql, params)
            return cursor.rowcount
        return shaped(await driver.execute_fetchall(sql, params), fetch)
    async with driver.cursor() as cursor:
        await cursor.execute(sql, params)
        if fetch == "rowcount":
            return cursor.rowcount
        if fetch == "rows":
            return shaped(await cursor.fetchall(), fetch)
        row = await cursor.fetchone()
        return shaped([] if row is None else [row], fetch)


@contextlib.asynccontextmanager
async def deadline(family: str, seconds: float) -> AsyncIterator[None]:
    """Bound a MySQL network step by ``seconds`` (``StatementTimeout`` past it).

    Only asyncmy needs this. SQLite's wait is the busy timeout, inside aiosqlite's
    thread, which a cancelled await would not stop; and a cancelled psycopg query sends
    a cancel request over a new connection and waits for it, so PostgreSQL statements
    are bounded by the watchdog instead, as on the sync path.
    """
    if family != "mysql":
        yield
        return
    try:
        async with time_limit(seconds):
            yield
    except TimeoutError as exc:
        raise StatementTimeout(seconds) from exc


_LOOP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def loop_lock() -> asyncio.Lock:
    """One schema lock per event loop, shared by every backend on it."""
    loop = asyncio.get_running_loop()
    lock = _LOOP_LOCKS.get(loop)
    if lock is None:
        lock = _LOOP_LOCKS[loop] = asyncio.Lock()
    return lock


class AsyncHotPath:
    """The async twin of ``hotpath.SyncHotPath``, for one event loop's engine."""

    def __init__(self, engine: AsyncEngine, url: URL, timeout: float, *, keep: int = 5) -> None:
        self._engine = engine
        self._url = url
        self._timeout = timeout
        self._family = dialect_family(url)
        self._watched = self._family == "postgresql"  # see deadline()
        self._errors, self._statement = _statements(url, engine, timeout)
        # psycopg's async cursor costs most of a statement's client CPU: plain
        # statements go through libpq instead (see run_plain and libpq.py).
        psycopg = self._family == "postgresql" and url.get_driver_name() != "asyncpg"
        self._plain: Statement = _on_libpq if psycopg else self._statement
        if url.get_driver_name() == "asyncpg":  # its command_timeout bounds statements
            self._watched = False
        self._idle = AsyncIdleConnections(engine, keep=keep, timeout=timeout)

    async def run(self, sql: str, parameters: Any, *, fetch: Fetch) -> Any:
        """As ``SyncHotPath.run``."""
        return await self._run(self._statement, sql, parameters, fetch)

    async def run_plain(self, sql: str, parameters: Any, *, fetch: Fetch) -> Any:
        """As ``SyncHotPath.run_plain``: on psycopg through libpq, as there; every other
        async driver's answer is already plain."""
        return await self._run(self._plain, sql, parameters, fetch)

    async def _run(self, statement: Statement, sql: str, parameters: Any, fetch: Fetch) -> Any:
        retry = None
        while True:  # see retries.py
            try:
                return await self._execute(statement, sql, parameters, fetch=fetch)
            except RETRIED as exc:
                retry = retry or Retry()
                if not retry.allows(exc):
                    with translate_errors(self._url, self._errors):
                        raise unwrap(exc) from None
                if isinstance(exc, DroppedConnectionError):
                    await self._idle.discard_all()
                    await self._engine.dispose()
                else:
                    await asyncio.sleep(retry.pause())

    async def aclose(self) -> None:
        """Return the idle connections to the pool."""
        await self._idle.aclose()

    async def return_idle(self) -> None:
        """Give the idle connections back to the pool (for a slow path's connection)."""
        await self._idle.return_idle()

    def forget(self) -> list[Any]:
        """Drop the idle connections unclosed; returns them."""
        return self._idle.forget()

    async def _execute(self, statement: Statement, sql: str, parameters: Any, *,
                       fetch: Fetch) -> Any:  # fmt: skip
        idle = self._idle
        # An idle connection is at hand in the steady state: only a checkout that may
        # wait for the pool or connect needs its own deadline (a timer costs ~5 us).
        connection = idle.take_idle()
        if connection is None:
            try:
                async with deadline(self._family, self._timeout):
                    connection = await idle.acquire()
            except Exception:
                with translate_errors(self._url, self._errors):
                    raise
        token = watch(connection, self._timeout) if self._watched else None
        try:
            async with deadline(self._family, self._timeout):
                result = await statement(connection, sql, parameters, fetch=fetch)
        except StatementTimeout as exc:
            connection.info.pop(_CURSOR, None)
            await idle.discard(connection, exc)  # its state is unknown: never reuse it
            raise
        except Exception as exc:
            connection.info.pop(_CURSOR, None)  # after an error, a fresh cursor next time
            if token is not None and not watchdog().disarm(token):
                await idle.discard(connection, exc)
                raise StatementTimeout(self._timeout) from exc
            await self._fail(connection, exc)
        except BaseException as exc:  # cancelled (or interrupted) mid-statement
            # Its answer may still be on the way: never reuse the connection, and give
            # it back to the pool closed rather than leave it checked out.
            if token is not None:
                watchdog().disarm(token)
            connection.info.pop(_CURSOR, None)
            with contextlib.suppress(Exception):  # the interruption is what propagates
                await idle.discard(connection, exc)
            raise
        if token is not None and not watchdog().disarm(token):
            await idle.discard(connection, StatementTimeout(self._timeout))
            return result  # cut just after it answered: the answer stands
        await idle.release(connection)
        return result

    async def _fail(self, connection: Any, exc: Exception) -> NoReturn:
        if is_deadlock(exc):  # rolled back; the connection is fine
            await self._idle.release(connection)
            raise DeadlockError(exc) from exc
        # Raw driver errors may not be recognised by the adapted dialect; any
        # connection-level error discards the connection rather than risk reusing it.
        connection_level = type(exc).__name__ in ("OperationalError", "InterfaceError")
        dialect = self._engine.dialect
        disconnected = dialect.is_disconnect(exc, connection.dbapi_connection, None)  # type: ignore[arg-type]
        if connection_level or disconnected:
            await self._idle.discard(connection, exc)
            if disconnected or looks_dropped(exc):
                raise DroppedConnectionError(exc) from exc
        else:
            await self._idle.release(connection)
        with translate_errors(self._url, self._errors):
            raise exc
        raise AssertionError("unreachable")  # pragma: no cover - translate_errors raises
