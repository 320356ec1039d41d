"""The sync hot path: one compiled statement on a kept-idle DBAPI connection.

``MetastoreStateBackend`` plans and compiles; this runs the statement on the backend's
own autocommit engine -- one statement, one round trip -- and owns what can go wrong
on the way: a dropped connection, a deadlock, a server that stopped answering
(``retries`` says which of these run again), and the driver errors to translate.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, NoReturn

from sqlalchemy.engine import URL, Engine

from statestore.metastore.deadlines import StatementTimeout, watch, watchdog
from statestore.metastore.engine import DroppedConnectionError, IdleConnections, dialect_family
from statestore.metastore.errors import translate_errors
from statestore.metastore.libpq import LibpqStatement, PreparedNames, answered, numbered
from statestore.metastore.retries import RETRIED, DeadlockError, Retry, is_deadlock, unwrap

__all__ = ["Fetch", "SyncHotPath", "libpq_ready", "shaped"]


_CURSOR = "statestore_cursor"
"""Where a PostgreSQL connection's kept cursor lives (its pool record's ``info``)."""

Fetch = Literal["scalar", "row", "rows", "rowcount"]
"""What an operation wants back: the first column of the first row, the first row,
every row, or the number of rows the statement touched."""


def shaped(rows: Sequence[Any], fetch: Fetch) -> Any:
    """Fetched rows in the shape ``fetch`` names (rows as plain tuples)."""
    if fetch == "rows":
        return [tuple(row) for row in rows]
    if not rows:
        return None
    return rows[0][0] if fetch == "scalar" else tuple(rows[0])


_LIBPQ_READY = "statestore_libpq"
"""Whether a connection takes libpq's plain statements (its pool record's ``info``)."""


def libpq_ready(connection: Any, driver: Any) -> tuple[bool, PreparedNames | None]:
    """Whether ``driver`` (a psycopg connection) runs plain statements through libpq --
    only in UTF-8, the form libpq.py encodes text in and decodes it from (a URL may ask
    for another ``client_encoding``) -- and, where psycopg would prepare
    (``prepare_threshold`` set: the direct-connection opt-in), the connection's own
    prepared statements. Worked out once per connection."""
    kept = connection.info.get(_LIBPQ_READY)
    if kept is None or kept[0] is not driver:
        names = None if driver.prepare_threshold is None else PreparedNames()
        kept = connection.info[_LIBPQ_READY] = (driver, driver.info.encoding == "utf-8", names)
    return kept[1], kept[2]


class SyncHotPath:
    """Runs compiled statements for one engine; thread-safe like its idle list."""

    def __init__(self, engine: Engine, url: URL, timeout: float, *, keep: int = 5) -> None:
        self._engine = engine
        self._url = url
        self._timeout = timeout
        # libpq has no read timeout: the watchdog bounds sync PostgreSQL statements.
        self._watched = dialect_family(url) == "postgresql"
        # A psycopg cursor costs several microseconds to create, a tenth of a get: keep
        # one per connection (PostgreSQL only; sqlite3 and PyMySQL cursors are cheap,
        # and a sqlite3 cursor left unfinished would hold its read snapshot open).
        self._keep_cursor = self._watched
        # sqlite3's Connection.execute makes the cursor and runs it in one C call.
        self._connection_execute = dialect_family(url) == "sqlite"
        # psycopg's cursor costs about half a statement's client CPU: plain statements
        # go through its libpq wrapper instead (see run_plain and libpq.py).
        self._libpq = url.get_driver_name() == "psycopg"
        # At most the pool's size kept idle: beyond it, connections go back to the pool.
        self._idle = IdleConnections(engine, keep=keep, timeout=timeout)

    def run(self, sql: str, parameters: Any, *, fetch: Fetch) -> Any:
        """The statement's result in the shape ``fetch`` names."""
        try:
            return self._execute(sql, parameters, fetch=fetch)
        except RETRIED as exc:
            return self._again(exc, lambda: self._execute(sql, parameters, fetch=fetch))

    def run_plain(self, sql: str, parameters: Any, *, fetch: Fetch) -> Any:
        """``run`` for a statement whose answer is plain: ``"scalar"`` the first
        column's text (a value, or a function's count), ``"row"`` the first two columns
        as a value's text and its version (an int), ``"rowcount"`` the rows written.
        On sync psycopg these go through libpq, which answers in text (libpq.py); every
        other driver's cursor answers the same."""
        if not self._libpq:
            return self.run(sql, parameters, fetch=fetch)
        statement = numbered(sql)
        try:
            return self._execute_libpq(statement, parameters, fetch)
        except RETRIED as exc:
            return self._again(exc, lambda: self._execute_libpq(statement, parameters, fetch))

    def _again(self, exc: Exception, execute: Callable[[], Any]) -> Any:
        """After ``exc``, run again while ``retries`` allows it (see retries.py for what
        runs again and why that is safe)."""
        retry = Retry()
        while True:
            if not retry.allows(exc):
                with translate_errors(self._url, self._engine.dialect.loaded_dbapi):
                    raise unwrap(exc) from None
            if isinstance(exc, DroppedConnectionError):
                self._idle.discard_all()
                self._engine.dispose()  # checked-out connections close on return
            else:
                time.sleep(retry.pause())
            try:
                return execute()
            except RETRIED as again:
                exc = again

    def close(self) -> None:
        """Return the idle connections to the pool (before the engine is disposed)."""
        self._idle.close()

    def return_idle(self) -> None:
        """Give the idle connections back to the pool (see ``IdleConnections``)."""
        self._idle.return_idle()

    def forget(self) -> list[Any]:
        """Drop the idle connections unclosed (in a forked child); returns them."""
        return self._idle.forget()

    def _execute(self, sql: str, parameters: Any, *, fetch: Fetch, connection: Any = None) -> Any:
        """``connection``: one already acquired for this statement (else one is)."""
        if connection is None:
            connection = self._acquire()
        cursor = None
        token = None
        try:
            if self._connection_execute:  # sqlite3: a cursor made and run in one call
                cursor = connection.dbapi_connection.execute(sql, parameters)
            else:
                cursor = (
                    self._cursor(connection) if self._keep_cursor
                    else connection.dbapi_connection.cursor()
                )  # fmt: skip
                if self._watched:
                    token = watch(connection, self._timeout)
                cursor.execute(sql, parameters)
            if fetch == "scalar":
                row = cursor.fetchone()
                result = None if row is None else row[0]
            elif fetch == "rowcount":
                result = cursor.rowcount
            else:
                result = shaped(cursor.fetchall(), fetch)
            if not self._keep_cursor:
                cursor.close()
        except Exception as exc:  # noqa: BLE001 - _failed raises it, translated
            self._failed(connection, cursor, token, exc)
        except BaseException:
            self._interrupted(connection, token)
            raise
        return self._answered(connection, token, result)

    def _execute_libpq(self, statement: LibpqStatement, parameters: Any, fetch: Fetch) -> Any:
        try:
            values, types, formats = statement.parameters(parameters)
        except TypeError:  # a value libpq's text form does not cover: the cursor's way
            return self._execute(statement.sql, parameters, fetch=fetch)
        connection = self._acquire()
        driver = connection.dbapi_connection
        ready, prepared = libpq_ready(connection, driver)
        if not ready:  # the cursor's way, as before
            return self._execute(statement.sql, parameters, fetch=fetch, connection=connection)
        token = watch(connection, self._timeout)
        try:
            if prepared is None:
                answer = driver.pgconn.exec_params(statement.command, values, types, formats)
            else:
                answer = prepared.run(driver.pgconn, statement, values, types, formats)
            result = answered(answer, fetch, driver.info.encoding)
        except Exception as exc:  # noqa: BLE001 - _failed raises it, translated
            self._failed(connection, None, token, exc)
        except BaseException:
            self._interrupted(connection, token)
            raise
        return self._answered(connection, token, result)

    def _acquire(self) -> Any:
        try:
            return self._idle.acquire()  # may connect: a refusal is translated
        except Exception:
            with translate_errors(self._url, self._engine.dialect.loaded_dbapi):
                raise

    def _failed(self, connection: Any, cursor: Any, token: int | None, exc: Exception) -> NoReturn:
        """A statement raised: past its deadline (cut by the watchdog), or see ``_fail``."""
        if token is not None and not watchdog().disarm(token):
            connection.invalidate(exc)
            raise StatementTimeout(self._timeout) from exc
        self._fail(connection, cursor, exc)

    def _interrupted(self, connection: Any, token: int | None) -> None:
        """Interrupted mid-statement (Ctrl-C, ``SystemExit`` from a signal handler): its
        answer may still come, so the connection is closed and its pool slot freed --
        never reused, never left checked out (as the async twin does for a cancelled
        task)."""
        if token is not None:
            watchdog().disarm(token)
        connection.info.pop(_CURSOR, None)
        with contextlib.suppress(Exception):
            connection.invalidate()

    def _answered(self, connection: Any, token: int | None, result: Any) -> Any:
        """A statement answered: give its connection back (unless cut just after)."""
        if token is not None and not watchdog().disarm(token):
            connection.invalidate()  # cut just after it answered: the answer stands
            return result
        self._idle.release(connection)
        return result

    @staticmethod
    def _cursor(connection: Any) -> Any:
        """The connection's kept cursor (checked to belong to its DBAPI connection: a
        reconnected pool record gets a new one)."""
        dbapi_connection = connection.dbapi_connection
        kept = connection.info.get(_CURSOR)
        if kept is None or kept[0] is not dbapi_connection:
            kept = connection.info[_CURSOR] = (dbapi_connection, dbapi_connection.cursor())
        return kept[1]

    def _fail(self, connection: Any, cursor: Any, exc: Exception) -> NoReturn:
        """Drop a broken connection, give a healthy one back, translate the error."""
        connection.info.pop(_CURSOR, None)  # after an error, a fresh cursor next time
        dialect = self._engine.dialect
        if dialect.is_disconnect(exc, connection.dbapi_connection, cursor):  # type: ignore[arg-type]
            connection.invalidate(exc)  # never hand a dead connection out again
            raise DroppedConnectionError(exc)
        with contextlib.suppress(Exception):
            if cursor is not None:
                cursor.close()
        self._idle.release(connection)
        if is_deadlock(exc):
            raise DeadlockError(exc)
        with translate_errors(self._url, dialect.loaded_dbapi):
            raise exc
        raise AssertionError("unreachable")  # pragma: no cover - translate_errors raises
