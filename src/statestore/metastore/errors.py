"""Driver errors become statestore errors here, and nowhere else.

The original exception stays as ``__cause__`` for debugging; the message names the
database host but never the password.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from statestore.exceptions import (
    BackendUnavailableError,
    InvalidScopeError,
    SchemaOutOfDateError,
    StateStoreError,
)
from statestore.metastore.deadlines import DEPLOYING_DOCS, StatementTimeout

__all__ = ["describe_url", "translate_errors"]

_MISSING_TABLE = re.compile(
    r"no such table|does not exist|doesn't exist|undefinedtable|1146", re.IGNORECASE
)


# Checked before _MISSING_TABLE: PostgreSQL says 'database "x" does not exist' too.
_MISSING_DATABASE = re.compile(r'database "[^"]*" does not exist|unknown database|\b1049\b', re.I)


# Login refused: unknown role/user, wrong password, no pg_hba.conf line for this client.
# Checked before _MISSING_TABLE: 'role "x" does not exist' is not a missing table.
_AUTH_FAILED = re.compile(
    r'role "[^"]*" does not exist|password authentication failed|authentication failed'
    r"|no pg_hba\.conf entry|access denied for user '[^']*'@'[^']*' \(using password"
    r"|\b1045\b|\b1698\b|\b28P01\b|\b28000\b",
    re.IGNORECASE,
)

# Logged in, but without a privilege a statement needs (PostgreSQL 42501, MySQL
# 1044/1142/1227: "CREATE command denied to user ...", "Access denied ... to database").
_PERMISSION_DENIED = re.compile(
    r"permission denied|must be owner of|command denied to user|no schema has been selected"
    r"|access denied for user '[^']*'@'[^']*' to database|\b1044\b|\b1142\b|\b1227\b|\b42501\b",
    re.IGNORECASE,
)
_DENIED_ON = re.compile(
    r"permission denied for (?P<kind>schema|table|relation|database|sequence) "
    r'"?(?P<name>[^\s"]+)'
    r"|(?P<privilege>\w+) command denied to user \S+ for table (?P<table>[`'\w.$]+)"
    r"|to database '(?P<database>[^']+)'",
    re.IGNORECASE,
)

# The database takes no writes: a standby or read replica, a read-only server, role or
# transaction (PostgreSQL 25006, MySQL 1290/1792), a read-only SQLite file.
_READ_ONLY = re.compile(
    r"in a read-only transaction|in a read only transaction|--read-only option"
    r"|readonly database|\b25006\b|\b1290\b|\b1792\b",
    re.IGNORECASE,
)


def _read_only(url: URL, reason: str) -> BackendUnavailableError:
    # Unavailable for writes, not misconfigured for good: a standby is promoted in a failover.
    return BackendUnavailableError(
        f"{describe_url(url)} takes no writes: it is read-only (a standby or read replica, "
        "a read-only server, role or transaction, or a read-only file); point statestore "
        f"at the writable primary (server said: {reason})"
    )


# The server (or the pooler in front of it) refused one more client.
_TOO_MANY_CLIENTS = re.compile(
    r"too many clients|remaining connection slots are reserved|too many connections"
    r"|no more connections allowed|\b1040\b|53300",
    re.IGNORECASE,
)


def _too_many_clients(url: URL, reason: str) -> BackendUnavailableError:
    limit = (
        "PgBouncer max_client_conn"
        if "no more connections allowed" in reason
        else "MySQL max_connections"
        if dialect_name(url) == "mysql"
        else "PostgreSQL max_connections"
    )
    return BackendUnavailableError(
        f"{describe_url(url)} refused a new connection: too many clients ({limit}; "
        f"server said: {reason}). Each store opens up to [database] pool_size + "
        "max_overflow connections per engine: lower them, share one store per process, "
        f"or put a transaction pooler (PgBouncer) in front; see {DEPLOYING_DOCS}"
    )


def _user_at(url: URL) -> str:
    port = f":{url.port}" if url.port else ""
    return f"user {url.username or '(none given)'!r} at {url.host or 'localhost'}{port}"


def _auth_failed(url: URL, reason: str) -> BackendUnavailableError:
    # Not SchemaOutOfDateError: "run db upgrade" would fail the same way, in a circle.
    return BackendUnavailableError(
        f"{describe_url(url)}: authentication failed for {_user_at(url)}: check user and "
        f"password in the URL (server said: {reason})"
    )


def _permission_denied(url: URL, reason: str) -> BackendUnavailableError:
    found = _DENIED_ON.search(reason)
    grantee = url.username or "the user"
    if "no schema has been selected" in reason:
        # PostgreSQL: no schema on the search_path exists *and* is usable by this user.
        what = (
            "no schema on its search_path is usable: the schema is missing, or the user "
            "lacks USAGE and CREATE on it (GRANT USAGE, CREATE ON SCHEMA name TO "
            f"{grantee}; or set search_path)"
        )
    elif found and (found.group("kind") or "").lower() == "schema":
        schema = found.group("name")
        what = (
            f"it needs USAGE and CREATE on schema {schema} (GRANT USAGE, CREATE ON SCHEMA "
            f"{schema} TO {grantee}; or run `statestore db upgrade` as the schema's owner)"
        )
    elif found and found.group("privilege"):
        table = found.group("table").replace("`", "").strip("'\"")
        what = (
            f"it needs the {found.group('privilege').upper()} privilege on {table} "
            "(GRANT it, or run `statestore db upgrade` as a user who has it)"
        )
    elif found and found.group("database"):
        what = f"it has no privileges on database {found.group('database')} (GRANT them)"
    elif found:
        what = f"it needs privileges on {found.group('kind').lower()} {found.group('name')}"
    else:
        what = "grant the privileges the statestore tables need"
    return BackendUnavailableError(
        f"{describe_url(url)}: permission denied for {_user_at(url)}: {what} "
        f"(server said: {reason})"
    )


def _pool_exhausted(url: URL, exc: BaseException) -> BackendUnavailableError:
    pool = getattr(exc, "args", ("",))[0] or ""
    waited = re.search(r"timeout (\d+(?:\.\d+)?)", str(pool))
    seconds = f"{float(waited.group(1)):g} s" if waited else "database.timeout_seconds"
    return BackendUnavailableError(
        f"{describe_url(url)}: every connection of this store's pool was in use for "
        f"{seconds} (database.timeout_seconds): more threads or tasks use the store at "
        "once than [database] pool_size + max_overflow allow; raise them, or use fewer "
        f"at once; see {DEPLOYING_DOCS}"
    )


def dialect_name(url: URL) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB counts as MySQL)."""
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


def describe_url(url: URL) -> str:
    """``dialect://host:port/database`` with no user or password, for messages."""
    if url.get_backend_name() == "sqlite":
        return f"sqlite file {url.database}"
    port = f":{url.port}" if url.port else ""
    return f"{url.get_backend_name()}://{url.host or 'localhost'}{port}/{url.database or ''}"


def _missing_sqlite_folder(url: URL, reason: str) -> str | None:
    """The folder a SQLite file cannot be opened in because it does not exist, if so."""
    if url.get_backend_name() != "sqlite" or "unable to open database file" not in reason:
        return None
    folder = Path(url.database or ".").expanduser().absolute().parent
    return None if folder.is_dir() else str(folder)


def _reason(exc: BaseException, url: URL) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def _dbapi_classes(
    dbapi: Any, names: tuple[str, ...] = ("OperationalError", "InterfaceError", "ProgrammingError")
) -> tuple[type[BaseException], ...]:
    found = (getattr(dbapi, name, None) for name in names) if dbapi is not None else ()
    return tuple(cls for cls in found if isinstance(cls, type))


def _unavailable(exc: BaseException, url: URL) -> BackendUnavailableError:
    return BackendUnavailableError(f"{describe_url(url)} is unavailable: {_reason(exc, url)}")


def _missing_folder(url: URL, reason: str) -> StateStoreError | None:
    folder = _missing_sqlite_folder(url, reason)
    if folder is None:
        return None
    return BackendUnavailableError(
        f"{describe_url(url)} cannot be opened: its folder {folder} does not exist "
        "(statestore creates the file, not the folders above it)"
    )


def _missing_database(url: URL, _reason: str) -> StateStoreError:
    return BackendUnavailableError(
        f"{describe_url(url)}: the database {url.database!r} does not exist on the "
        "server; create it (PostgreSQL: createdb NAME; MySQL/MariaDB: CREATE DATABASE "
        "NAME), then run `statestore db upgrade`"
    )


# PostgreSQL: a B-tree entry holds at most ~2704 bytes after compression; the web UI's
# dag index (revision 0003) holds dag, run and task ids together, up to 3 x 1000 bytes.
_INDEX_ENTRY_TOO_LARGE = re.compile(r"index row size \d+ exceeds (btree|maximum)", re.I)


def _index_entry_too_large(url: URL, reason: str) -> StateStoreError:
    # The caller's input, not the database's state: retrying cannot help.
    return InvalidScopeError(
        f"{describe_url(url)} cannot index this scope: its ids together are too long in "
        f"UTF-8 for a PostgreSQL index entry (server said: {reason}); use shorter ids"
    )


def _missing_table(url: URL, reason: str) -> StateStoreError:
    # Only here, after every login and privilege rule: a reachable, authenticated
    # database without our tables is the one case where "run db upgrade" is the answer.
    return SchemaOutOfDateError(
        f"the database {describe_url(url)} has no statestore tables ({reason}); run "
        f"`statestore --url '{url.render_as_string(hide_password=True)}' db upgrade` first"
    )


# In order: the first pattern that matches the driver's message decides.
_RULES: tuple[tuple[re.Pattern[str], Callable[[URL, str], StateStoreError]], ...] = (
    (_TOO_MANY_CLIENTS, _too_many_clients),
    (_READ_ONLY, _read_only),
    (_AUTH_FAILED, _auth_failed),
    (_PERMISSION_DENIED, _permission_denied),
    (_MISSING_DATABASE, _missing_database),
    (_INDEX_ENTRY_TOO_LARGE, _index_entry_too_large),
    (_MISSING_TABLE, _missing_table),
)


def _translated(exc: BaseException, url: URL) -> StateStoreError | None:
    """The statestore error for a driver error (``None``: let it pass unchanged).

    The same rules whether SQLAlchemy wrapped the error or a DBAPI cursor raised it.
    """
    reason = _reason(exc, url)
    folder = _missing_folder(url, reason)
    if folder is not None:
        return folder
    for pattern, build in _RULES:
        if pattern.search(reason):
            return build(url, reason)
    if type(exc).__name__ == "ProgrammingError":  # a bug of ours, not the server's state
        return None
    return _unavailable(exc, url)


_SA_ERRORS = (sa_exc.OperationalError, sa_exc.ProgrammingError, sa_exc.InterfaceError)
# asyncmy, when the server (or a proxy before it) closes a connection while it is being
# opened: a bare RuntimeError from setting TCP keep-alive on the gone socket, not a
# driver error -- a database that went away, not a bug (it was a 500 on the server).
_CLOSED_WHILE_CONNECTING = "Transport does not expose socket instance"


@contextmanager
def translate_errors(url: URL, dbapi: Any = None) -> Iterator[None]:
    """Re-raise connection-level driver errors as ``BackendUnavailableError`` and a
    missing table as ``SchemaOutOfDateError``; anything else passes through.

    ``dbapi``: the driver module, for code that runs on DBAPI cursors directly, whose
    errors SQLAlchemy has not wrapped.
    """
    driver_errors: tuple[type[BaseException], ...] = (*_SA_ERRORS, *_dbapi_classes(dbapi))
    internal_errors: tuple[type[BaseException], ...] = (
        sa_exc.InternalError, *_dbapi_classes(dbapi, ("InternalError",)),
    )  # fmt: skip
    try:
        yield
    except StateStoreError:
        raise  # already translated (nested boundaries), or ours to begin with
    except driver_errors as exc:
        translated = _translated(exc, url)
        if translated is None:
            raise
        raise translated from exc
    except internal_errors as exc:
        # Only a read-only database among these (psycopg: ReadOnlySqlTransaction).
        reason = _reason(exc, url)
        if not _READ_ONLY.search(reason):
            raise
        raise _read_only(url, reason) from exc
    except sa_exc.TimeoutError as exc:  # the pool's checkout wait (pool_timeout)
        raise _pool_exhausted(url, exc) from exc
    except (sa_exc.DisconnectionError, OSError, StatementTimeout) as exc:
        # OSError: a socket error that escaped the driver's own wrapping.
        raise _unavailable(exc, url) from exc
    except RuntimeError as exc:
        if _CLOSED_WHILE_CONNECTING not in str(exc):
            raise
        raise _unavailable(exc, url) from exc
