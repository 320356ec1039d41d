"""The shipped conformance suite, run against the metastore on every dialect.

Sync tests use each dialect's sync driver (sqlite3, psycopg, PyMySQL); async tests use
its async driver (aiosqlite, psycopg async, aiomysql): six combinations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.pool import Pool

from statestore.metastore import MetastoreStateBackend
from statestore.testing import AsyncBackendConformance, BackendConformance


def _checked_out(pool: Pool) -> int:
    return int(getattr(pool, "checkedout", lambda: 0)())


def _close_without_leaks(backend: MetastoreStateBackend) -> None:
    pool: Pool | None = backend.engine.pool
    backend.close()  # returns the idle connections, then disposes the engine
    if pool is not None:
        assert _checked_out(pool) == 0, "a connection was not returned to the pool"


class TestMetastoreSync(BackendConformance):
    @pytest.fixture
    def backend(self, migrated_url: URL) -> Iterator[MetastoreStateBackend]:
        backend = MetastoreStateBackend(migrated_url)
        yield backend
        _close_without_leaks(backend)


class TestMetastoreAsync(AsyncBackendConformance):
    @pytest.fixture
    async def backend(self, migrated_url: URL) -> AsyncIterator[MetastoreStateBackend]:
        backend = MetastoreStateBackend(migrated_url)
        yield backend
        pool = backend.async_engine.pool
        await backend.aclose()  # returns the idle connections, then disposes the engine
        assert _checked_out(pool) == 0, "a connection was not returned to the pool"
