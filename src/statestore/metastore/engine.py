"""Engines tuned for one-statement, one-round-trip operations.

Every steady-state get/set/delete is a single autocommit statement. SQLAlchemy's usual
"BEGIN … ROLLBACK on return" would add trips the operation does not need, so engines
here run in ``AUTOCOMMIT`` with ``skip_autocommit_rollback`` and no reset-on-return;
the few multi-statement operations open an explicit transaction themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from statestore.exceptions import ConfigError
from statestore.metastore import drivers
from statestore.metastore.deadlines import attach_connecting_socket, bounded_connect

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "SQLITE_CHECKPOINT_PAGES",
    "DroppedConnectionError",
    "EngineSettings",
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

PREPARE_THRESHOLD_QUERY = "prepare_threshold"
"""The URL query that opts a psycopg URL into server-side prepared statements."""

PSYCOPG_PREPARE_THRESHOLD = 5
"""psycopg's own default: a statement is prepared on the server on its 6th run."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What every engine of one backend is built with (from ``[database]``).

    ``prepare_threshold`` is psycopg's: ``None`` (the default) never prepares a
    statement on the server. psycopg names prepared statements ``_pg3_0, _pg3_1, ...``
    in every client alike, so behind a transaction-mode pooler (PgBouncer), where
    clients take turns on shared server connections, one client's name would run
    another client's statement -- silently, when the two take the same parameters. A
    whole number opts in (0: prepare at once) on direct connections only.
    """

    timeout: float = DEFAULT_TIMEOUT_S
    pool_size: int = 5
    max_overflow: int = 10
    prepare_threshold: int | None = None

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        for name in ("pool_size", "max_overflow"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"[database] {name} must be a whole number >= 0, not {value!r}")
        if self.pool_size < 1:
            raise ConfigError("[database] pool_size must be at least 1")
        threshold = self.prepare_threshold
        if threshold is not None and (
            not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0
        ):
            raise ConfigError(
                f"[database] prepare_threshold must be a whole number >= 0 or none, not "
                f"{threshold!r}"
            )

    @property
    def connections(self) -> int:
        """The most connections one engine opens (``pool_size + max_overflow``)."""
        return self.pool_size + self.max_overflow


def _parse_threshold(text: str) -> int | None:
    if text.strip().lower() in ("none", "null", ""):
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(
            f"[database] url: ?{PREPARE_THRESHOLD_QUERY}={text} is not a whole number >= 0 or none"
        )
    return value


def prepares(url: URL, settings: EngineSettings) -> bool:
    """Whether engines made from ``url`` and ``settings`` prepare statements on the
    server (the opt-in, from ``[database]`` or the URL; an invalid one is refused when
    the engine is made, not here)."""
    try:
        return split_driver_options(url, settings)[1].prepare_threshold is not None
    except ConfigError:
        return False


def split_driver_options(url: URL, settings: EngineSettings) -> tuple[URL, EngineSettings]:
    """Take statestore's own options out of the URL's query into ``settings``.

    ``?prepare_threshold=N`` (or ``none``) reaches psycopg as a number, not the string
    SQLAlchemy would pass on; on another driver it is refused rather than ignored.
    """
    raw = url.query.get(PREPARE_THRESHOLD_QUERY)
    if raw is None:
        return url, settings
    if dialect_family(url) != "postgresql" or url.get_driver_name() not in (
        "psycopg",
        "psycopg_async",
    ):
        raise ConfigError(
            f"[database] url: ?{PREPARE_THRESHOLD_QUERY}= applies to psycopg "
            f"(postgresql+psycopg://) only, not {url.drivername}://"
        )
    text = raw if isinstance(raw, str) else raw[-1]
    threshold = _parse_threshold(text)
    stripped = url.difference_update_query([PREPARE_THRESHOLD_QUERY])
    return stripped, EngineSettings(
        settings.timeout, settings.pool_size, settings.max_overflow, threshold
    )


_EXTRA_FOR_MODULE = {
    "psycopg": "postgres", "pymysql": "mysql", "asyncmy": "mysql", "asyncpg": "asyncpg",
    "psycopg2": "psycopg2", "aiomysql": "aiomysql", "MySQLdb": "mysqlclient",
}  # fmt: skip


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
    if backend == "sqlite" and parsed.host and not parsed.database:
        # sqlite://statestore.db parses as a *host*: the user meant a file.
        raise ConfigError(
            f"[database] url: {parsed.host!r} is read as a host in a two-slash SQLite URL; "
            f"use three slashes for a relative path: sqlite:///{parsed.host} "
            "(four for an absolute one: sqlite:////var/lib/statestore.db)"
        )
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(
            "[database] url: an in-memory SQLite database is private to one connection; "
            "use a file path, or InMemoryStateBackend for throwaway state"
        )
    drivers.check_driver(parsed)  # a driver statestore does not run on: say so now
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


def _connect_args(
    url: URL, timeout: float, *, is_async: bool, prepare_threshold: int | None = None
) -> dict[str, Any]:
    # Per driver: timeouts, and no statement caches that outlive a transaction.
    return drivers.connect_args(url, timeout, prepare_threshold)


_CLIENT_FOUND_ROWS = 2  # the MySQL protocol's flag, the same in PyMySQL and asyncmy


def _changed_rows_only(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
    # SQLAlchemy asks MySQL for "found" rows in rowcounts; a create-only upsert must
    # see 0 when it changed nothing (a live row was there), so ask for changed rows.
    cparams["client_flag"] = cparams.get("client_flag", 0) & ~_CLIENT_FOUND_ROWS


SQLITE_CHECKPOINT_PAGES = 4000
"""WAL pages between SQLite's automatic checkpoints (its default is 1,000)."""


def _sqlite_pragmas(timeout: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside one writer; NORMAL sync is durable across app
        # crashes (not power loss) in WAL mode; busy_timeout makes writers queue for
        # the lock instead of failing, up to the timeout. A checkpoint every 4,000 WAL
        # pages (~16 MB) instead of 1,000: each one syncs and copies every page written
        # since the last, and a new key writes four B-trees, so checkpoints came every
        # ~250 writes and cost a quarter of a write's time (docs/performance.md).
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    return on_connect


def _pool_args(settings: EngineSettings) -> dict[str, Any]:
    # Waiting for a pooled connection is one more wait that timeout_seconds bounds.
    return {
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.timeout,
    }


def create_sync_state_engine(
    url: URL, *, autocommit: bool = True, settings: EngineSettings | None = None
) -> Engine:
    """A sync engine for ``url`` with the tuning described in this module's docstring.

    ``autocommit=False`` gives an ordinary transactional engine (for migrations).
    """
    settings = settings or EngineSettings()
    url, settings = split_driver_options(url, settings)
    timeout = settings.timeout
    if dialect_family(url) == "mysql":
        url = _mysql_query(url)
    tuning: dict[str, Any] = dict(_TUNING, isolation_level="AUTOCOMMIT") if autocommit else {}
    with _driver_installed(url):
        args = _connect_args(
            url, timeout, is_async=False, prepare_threshold=settings.prepare_threshold
        )
        engine = create_engine(url, connect_args=args, **tuning, **_pool_args(settings))
    if dialect_family(url) == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(timeout))
    elif dialect_family(url) == "mysql":
        event.listen(engine, "do_connect", _changed_rows_only)
    else:  # first: the queries SQLAlchemy runs on a new connection are watched too
        event.listen(engine, "connect", attach_connecting_socket, insert=True)
    return engine


def create_async_state_engine(url: URL, *, settings: EngineSettings | None = None) -> AsyncEngine:
    """The async twin of :func:`create_sync_state_engine`."""
    settings = settings or EngineSettings()
    url, settings = split_driver_options(url, settings)
    timeout = settings.timeout
    if dialect_family(url) == "mysql":
        url = _mysql_query(url)
    with _driver_installed(url):
        engine = create_async_engine(
            url,
            connect_args=_connect_args(
                url, timeout, is_async=True, prepare_threshold=settings.prepare_threshold
            ),
            isolation_level="AUTOCOMMIT",
            **_TUNING,
            **_pool_args(settings),
        )
    if dialect_family(url) == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(timeout))
    elif dialect_family(url) == "mysql":
        event.listen(engine.sync_engine, "do_connect", _changed_rows_only)
    else:
        event.listen(engine.sync_engine, "connect", attach_connecting_socket, insert=True)
    drivers.listen(engine.sync_engine, url)
    return engine


class IdleConnections:
    """Pooled DBAPI connections kept between operations, one per concurrent caller.

    Checking a connection out of SQLAlchemy's pool and back costs ~20 µs — as much as a
    SQLite read. The hot path instead takes a connection from this list and puts it back
    (a ``list.pop``/``append``, atomic in CPython); only when the list is empty does it
    go to the pool. ``keep`` is the pool's size: connections beyond it are closed on
    return, so at rest a store holds at most ``pool_size`` connections.
    """

    def __init__(self, engine: Engine, keep: int, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._engine = engine
        self._keep = keep
        self._timeout = timeout
        self._idle: list[Any] = []
        self._closed = False

    def acquire(self) -> Any:
        """A pooled connection (``PoolProxiedConnection``) for one operation."""
        try:
            return self._idle.pop()
        except IndexError:
            pass
        with bounded_connect(self._timeout):  # a new one may be opened: bound it
            return self._engine.raw_connection()

    def release(self, connection: Any) -> None:
        """Give a healthy connection back after its operation."""
        if len(self._idle) < self._keep and not self._closed:
            self._idle.append(connection)
        elif self._closed:
            connection.close()
        else:
            # Beyond pool_size (overflow under many threads): close it, as the pool does
            # with overflow, so a store at rest holds at most pool_size connections.
            connection.invalidate()

    def discard_all(self) -> None:
        """Throw away every idle connection (after one was found dead)."""
        while self._idle:
            connection = self._idle.pop()
            with contextlib.suppress(Exception):  # it is being thrown away anyway
                connection.invalidate()

    def return_idle(self) -> None:
        """Hand the idle connections back to the pool, so that code going through
        SQLAlchemy (slow paths, maintenance) reuses them instead of opening more."""
        while self._idle:
            self._idle.pop().close()

    def close(self) -> None:
        """Return every idle connection to the pool (before the engine is disposed)."""
        self._closed = True
        self.return_idle()

    def forget(self) -> list[Any]:
        """Drop the idle connections without closing them (a forked child's view)."""
        kept, self._idle = self._idle, []
        return kept


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
