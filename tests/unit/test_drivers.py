"""Driver URL forms: refused ones fail at construction, supported ones get their own
connect arguments (no database, no driver import)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from statestore import ConfigError, StateStore
from statestore.metastore import MetastoreStateBackend
from statestore.metastore.drivers import DRIVERS, REFUSED, connect_args
from statestore.metastore.engine import derive_urls
from statestore.metastore.retries import is_deadlock

SUPPORTED_NAMES = ("psycopg", "psycopg2", "asyncpg", "pymysql", "mysqldb", "asyncmy", "aiomysql")


def _url(family: str, driver: str) -> str:
    if family == "sqlite":
        return f"sqlite+{driver}:///state.db"
    return f"{family}+{driver}://user:secret@db.internal/app"


@pytest.mark.parametrize(
    ("family", "driver"), sorted(REFUSED), ids=[f"{f}+{d}" for f, d in sorted(REFUSED)]
)
def test_refused_driver_fails_at_construction_naming_the_supported_ones(
    family: str, driver: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        MetastoreStateBackend(_url(family, driver))
    message = str(refused.value)
    assert f"{family}+{driver}:// is not supported" in message
    assert REFUSED[(family, driver)] in message  # the reason
    supported = [name for (fam, name) in DRIVERS if fam == family]
    assert supported
    for name in supported:
        if name not in ("pysqlite", "psycopg_async"):  # sqlite://; psycopg:// (async too)
            assert f"+{name}://" in message, name
    assert "secret" not in message


def test_pg8000_refusal_says_why() -> None:
    with pytest.raises(ConfigError, match=r"three round trips.*PgBouncer") as refused:
        StateStore("postgresql+pg8000://app@db/app")
    assert "postgresql+psycopg://" in str(refused.value)
    assert "postgresql+asyncpg://" in str(refused.value)


def test_mariadb_urls_are_checked_like_mysql() -> None:
    with pytest.raises(ConfigError, match=r"mariadb\+mysqlconnector:// is not supported"):
        MetastoreStateBackend("mariadb+mysqlconnector://app@db/app")
    sync_url, async_url = derive_urls("mariadb+mysqldb://app@db/app")
    assert (sync_url.drivername, async_url.drivername) == ("mariadb+mysqldb", "mariadb+asyncmy")


def test_unknown_driver_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"postgresql\+nosuch:// is not supported.*psycopg2"):
        MetastoreStateBackend("postgresql+nosuch://app@db/app")


@pytest.mark.parametrize(
    ("url", "sync_driver", "async_driver"),
    [
        ("postgresql://app@db/app", "psycopg", "psycopg"),
        ("postgresql+psycopg2://app@db/app", "psycopg2", "psycopg"),
        ("postgresql+asyncpg://app@db/app", "psycopg", "asyncpg"),
        ("postgresql+psycopg_async://app@db/app", "psycopg", "psycopg_async"),
        ("mysql://app@db/app", "pymysql", "asyncmy"),
        ("mysql+mysqldb://app@db/app", "mysqldb", "asyncmy"),
        ("mysql+aiomysql://app@db/app", "pymysql", "aiomysql"),
        ("sqlite+aiosqlite:///state.db", "pysqlite", "aiosqlite"),
    ],
)
def test_supported_forms_are_accepted_with_their_twin(
    url: str, sync_driver: str, async_driver: str
) -> None:
    backend = MetastoreStateBackend(url)  # builds nothing yet: no driver is imported
    sync_url, async_url = derive_urls(url)
    assert backend.url == sync_url
    assert (sync_url.get_driver_name(), async_url.get_driver_name()) == (sync_driver, async_driver)


def test_asyncpg_never_keeps_named_statements_and_takes_its_own_timeouts() -> None:
    args = connect_args(make_url("postgresql+asyncpg://app@db/app"), 2.5, None)
    assert "connect_timeout" not in args  # asyncpg.connect() has no such argument
    assert (args["timeout"], args["command_timeout"]) == (2.5, 2.5)
    assert args["statement_cache_size"] == 0
    assert args["prepared_statement_cache_size"] == 0
    assert args["prepared_statement_name_func"]() == ""  # PostgreSQL's unnamed statement


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("postgresql+psycopg", {"connect_timeout": 3, "prepare_threshold": None}),
        ("postgresql+psycopg2", {"connect_timeout": 3}),
        ("mysql+pymysql", {"connect_timeout": 2.5, "read_timeout": 2.5, "write_timeout": 2.5}),
        ("mysql+mysqldb", {"connect_timeout": 3, "read_timeout": 3, "write_timeout": 3}),
        ("mysql+asyncmy", {"connect_timeout": 2.5}),
        ("mysql+aiomysql", {"connect_timeout": 2.5}),
    ],
)
def test_timeouts_in_each_drivers_terms(form: str, expected: dict[str, object]) -> None:
    # libpq and mysqlclient take whole seconds: 2.5 rounds up, never down.
    assert connect_args(make_url(f"{form}://app@db/app"), 2.5, None) == expected


def test_every_supported_name_is_in_the_table() -> None:
    names = {name for (_family, name) in DRIVERS}
    assert set(SUPPORTED_NAMES) <= names
    assert not names & {name for (_family, name) in REFUSED}


class _Psycopg2DeadlockError(Exception):
    pgcode = "40P01"


class _Psycopg2UniqueError(Exception):
    pgcode = "23505"


def test_psycopg2_deadlocks_are_recognised_by_pgcode() -> None:
    assert is_deadlock(_Psycopg2DeadlockError("deadlock detected"))
    assert not is_deadlock(_Psycopg2UniqueError("duplicate key"))
