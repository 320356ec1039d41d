"""Real databases for every integration test: SQLite always, PostgreSQL and MariaDB.

Each test gets a database nobody else sees: a fresh SQLite file, a fresh PostgreSQL
schema inside a database created for this test run, or a fresh MariaDB database; all
are dropped afterwards. Server URLs come from ``STATESTORE_TEST_POSTGRES_URL`` and
``STATESTORE_TEST_MYSQL_URL`` (local defaults below). An unreachable server skips its
tests, unless ``STATESTORE_TEST_REQUIRE_SERVERS=1`` (as in CI), where it fails them.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from statestore import StateStore
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL, Engine, make_url

from tests.integration.tcp_proxy import TcpProxy

POSTGRES_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MYSQL_DEFAULT = "mysql+pymysql://root@127.0.0.1:3306/test"
DIALECTS = ("sqlite", "postgresql", "mysql")

_RUN_ID = uuid.uuid4().hex[:8]
_counter = itertools.count()


def _server_url(dialect: str) -> URL:
    if dialect == "postgresql":
        return make_url(os.environ.get("STATESTORE_TEST_POSTGRES_URL", POSTGRES_DEFAULT))
    return make_url(os.environ.get("STATESTORE_TEST_MYSQL_URL", MYSQL_DEFAULT))


def _unavailable(dialect: str, exc: Exception) -> None:
    message = f"{dialect} test server unreachable: {type(exc).__name__}: {exc}"
    if os.environ.get("STATESTORE_TEST_REQUIRE_SERVERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


class ServerDatabases:
    """Creates and drops throwaway databases/schemas on one server for this test run."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.admin_url = _server_url(dialect)
        self.admin: Engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.run_database = f"statestore_test_{_RUN_ID}"
        if dialect == "postgresql":
            with self.admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{self.run_database}"')
            self.run_engine: Engine = create_engine(
                self.admin_url.set(database=self.run_database), isolation_level="AUTOCOMMIT"
            )

    def create(self) -> URL:
        name = f"sst_{_RUN_ID}_{next(_counter)}"
        if self.dialect == "postgresql":
            with self.run_engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
            url = self.admin_url.set(database=self.run_database)
            return url.update_query_dict({"options": f"-csearch_path={name}"})
        with self.admin.connect() as conn:
            conn.exec_driver_sql(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
        return self.admin_url.set(database=name)

    def drop(self, url: URL) -> None:
        if self.dialect == "postgresql":
            schema = url.query["options"].split("=", 1)[1]  # type: ignore[union-attr]
            with self.run_engine.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            return
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{url.database}`")

    def close(self) -> None:
        if self.dialect == "postgresql":
            self.run_engine.dispose()
            with self.admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.run_database}" WITH (FORCE)')
        self.admin.dispose()


_servers: dict[str, ServerDatabases | Exception] = {}


def _server(dialect: str) -> ServerDatabases:
    found = _servers.get(dialect)
    if found is None:
        try:
            found = ServerDatabases(dialect)
            with found.admin.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means "server unusable"
            found = exc
        _servers[dialect] = found
    if isinstance(found, Exception):
        _unavailable(dialect, found)
        raise AssertionError("unreachable")  # pragma: no cover - skip/fail raised
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for server in _servers.values():
        if isinstance(server, ServerDatabases):
            server.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def dialect(request: pytest.FixtureRequest) -> str:
    """Every integration test that asks for a database runs once per dialect."""
    return str(request.param)


@pytest.fixture
def db_url(dialect: str, tmp_path: Path) -> Iterator[URL]:
    """A URL (sync driver) of an empty database that only this test uses."""
    if dialect == "sqlite":
        yield make_url(f"sqlite:///{tmp_path / 'state.db'}")
        return
    server = _server(dialect)
    url = server.create()
    try:
        yield url
    finally:
        server.drop(url)


SERVERS = [
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
"""The database servers (not SQLite), for ``parametrize("dialect", SERVERS,
indirect=True)``: tests of what crosses a network."""


@pytest.fixture
def proxied(migrated_url: URL) -> Iterator[tuple[TcpProxy, URL]]:
    """A migrated database reached through a :class:`TcpProxy` (which counts the round
    trips, or cuts and stalls them) and the URL that goes through it."""
    with TcpProxy(migrated_url.host or "127.0.0.1", migrated_url.port or 0) as proxy:
        yield proxy, migrated_url.set(host="127.0.0.1", port=proxy.port)


@pytest.fixture
def migrated_url(db_url: URL) -> URL:
    """Like ``db_url``, with the statestore schema already at head."""
    from statestore.metastore import upgrade

    upgrade(db_url)
    return db_url


@pytest.fixture
def conn(migrated_url: URL) -> Iterator[Connection]:
    """A SQLAlchemy connection to ``migrated_url`` (its own engine, disposed after)."""
    engine = create_engine(migrated_url)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


@pytest.fixture(params=["memory", "database"])
def store(request: pytest.FixtureRequest, dialect: str) -> Iterator[StateStore]:
    """A store on the in-memory backend (once) and on each database, named as the
    writer ``worker-1``: for behaviour every backend with the capability must share."""
    from statestore import InMemoryStateBackend, StateStore

    if request.param == "memory":
        if dialect != "sqlite":
            pytest.skip("the in-memory backend runs once")
        with StateStore(backend=InMemoryStateBackend(), updated_by="worker-1") as memory:
            yield memory
        return
    url: URL = request.getfixturevalue("migrated_url")
    with StateStore(url.render_as_string(hide_password=False), updated_by="worker-1") as db:
        yield db
