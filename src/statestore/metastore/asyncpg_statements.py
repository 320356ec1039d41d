"""The async hot path's statements on asyncpg: one exchange each, safe behind a pooler.

asyncpg has no DBAPI cursor: a statement is prepared (Parse/Describe), then bound and
run (Bind/Execute/Sync). With its statement cache off (``statement_cache_size=0``,
see ``drivers.connect_args``), asyncpg keeps the prepared statement *unnamed* and marks
it unprepared, so every run re-sends its Parse in the same message batch as
Bind/Execute/Sync. That is one round trip, and one exchange ending in one Sync: a
transaction-mode pooler (PgBouncer) cannot hand the server connection to another
client between the Parse and the Bind, and nothing named outlives the exchange (the
first preparation's Parse/Describe ends in Flush, not Sync, for the same reason).

So each connection keeps its prepared (unnamed) statement objects -- the parameter and
row codecs -- and every call after the first is a single ``fetch``: ``$1``-style SQL as
SQLAlchemy's asyncpg dialect compiles it, rowcounts from the command status.
"""

from __future__ import annotations

import asyncio
from typing import Any

from statestore.metastore.deadlines import StatementTimeout
from statestore.metastore.hotpath import Fetch, shaped

__all__ = ["AsyncpgStatements"]

_STATEMENTS = "statestore_asyncpg_statements"
"""Key of a pooled connection's ``info`` dict: its prepared statements, by SQL. The
``info`` dict lives and dies with the driver connection, so does the cache."""

_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)  # one class from Python 3.11


class AsyncpgStatements:
    """Runs compiled statements on the asyncpg connections of one engine."""

    def __init__(self, dbapi: Any, timeout: float) -> None:
        self._timeout = timeout  # the connections' command_timeout (drivers.connect_args)
        # SQLAlchemy's adapted asyncpg module: the DBAPI-shaped error classes the rest
        # of the hot path (disconnect checks, translate_errors) already understands.
        self._dbapi = dbapi
        import asyncpg  # noqa: PLC0415 - an optional driver; the engine has loaded it

        self._errors: tuple[type[BaseException], ...] = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        )

    async def execute(self, connection: Any, sql: str, params: Any, *, fetch: Fetch) -> Any:
        """Run one statement on a pooled connection; its result in the shape ``fetch`` names."""
        statements: dict[str, Any] = connection.info.setdefault(_STATEMENTS, {})
        statement = statements.get(sql)
        try:
            if statement is None:
                statement = await connection.driver_connection.prepare(sql, name="")
                statements[sql] = statement
            rows = await statement.fetch(*params)
        except _TIMEOUTS as exc:  # command_timeout: asyncpg cancels the statement
            raise StatementTimeout(self._timeout) from exc
        except self._errors as exc:
            raise self._translated(exc) from exc
        if fetch == "rowcount":
            return _rowcount(statement.get_statusmsg())
        return shaped(rows, fetch)

    def _translated(self, exc: BaseException) -> BaseException:
        """asyncpg's error as the DBAPI class a psycopg error of that kind would be."""
        dbapi = self._dbapi
        sqlstate = str(getattr(exc, "sqlstate", None) or "")
        if not sqlstate:
            cls = dbapi.InterfaceError
        elif sqlstate[:2] in ("08", "53", "57", "58"):  # connection, resources, shutdown
            cls = dbapi.OperationalError
        elif sqlstate[:2] == "42":  # syntax or access: a missing table, a bug of ours
            cls = dbapi.ProgrammingError
        elif sqlstate[:2] == "23":
            cls = dbapi.IntegrityError
        else:  # e.g. a deadlock (40P01): the sqlstate goes along for is_deadlock
            cls = dbapi.DatabaseError
        message = exc.args[0] if exc.args else str(exc)
        translated: BaseException = cls(message, exc)
        return translated


def _rowcount(status: str | None) -> int:
    # "INSERT 0 1", "UPDATE 2", "DELETE 0": the count is the command tag's last word.
    if not status:
        return -1
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else -1
