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
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from sqlalchemy.engine import URL, Engine

from statestore.metastore.deadlines import StatementTimeout, watch, watchdog
from statestore.metastore.engine import DroppedConnectionError, IdleConnections, dialect_family
from statestore.metastore.errors import translate_errors
from statestore.metastore.retries import RETRIED, DeadlockError, Retry, is_deadlock, unwrap

if TYPE_CHECKING:
    from statestore.metastore.libpq import LibpqStatement

__all__ = ["Fetch", "SyncHotPath", "shaped"]

_TUPLES_OK, _COMMAND_OK = 2, 1
"""libpq's ``ExecStatus`` of a query that returned rows, and of a command."""


def _error_from_result(answer: Any, encoding: str) -> Exception:
    """psycopg's own exception for a failed libpq result (imported when one fails)."""
    from psycopg.errors import error_from_result  # noqa: PLC0415 - psycopg is optional

    return error_from_result(answer, encoding)


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
        # At most the pool's size kept idle: beyond it, connections go back to the pool.
        self._idle = IdleConnections(engine, keep=keep, timeout=timeout)

    def run(self, sql: str, parameters: Any, *, fetch: Fetch) -> Any:
        """The statement's result in the shape ``fetch`` names."""
        try:
            return self._execute(sql, parameters, fetch=fetch)
        except RETRIED as exc:
            return self._again(exc, lambda: self._execute(sql, parameters, fetch=fetch))

    def run_libpq(self, statement: LibpqStatement, parameters: Any, *, fetch: Fetch) -> Any:
        """``run`` through libpq (``libpq.LibpqHotPath``): ``"row"`` gives the first two
        columns, the second as an int; ``"scalar"`` the first column's text;
        ``"rowcount"`` the rows written."""
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

    def _execute(self, sql: str, parameters: Any, *, fetch: Fetch) -> Any:
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
        return self._answered(connection, token, result)

    def _execute_libpq(self, statement: LibpqStatement, parameters: Any, fetch: Fetch) -> Any:
        connection = self._acquire()
        driver = connection.dbapi_connection
        if driver.prepare_threshold is not None:  # the opt-in: psycopg prepares, as before
            self._idle.release(connection)
            return self._execute(statement.sql, parameters, fetch=fetch)
        token = watch(connection, self._timeout)
        try:
            values, types, formats = statement.parameters(parameters)
            answer = driver.pgconn.exec_params(statement.command, values, types, formats)
            status = answer.status
            if status == _TUPLES_OK and fetch == "row":
                result = None if not answer.ntuples else (
                    answer.get_value(0, 0).decode(), int(answer.get_value(0, 1))
                )  # fmt: skip
            elif status == _TUPLES_OK and fetch == "scalar":  # the first column's text
                found = answer.get_value(0, 0) if answer.ntuples else None
                result = None if found is None else found.decode()
            elif status == _COMMAND_OK and fetch == "rowcount":
                result = answer.command_tuples
            elif status in (_TUPLES_OK, _COMMAND_OK):
                raise ValueError(f"a {fetch!r} statement answered with libpq status {status}")
            else:
                raise _error_from_result(answer, driver.info.encoding)
        except Exception as exc:  # noqa: BLE001 - _failed raises it, translated
            self._failed(connection, None, token, exc)
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
