"""Engines tuned for one-statement, one-round-trip operations.

Every steady-state get/set/delete is a single autocommit statement. SQLAlchemy's usual
"BEGIN … ROLLBACK on return" would add trips the operation does not need, so engines
here run in ``AUTOCOMMIT`` with ``skip_autocommit_rollback`` and no reset-on-return;
the few multi-statement operations open an explicit transaction themselves.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from statestore.exceptions import ConfigError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DroppedConnectionError",
    "IdleConnections",
    "create_async_state_engine",
    "create_sync_state_engine",
    "derive_urls",
    "dialect_family",
    "looks_dropped",
]

DEFAULT_TIMEOUT_S = 30.0
"""``database.timeout_seconds``: the longest one statement waits for the database --
to connect, for a server that stopped answering, or for a SQLite file's write lock."""

# backend family -> (sync driver, async driver) this library installs via its extras.
_DRIVERS = {
    "sqlite": ("pysqlite", "aiosqlite"),
    "postgresql": ("psycopg", "psycopg"),
    "mysql": ("pymysql", "asyncmy"),
    "mariadb": ("pymysql", "asyncmy"),
}
_ASYNC_DRIVERS = {"aiosqlite", "asyncpg", "psycopg_async", "aiomysql", "asyncmy"}
_TUNING: dict[str, Any] = {"skip_autocommit_rollback": True, "pool_reset_on_return": None}


_EXTRA_FOR_MODULE = {"psycopg": "postgres", "pymysql": "mysql", "asyncmy": "mysql"}


@contextlib.contextmanager
def _driver_installed(url: URL) -> Iterator[None]:
    """A missing driver is a configuration problem with a known fix: say which."""
    try:
        yield
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        extra = _EXTRA_FOR_MODULE.get(module)
        where = f"{url.drivername}:// needs the {module or 'driver'} module, which is not installed"
        if extra:
            raise ConfigError(f'{where}: pip install "statestore[{extra}]"') from exc
        raise ConfigError(
            f"{where}; statestore's extras do not install it: install it yourself, or leave "
            f"the driver out of the URL ({dialect_family(url)}://) to get the default one"
        ) from exc


def dialect_family(url: URL) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB counts as MySQL)."""
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


def derive_urls(url: str | URL) -> tuple[URL, URL]:
    """Return ``(sync_url, async_url)`` for a URL given with either kind of driver.

    ``postgresql://`` means psycopg 3 (sync and async), ``mysql://`` means PyMySQL and
    asyncmy, ``sqlite://`` the stdlib and aiosqlite. A driver named explicitly is kept
    for its own side, so ``mysql+mysqldb`` stays mysqlclient for sync calls.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"[database] url: not a database URL ({type(exc).__name__})") from None
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise ConfigError(
            f"[database] url: unsupported database {backend!r}; "
            "use sqlite, postgresql, mysql or mariadb"
        )
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(
            "[database] url: an in-memory SQLite database is private to one connection; "
            "use a file path, or InMemoryStateBackend for throwaway state"
        )
    sync_driver, async_driver = _DRIVERS[backend]
    driver = parsed.get_driver_name()
    given_async = driver in _ASYNC_DRIVERS or (
        backend == "postgresql" and driver == "psycopg" and parsed.drivername.endswith("_async")
    )
    explicit = "+" in parsed.drivername
    if given_async:
        return parsed.set(drivername=f"{backend}+{sync_driver}"), parsed
    sync_url = parsed if explicit else parsed.set(drivername=f"{backend}+{sync_driver}")
    return sync_url, parsed.set(drivername=f"{backend}+{async_driver}")


def _mysql_query(url: URL) -> URL:
    # utf8mb4 or 4-byte characters (emoji) are mangled; binary collations need it too.
    return url if "charset" in url.query else url.update_query_dict({"charset": "utf8mb4"})


def _connect_args(url: URL, timeout: float, *, is_async: bool) -> dict[str, Any]:
    family = dialect_family(url)
    if family == "postgresql":  # statements are bounded by the watchdog (deadlines.py)
        return {"connect_timeout": max(1, math.ceil(timeout))}
    if family == "mysql":
        if is_async:  # asyncmy has no read timeout: statements sit under asyncio.timeout
            return {"connect_timeout": timeout}
        # Socket timeouts bound the handshake and every read and write of a statement.
        return {"connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout}
    return {"timeout": timeout}


_CLIENT_FOUND_ROWS = 2  # the MySQL protocol's flag, the same in PyMySQL and asyncmy


def _changed_rows_only(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
    # SQLAlchemy asks MySQL for "found" rows in rowcounts; a create-only upsert must
    # see 0 when it changed nothing (a live row was there), so ask for changed rows.
    cparams["client_flag"] = cparams.get("client_flag", 0) & ~_CLIENT_FOUND_ROWS


def _sqlite_pragmas(timeout: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside one writer; NORMAL sync is durable across app
        # crashes (not power loss) in WAL mode; busy_timeout makes writers queue for
        # the lock instead of failing, up to the timeout.
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    return on_connect


def create_sync_state_engine(
    url: URL, *, autocommit: bool = True, timeout: float = DEFAULT_TIMEOUT_S
) -> Engine:
    """A sync engine for ``url`` with the tuning described in this module's docstring.

    ``autocommit=False`` gives an ordinary transactional engine (for migrations).
    """
    if dialect_family(url) == "mysql":
        url = _mysql_query(url)
    tuning: dict[str, Any] = dict(_TUNING, isolation_level="AUTOCOMMIT") if autocommit else {}
    with _driver_installed(url):
        args = _connect_args(url, timeout, is_async=False)
        engine = create_engine(url, connect_args=args, **tuning)
    if dialect_family(url) == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(timeout))
    elif dialect_family(url) == "mysql":
        event.listen(engine, "do_connect", _changed_rows_only)
    return engine


def create_async_state_engine(url: URL, *, timeout: float = DEFAULT_TIMEOUT_S) -> AsyncEngine:
    """The async twin of :func:`create_sync_state_engine`."""
    if dialect_family(url) == "mysql":
        url = _mysql_query(url)
    with _driver_installed(url):
        engine = create_async_engine(
            url,
            connect_args=_connect_args(url, timeout, is_async=True),
            isolation_level="AUTOCOMMIT",
            **_TUNING,
        )
    if dialect_family(url) == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(timeout))
    elif dialect_family(url) == "mysql":
        event.listen(engine.sync_engine, "do_connect", _changed_rows_only)
    return engine


class IdleConnections:
    """Pooled DBAPI connections kept between operations, one per concurrent caller.

    Checking a connection out of SQLAlchemy's pool and back costs ~20 µs — as much as a
    SQLite read. The hot path instead takes a connection from this list and puts it back
    (a ``list.pop``/``append``, atomic in CPython); only when the list is empty does it
    go to the pool, and beyond ``keep`` idle connections they return there.
    """

    def __init__(self, engine: Engine, keep: int) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[Any] = []
        self._closed = False

    def acquire(self) -> Any:
        """A pooled connection (``PoolProxiedConnection``) for one operation."""
        try:
            return self._idle.pop()
        except IndexError:
            return self._engine.raw_connection()

    def release(self, connection: Any) -> None:
        """Give a healthy connection back after its operation."""
        if self._closed or len(self._idle) >= self._keep:
            connection.close()
        else:
            self._idle.append(connection)

    def discard_all(self) -> None:
        """Throw away every idle connection (after one was found dead)."""
        while self._idle:
            connection = self._idle.pop()
            with contextlib.suppress(Exception):  # it is being thrown away anyway
                connection.invalidate()

    def close(self) -> None:
        """Return every idle connection to the pool (before the engine is disposed)."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()


def looks_dropped(exc: BaseException) -> bool:
    """A connection that went away, by the drivers' own words (async adapters do not
    always map raw driver errors to SQLAlchemy's disconnect check)."""
    text = str(exc).lower()
    return any(
        marker in text
        for marker in ("closed", "lost connection", "gone away", "broken pipe", "reset by peer",
                       "connection refused", "terminat", "eof")
    )  # fmt: skip


class DroppedConnectionError(Exception):
    """The connection died under a statement (server restart, network cut)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
