"""Fixtures for the tests that run the library through a real PgBouncer.

One private PgBouncer per pool mode for the whole test run (``transaction_pooler``,
``session_pooler``; ``pooler`` is parametrised over both), started on first use and
stopped at the end. Databases are created on the real server directly (PgBouncer's
``*`` entry routes every name there) and dropped afterwards. Without pgbouncer or the
PostgreSQL server these tests skip -- or fail, with ``STATESTORE_TEST_REQUIRE_SERVERS=1``
as in CI.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, delete
from sqlalchemy.engine import URL

from statestore.metastore import upgrade
from statestore.metastore.tables import asset, asset_state, task_state, write_receipt
from tests.integration.conftest import ServerDatabases, _server
from tests.integration.pgbouncer import PgBouncer, find_pgbouncer

POOL_SIZES = {"transaction": 2, "session": 20}
"""Server connections per database. Transaction mode: fewer than clients, so clients
share them. Session mode holds a server connection for as long as a client keeps its
connection, so it is sized like a deployment would be: for every client connection."""

_RUN_ID = uuid.uuid4().hex[:8]
_counter = itertools.count()
_poolers: dict[str, PgBouncer] = {}


def _pooler(mode: str) -> PgBouncer:
    server = _server("postgresql")  # skips (or fails in CI) without the server
    if find_pgbouncer() is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if os.environ.get("STATESTORE_TEST_REQUIRE_SERVERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    found = _poolers.get(mode)
    if found is None:
        found = PgBouncer(server.admin_url, pool_mode=mode, pool_size=POOL_SIZES[mode])
        found.start()
        _poolers[mode] = found
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    while _poolers:
        _poolers.popitem()[1].close()


@pytest.fixture(scope="session")
def transaction_pooler() -> PgBouncer:
    """PgBouncer in ``pool_mode = transaction``: a server connection per transaction."""
    return _pooler("transaction")


@pytest.fixture(scope="session")
def session_pooler() -> PgBouncer:
    """PgBouncer in ``pool_mode = session``: a server connection per client connection."""
    return _pooler("session")


@pytest.fixture(
    scope="session",
    params=[pytest.param("transaction"), pytest.param("session")],
)
def pooler(request: pytest.FixtureRequest) -> PgBouncer:
    """Each PgBouncer pool mode in turn."""
    return _pooler(str(request.param))


class PooledDatabases:
    """Fresh databases on the real server, for use through a PgBouncer."""

    def __init__(self, server: ServerDatabases) -> None:
        self.server = server
        self._engines: dict[str, Engine] = {}

    def create(self, *, migrated: bool = True) -> str:
        name = f"sspgb_{_RUN_ID}_{next(_counter)}"
        with self.server.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        if migrated:
            upgrade(self.direct_url(name))  # directly: the pooler is what is under test
        return name

    def direct_url(self, name: str) -> URL:
        return self.server.admin_url.set(database=name)

    def direct(self, name: str) -> Engine:
        """An autocommit engine on ``name``, straight to the server (not pooled)."""
        if name not in self._engines:
            self._engines[name] = create_engine(self.direct_url(name), isolation_level="AUTOCOMMIT")
        return self._engines[name]

    def wipe(self, name: str) -> None:
        """Delete every statestore row (children first), keeping the schema."""
        with self.direct(name).connect() as conn:
            for table in (asset_state, task_state, asset, write_receipt):
                conn.execute(delete(table))

    def drop(self, name: str) -> None:
        engine = self._engines.pop(name, None)
        if engine is not None:
            engine.dispose()
        # FORCE: PgBouncer keeps idle server connections to it.
        with self.server.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pooled_databases() -> PooledDatabases:
    return PooledDatabases(_server("postgresql"))


@pytest.fixture
def new_database(pooled_databases: PooledDatabases) -> Iterator[Callable[..., str]]:
    """``new_database(migrated=True)``: the name of a fresh database, dropped afterwards."""
    made: list[str] = []

    def make(*, migrated: bool = True) -> str:
        made.append(pooled_databases.create(migrated=migrated))
        return made[-1]

    yield make
    for name in made:
        pooled_databases.drop(name)


@pytest.fixture(scope="module")
def module_database(pooled_databases: PooledDatabases) -> Iterator[str]:
    """One migrated database for a whole module (tests wipe it: ``empty_database``)."""
    name = pooled_databases.create()
    yield name
    pooled_databases.drop(name)


@pytest.fixture
def empty_database(pooled_databases: PooledDatabases, module_database: str) -> str:
    """The module's database with every statestore row deleted: cheaper than a new one."""
    pooled_databases.wipe(module_database)
    return module_database
