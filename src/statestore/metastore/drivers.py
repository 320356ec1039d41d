"""The database drivers statestore runs on, and what each one needs from it.

SQLAlchemy names several drivers per dialect. Each differs in how it takes its timeouts,
in whether its statements survive a transaction-mode pooler (PgBouncer), and in where
its socket is; this module holds those differences in one table, so that engines and
hot paths choose per backend when they are built and never branch per statement.

A driver that cannot meet the contract (one statement, one round trip, correct behind
a transaction pooler) is refused when the backend is built, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from statestore.exceptions import ConfigError

__all__ = [
    "DRIVERS",
    "REFUSED",
    "Driver",
    "check_driver",
    "connect_args",
    "driver_of",
    "listen",
]


@dataclass(frozen=True, slots=True)
class Driver:
    """One supported driver: SQLAlchemy's name for it and how statestore uses it."""

    family: str  # sqlite, postgresql or mysql (MariaDB included)
    name: str  # SQLAlchemy's driver name: the part after "+" in the URL
    is_async: bool
    module: str  # the import name, for messages
    extra: str  # pip install "statestore[extra]"; "" when the library always has it


DRIVERS: Mapping[tuple[str, str], Driver] = {
    (d.family, d.name): d
    for d in (
        Driver("sqlite", "pysqlite", False, "sqlite3", ""),
        Driver("sqlite", "aiosqlite", True, "aiosqlite", ""),
        Driver("postgresql", "psycopg", False, "psycopg", "postgres"),
        Driver("postgresql", "psycopg_async", True, "psycopg", "postgres"),
        Driver("postgresql", "psycopg2", False, "psycopg2", "psycopg2"),
        Driver("postgresql", "asyncpg", True, "asyncpg", "asyncpg"),
        Driver("mysql", "pymysql", False, "pymysql", "mysql"),
        Driver("mysql", "mysqldb", False, "MySQLdb", "mysqlclient"),
        Driver("mysql", "asyncmy", True, "asyncmy", "mysql"),
        Driver("mysql", "aiomysql", True, "aiomysql", "aiomysql"),
    )
}
"""Every driver statestore runs on; each passes the conformance suite in the tests."""

_SUPPORTED = {
    "sqlite": "sqlite:// (sqlite3) and sqlite+aiosqlite://",
    "postgresql": (
        "postgresql+psycopg:// (sync and async), postgresql+psycopg2:// (sync) and "
        "postgresql+asyncpg:// (async)"
    ),
    "mysql": (
        "mysql+pymysql:// and mysql+mysqldb:// (sync), mysql+asyncmy:// and "
        "mysql+aiomysql:// (async)"
    ),
}

_UNTESTED = (
    "statestore does not test it: its rowcounts, timeouts, error classes and "
    "reconnects are unknown here"
)

REFUSED: Mapping[tuple[str, str], str] = {
    ("postgresql", "pg8000"): (
        "pg8000 runs each statement as three exchanges with the server (Parse, Describe, "
        "Bind/Execute, each ending in Sync): three round trips instead of one, and behind a "
        "transaction-mode pooler (PgBouncer) the parts of one statement may land on "
        "different server connections, so a statement could run with another client's "
        "parameters"
    ),
    ("postgresql", "psycopg2cffi"): _UNTESTED,
    ("mysql", "mysqlconnector"): _UNTESTED,
    ("mysql", "mariadbconnector"): _UNTESTED,
    ("mysql", "cymysql"): _UNTESTED,
    ("mysql", "pyodbc"): _UNTESTED,
    ("sqlite", "pysqlcipher"): _UNTESTED,
}
"""Drivers SQLAlchemy names that statestore refuses, and why."""


def _family(url: URL) -> str:
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


def driver_of(url: URL) -> Driver:
    """The :class:`Driver` of a URL whose driver is named (``derive_urls`` names it)."""
    return DRIVERS[(_family(url), url.get_driver_name())]


def check_driver(url: URL) -> None:
    """Refuse a URL naming a driver statestore does not run on (``ConfigError``)."""
    family = _family(url)
    if "+" not in url.drivername or (family, url.get_driver_name()) in DRIVERS:
        return
    driver = url.get_driver_name()
    reason = REFUSED.get((family, driver), "not a driver statestore knows (a third-party one?)")
    raise ConfigError(
        f"[database] url: {url.drivername}:// is not supported: {reason}. Use {_SUPPORTED[family]}"
    )


def _whole_seconds(timeout: float) -> int:
    # libpq and mysqlclient take whole seconds; never round a short timeout down to 0.
    return max(1, math.ceil(timeout))


def _unnamed_statement() -> str:
    # asyncpg's name for a statement through SQLAlchemy's adapter: "" is PostgreSQL's
    # unnamed statement, which lives only until the exchange ends -- nothing named
    # stays behind on a server connection that a pooler hands to another client.
    return ""


def _psycopg_args(timeout: float, threshold: int | None) -> dict[str, Any]:
    # Statements are bounded by the watchdog; prepare_threshold: see EngineSettings.
    return {"connect_timeout": _whole_seconds(timeout), "prepare_threshold": threshold}


def _psycopg2_args(timeout: float, _threshold: int | None) -> dict[str, Any]:
    # No server-side statements at all: one Query message per statement.
    return {"connect_timeout": _whole_seconds(timeout)}


def _asyncpg_args(timeout: float, _threshold: int | None) -> dict[str, Any]:
    return {
        "timeout": timeout,  # connecting
        "command_timeout": timeout,  # every statement (asyncpg cancels it past this)
        # No named statements, in asyncpg's cache or in SQLAlchemy's: with the cache
        # off, asyncpg re-sends Parse with each Bind/Execute/Sync (one exchange).
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unnamed_statement,
    }


def _pymysql_args(timeout: float, _threshold: int | None) -> dict[str, Any]:
    # Socket timeouts bound the handshake and every read and write of a statement.
    return {"connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout}


def _mysqldb_args(timeout: float, _threshold: int | None) -> dict[str, Any]:
    seconds = _whole_seconds(timeout)  # the same three timeouts, in whole seconds
    return {"connect_timeout": seconds, "read_timeout": seconds, "write_timeout": seconds}


def _async_mysql_args(timeout: float, _threshold: int | None) -> dict[str, Any]:
    # No read timeout: asyncmy and aiomysql statements sit under asyncio.timeout.
    return {"connect_timeout": timeout}


def _sqlite_args(timeout: float, _threshold: int | None) -> dict[str, Any]:
    return {"timeout": timeout}  # the busy timeout: how long a writer queues for the lock


_CONNECT_ARGS: Mapping[str, Callable[[float, int | None], dict[str, Any]]] = {
    "psycopg": _psycopg_args, "psycopg_async": _psycopg_args, "psycopg2": _psycopg2_args,
    "asyncpg": _asyncpg_args, "pymysql": _pymysql_args, "mysqldb": _mysqldb_args,
    "asyncmy": _async_mysql_args, "aiomysql": _async_mysql_args,
    "pysqlite": _sqlite_args, "aiosqlite": _sqlite_args,
}  # fmt: skip


def connect_args(url: URL, timeout: float, prepare_threshold: int | None) -> dict[str, Any]:
    """The driver's own connect arguments: its timeouts, and no statement caches that
    would outlive a transaction behind a pooler (``prepare_threshold``: psycopg's)."""
    return _CONNECT_ARGS[driver_of(url).name](timeout, prepare_threshold)


def _escape_bytes(connection: Any) -> Callable[[Any], str]:
    own_escape = type(connection).escape

    def escape(value: Any) -> str:
        if isinstance(value, (bytes, bytearray)):
            return f"X'{bytes(value).hex()}'"  # MySQL's hex literal: binary, exact
        return str(own_escape(connection, value))

    return escape


def _aiomysql_connected(dbapi_connection: Any, _record: Any) -> None:
    # aiomysql (0.3.2, the latest) escapes bytes with PyMySQL's escape_bytes_prefixed,
    # which PyMySQL 1.2.3+ replaced by a string ("DO NOT IMPORT THIS", PyMySQL#1274):
    # every bytes parameter then fails with "'str' object is not callable". Row ids are
    # bytes, so each connection escapes bytes itself, as PyMySQL's own connections do.
    connection = dbapi_connection.driver_connection
    connection.escape = _escape_bytes(connection)


def listen(engine: Engine, url: URL) -> None:
    """Attach what a driver needs on each new connection (chosen once per engine)."""
    if url.get_driver_name() == "aiomysql":
        event.listen(engine, "connect", _aiomysql_connected)
