"""Every driver URL form statestore supports, on a real server.

One test per URL form proves the backend really runs on that driver (its engine, its
connections) and that a migrated schema, a write, a read with metadata, a conditional
write and a delete behave exactly; then the whole conformance suite runs on each
driver the dialect conformance module does not already cover (psycopg2, mysqlclient
sync; asyncpg, aiomysql async).

PostgreSQL isolation goes through a login role per test whose ``search_path`` is the
test's schema (``ALTER ROLE ... SET``): asyncpg takes no ``options`` startup argument,
so the ``?options=-csearch_path=`` URL of the shared fixture would not reach it.

A missing driver skips its tests, except with ``STATESTORE_TEST_REQUIRE_SERVERS=1``
(CI), where ``.[dev]`` installs every one of them (mysqlclient, which needs a C
toolchain, only there) and a missing one fails.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import URL

from statestore import AssetScope, TaskScope, VersionConflictError
from statestore.metastore import MetastoreStateBackend
from statestore.retention import utcnow
from statestore.testing import AsyncBackendConformance, BackendConformance
from tests.integration.conftest import _server

# URL form -> (family, module the driver imports as, async?)
FORMS = {
    "postgresql+psycopg": ("postgresql", "psycopg", False),
    "postgresql+psycopg_async": ("postgresql", "psycopg", True),
    "postgresql+psycopg2": ("postgresql", "psycopg2", False),
    "postgresql+asyncpg": ("postgresql", "asyncpg", True),
    "mysql+pymysql": ("mysql", "pymysql", False),
    "mysql+mysqldb": ("mysql", "MySQLdb", False),
    "mysql+asyncmy": ("mysql", "asyncmy", True),
    "mysql+aiomysql": ("mysql", "aiomysql", True),
}
_MARKS = {"postgresql": pytest.mark.postgresql, "mysql": pytest.mark.mysql}


def _forms(*names: str) -> list[object]:
    return [pytest.param(name, id=name, marks=_MARKS[FORMS[name][0]]) for name in names]


def _require_driver(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        message = f"driver {module} is not installed ({exc}); pip install -e '.[test]'"
        if os.environ.get("STATESTORE_TEST_REQUIRE_SERVERS") == "1":
            pytest.fail(message)  # CI installs .[test], which has every driver
        pytest.skip(message)


@pytest.fixture(params=_forms(*FORMS))
def form(request: pytest.FixtureRequest) -> str:
    """A URL form: ``dialect+driver``."""
    return str(request.param)


@pytest.fixture
def dialect(form: str) -> str:
    """The conftest's database fixtures, for this form's dialect only."""
    return FORMS[form][0]


@pytest.fixture
def driver_url(form: str, migrated_url: URL) -> Iterator[URL]:
    """The migrated test database, as a URL naming ``form``'s driver."""
    _require_driver(FORMS[form][1])
    if FORMS[form][0] == "mysql":
        yield migrated_url.set(drivername=form)
        return
    schema = str(migrated_url.query["options"]).split("=", 1)[1]
    server = _server("postgresql")
    with server.run_engine.connect() as conn:
        # Trust authentication (the test server's); the role only carries search_path.
        conn.exec_driver_sql(f'CREATE ROLE "{schema}" LOGIN SUPERUSER')
        conn.exec_driver_sql(f'ALTER ROLE "{schema}" SET search_path = "{schema}"')
    try:
        yield migrated_url.difference_update_query(["options"]).set(
            drivername=form, username=schema
        )
    finally:
        with server.run_engine.connect() as conn:
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{schema}"')


async def _driver_module(backend: MetastoreStateBackend, *, is_async: bool) -> str:
    """The top-level module of the connection class the backend's engine really uses."""
    if is_async:
        async with backend.async_engine.connect() as aconn:
            raw = await aconn.get_raw_connection()
            driver_connection = raw.driver_connection
    else:
        with backend.engine.connect() as conn:
            driver_connection = conn.connection.driver_connection
    return type(driver_connection).__module__.split(".")[0]


def _scopes() -> tuple[TaskScope, AssetScope]:
    return TaskScope("drivers", "run-1", "task", map_index=2), AssetScope(name="drivers-asset")


def _check_sync(backend: MetastoreStateBackend) -> None:
    for scope in _scopes():
        before = utcnow()
        backend.set(scope, "Key", '{"n":1,"s":"é😀"}', expires_at=before + timedelta(days=1))
        item = backend.get_item(scope, "Key")
        assert item is not None
        assert (item.value, item.version) == ('{"n":1,"s":"é😀"}', 1)
        assert item.expires_at is not None
        assert item.expires_at.utcoffset() == timedelta(0)
        assert item.expires_at - before - timedelta(days=1) < timedelta(seconds=5)
        assert backend.get(scope, "key") is None  # exact, case-sensitive keys
        backend.set_item(scope, "Key", "2", if_version=1)  # rowcount 1: written
        with pytest.raises(VersionConflictError):
            backend.set_item(scope, "Key", "3", if_version=1)  # rowcount 0: lost
        assert backend.get(scope, "Key") == "2"
        backend.delete(scope, "Key")
        assert backend.get(scope, "Key") is None


async def _check_async(backend: MetastoreStateBackend) -> None:
    for scope in _scopes():
        before = utcnow()
        await backend.aset(scope, "Key", '{"n":1,"s":"é😀"}', expires_at=before + timedelta(days=1))
        item = await backend.aget_item(scope, "Key")
        assert item is not None
        assert (item.value, item.version) == ('{"n":1,"s":"é😀"}', 1)
        assert item.expires_at is not None
        assert item.expires_at.utcoffset() == timedelta(0)
        assert item.expires_at - before - timedelta(days=1) < timedelta(seconds=5)
        assert await backend.aget(scope, "key") is None
        await backend.aset_item(scope, "Key", "2", if_version=1)
        with pytest.raises(VersionConflictError):
            await backend.aset_item(scope, "Key", "3", if_version=1)
        assert await backend.aget(scope, "Key") == "2"
        await backend.adelete(scope, "Key")
        assert await backend.aget(scope, "Key") is None


async def test_url_form_runs_on_its_driver(form: str, driver_url: URL) -> None:
    _family, module, is_async = FORMS[form]
    backend = MetastoreStateBackend(driver_url.render_as_string(hide_password=False))
    try:
        assert await _driver_module(backend, is_async=is_async) == module.split(".")[0]
        if is_async:
            await _check_async(backend)
            assert backend.async_engine.url.drivername == form
        else:
            _check_sync(backend)
            assert backend.engine.url.drivername == form
    finally:
        await backend.aclose()


_SYNC_ONLY_HERE = _forms("postgresql+psycopg2", "mysql+mysqldb")
_ASYNC_ONLY_HERE = _forms("postgresql+asyncpg", "mysql+aiomysql")


class TestDriverConformanceSync(BackendConformance):
    """The sync suite on the drivers test_metastore_conformance does not run."""

    @pytest.fixture(params=_SYNC_ONLY_HERE)
    def form(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def backend(self, driver_url: URL) -> Iterator[MetastoreStateBackend]:
        backend = MetastoreStateBackend(driver_url)
        yield backend
        pool = backend.engine.pool
        backend.close()
        assert pool.checkedout() == 0, "a connection was not returned to the pool"  # type: ignore[attr-defined]


class TestDriverConformanceAsync(AsyncBackendConformance):
    """The async suite on the drivers test_metastore_conformance does not run."""

    @pytest.fixture(params=_ASYNC_ONLY_HERE)
    def form(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    async def backend(self, driver_url: URL) -> AsyncIterator[MetastoreStateBackend]:
        backend = MetastoreStateBackend(driver_url)
        yield backend
        pool = backend.async_engine.pool
        await backend.aclose()
        assert pool.checkedout() == 0, "a connection was not returned to the pool"  # type: ignore[attr-defined]
