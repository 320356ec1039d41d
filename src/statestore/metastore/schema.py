"""Create, migrate and check the metastore schema with Alembic, programmatically.

The migration scripts ship inside the package; this module points Alembic at them by
absolute path and hands it the caller's connection, so the same code serves
``store.upgrade()``, ``statestore db upgrade`` and a host's own start-up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine

from statestore.exceptions import BackendUnavailableError, SchemaOutOfDateError
from statestore.metastore.deadlines import bounded_connect
from statestore.metastore.engine import (
    DEFAULT_TIMEOUT_S,
    EngineSettings,
    create_sync_state_engine,
    derive_urls,
    dialect_family,
)
from statestore.metastore.errors import describe_url, translate_errors
from statestore.metastore.tables import VERSION_TABLE

__all__ = [
    "MIGRATIONS_DIR",
    "check_schema",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Serialises concurrent upgrades on the servers; SQLite serialises through BEGIN IMMEDIATE.
# PostgreSQL's lock is transaction-scoped: behind a transaction-mode pooler (PgBouncer) a
# session-level one would stay on whichever server connection took it, held for ever.
_PG_LOCK_KEY = 0x5354_4154  # "STAT"
_PG_LOCK_TIMEOUT = "55P03"  # lock_not_available: lock_timeout passed
_MYSQL_LOCK_PREFIX = "statestore_migrations:"


def mysql_lock_name(database: str | None) -> str:
    """The migration lock of one MySQL database. GET_LOCK names are server-wide, so the
    name carries the database: migrations of two databases never wait for each other."""
    return (_MYSQL_LOCK_PREFIX + (database or ""))[:64]  # MySQL's longest lock name


# Alembic's `context`/`op` proxies are process globals: one migration at a time per process.
_ALEMBIC_LOCK = threading.RLock()


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision this release of statestore expects."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _revision_of(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


@contextmanager
def _engine_for(target: str | URL | Engine, timeout: float) -> Iterator[Engine]:
    if isinstance(target, Engine):
        yield target
        return
    url = derive_urls(target)[0]
    # SQLite migrates in autocommit mode under our own BEGIN IMMEDIATE (see below);
    # the servers use ordinary transactions so their DDL is transactional where possible.
    engine = create_sync_state_engine(
        url, autocommit=dialect_family(url) == "sqlite", settings=EngineSettings(timeout)
    )
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _connected(engine: Engine, timeout: float) -> Iterator[Connection]:
    """A connection of ``engine``, opened within ``timeout`` (a pooler may hold it)."""
    with bounded_connect(timeout):
        conn = engine.connect()
    with conn:
        yield conn


def _sqlite_raw(connection: Connection, sql: str, *, quiet: bool = False) -> None:
    # Below SQLAlchemy on purpose: its own transaction bookkeeping must not see this one.
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
    except Exception:
        if not quiet:
            raise
    finally:
        cursor.close()


def _lock_wait_over(connection: Connection, timeout: float) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"{describe_url(connection.engine.url)}: another process has held the migration "
        f"lock for over {timeout:g} s (database.timeout_seconds); run the migration again "
        "once it is done"
    )


@contextmanager
def _migration_lock(connection: Connection, timeout: float) -> Iterator[None]:
    """Hold a database-wide lock so two processes never migrate at once; wait for it
    at most ``timeout`` seconds."""
    family = dialect_family(connection.engine.url)
    if connection.in_transaction():
        connection.commit()  # end an autobegun read; Alembic must own the transactions
    if family == "sqlite":
        # sqlite3 (and aiosqlite) expose autocommit as isolation_level None; SQLAlchemy's
        # get_isolation_level() reports the database's level, never "AUTOCOMMIT".
        if getattr(connection.connection.dbapi_connection, "isolation_level", "") is not None:
            yield  # a host's own engine: it manages its own transactions
            return
        # One write transaction around the whole upgrade: atomic, and a second process
        # waits on the lock (busy_timeout), then finds the schema already at head.
        _sqlite_raw(connection, "BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            _sqlite_raw(connection, "ROLLBACK", quiet=True)
            raise
        _sqlite_raw(connection, "COMMIT", quiet=True)  # Alembic may have committed it
        return
    if family == "postgresql":
        with _postgres_migration_transaction(connection, timeout):
            yield
        return
    # MySQL's DDL commits implicitly, so no transaction could hold a lock across it:
    # GET_LOCK is per session, released below and when the session ends.
    lock_name = mysql_lock_name(connection.exec_driver_sql("SELECT DATABASE()").scalar())
    started = time.monotonic()
    try:
        got = connection.execute(
            text("SELECT GET_LOCK(:n, :t)"), {"n": lock_name, "t": max(1, round(timeout))}
        ).scalar()
    except (sa_exc.OperationalError, BackendUnavailableError) as exc:
        # The socket's read timeout is timeout_seconds too, and may end the wait just
        # before GET_LOCK's own: the same answer ("still held"), not a lost connection.
        if time.monotonic() - started >= 0.9 * timeout:
            raise _lock_wait_over(connection, timeout) from exc
        raise
    if connection.in_transaction():
        connection.commit()
    if got != 1:  # 0: timed out; NULL: an error
        raise _lock_wait_over(connection, timeout)
    try:
        yield
    finally:
        connection.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": lock_name})
        if connection.in_transaction():
            connection.commit()


@contextmanager
def _postgres_migration_transaction(connection: Connection, timeout: float) -> Iterator[None]:
    """One transaction around the whole migration, holding a transaction-scoped
    advisory lock: it ends with the transaction however that ends, pooler or not.

    Alembic runs inside this transaction (its DDL is transactional on PostgreSQL) and
    commits it when done. ``lock_timeout`` bounds the wait for our lock and for the
    tables' locks alike.
    """
    milliseconds = max(1, round(timeout * 1000))
    try:
        connection.execute(text(f"SET LOCAL lock_timeout = {milliseconds}"))
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    except sa_exc.OperationalError as exc:
        connection.rollback()
        if getattr(exc.orig, "sqlstate", None) == _PG_LOCK_TIMEOUT:
            raise _lock_wait_over(connection, timeout) from exc
        raise
    try:
        yield
    except BaseException:
        if connection.in_transaction():
            connection.rollback()
        raise
    if connection.in_transaction():
        connection.commit()


def run_upgrade(
    connection: Connection, revision: str = "head", timeout: float = DEFAULT_TIMEOUT_S
) -> None:
    """Upgrade on an open connection (used by ``run_sync`` from the async path too)."""
    with _ALEMBIC_LOCK, _migration_lock(connection, timeout):
        command.upgrade(_alembic_config(connection), revision)


def upgrade(
    target: str | URL | Engine, revision: str = "head", *, timeout: float = DEFAULT_TIMEOUT_S
) -> None:
    """Create or migrate the schema of the database at ``target`` to ``revision``.

    Safe to call from several processes at once, and through a transaction-mode
    pooler: the first migrates, the others wait (at most ``timeout`` seconds, then
    ``BackendUnavailableError``) and then find nothing to do.
    """
    with (
        _engine_for(target, timeout) as engine,
        translate_errors(engine.url),
        _connected(engine, timeout) as conn,
    ):
        run_upgrade(conn, revision, timeout)


def downgrade(
    target: str | URL | Engine, revision: str, *, timeout: float = DEFAULT_TIMEOUT_S
) -> None:
    """Migrate the schema down to ``revision`` (``"base"`` drops every statestore table)."""
    with (
        _engine_for(target, timeout) as engine,
        translate_errors(engine.url),
        _connected(engine, timeout) as conn,
        _ALEMBIC_LOCK,
        _migration_lock(conn, timeout),
    ):
        command.downgrade(_alembic_config(conn), revision)


def current_revision(
    target: str | URL | Engine, *, timeout: float = DEFAULT_TIMEOUT_S
) -> str | None:
    """The revision the database is at, or ``None`` if statestore was never installed."""
    with (
        _engine_for(target, timeout) as engine,
        translate_errors(engine.url),
        _connected(engine, timeout) as conn,
    ):
        return _revision_of(conn)


def check_schema(connection: Connection) -> None:
    """Raise :class:`SchemaOutOfDateError` unless the schema is at this release's head."""
    current = _revision_of(connection)
    head = head_revision()
    if current == head:
        return
    url = connection.engine.url.render_as_string(hide_password=True)
    if current is None:
        problem = "has no statestore tables"
    else:
        problem = f"is at schema revision {current}, this release needs {head}"
    # The URL in the hint: without it, `statestore db upgrade` would migrate whatever
    # database the configuration names (the SQLite default), not this one.
    raise SchemaOutOfDateError(
        f"the database {url} {problem}; run `statestore --url '{url}' db upgrade` "
        "(or call statestore.metastore.upgrade(url)) first"
    )
