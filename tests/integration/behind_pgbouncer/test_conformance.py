"""The shipped conformance suite through PgBouncer, in transaction and session mode.

Transaction mode is where the library's defaults are tested hardest: the backend's
connections are not its own between transactions, and the suite's concurrent tests
run several connections of one process over two shared server connections.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from statestore.metastore import MetastoreStateBackend
from statestore.testing import AsyncBackendConformance, BackendConformance
from tests.integration.pgbouncer import PgBouncer
from tests.integration.test_metastore_conformance import _checked_out, _close_without_leaks

pytestmark = pytest.mark.postgresql


class TestThroughPgBouncer(BackendConformance):
    @pytest.fixture
    def backend(self, pooler: PgBouncer, empty_database: str) -> Iterator[MetastoreStateBackend]:
        backend = MetastoreStateBackend(pooler.url(empty_database))
        yield backend
        _close_without_leaks(backend)


class TestThroughPgBouncerAsync(AsyncBackendConformance):
    @pytest.fixture
    async def backend(
        self, pooler: PgBouncer, empty_database: str
    ) -> AsyncIterator[MetastoreStateBackend]:
        backend = MetastoreStateBackend(pooler.url(empty_database))
        yield backend
        pool = backend.async_engine.pool
        await backend.aclose()
        assert _checked_out(pool) == 0, "a connection was not returned to the pool"
