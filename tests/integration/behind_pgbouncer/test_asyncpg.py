"""asyncpg through PgBouncer in transaction mode, with statestore's default settings.

asyncpg's own statement cache names statements ``__asyncpg_stmt_N__`` in every client
alike, which collide on a transaction pooler's shared server connections. statestore
turns the caches off, so each statement is PostgreSQL's unnamed one, re-parsed in the
same exchange as its Bind/Execute/Sync (see ``metastore/asyncpg_statements.py``). Here
the conformance suite runs through the pooler on asyncpg, and several clients -- more
than the pooler's server connections -- run statements with the same parameter shapes
(a task ``delete`` and a ``clear``) in lock-step, every effect checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy.engine import URL

from statestore import TaskScope
from statestore.metastore import MetastoreStateBackend
from statestore.testing import AsyncBackendConformance
from tests.integration.behind_pgbouncer.conftest import POOL_SIZES
from tests.integration.pgbouncer import PgBouncer

pytest.importorskip("asyncpg")  # .[test] installs it; test_drivers fails in CI without it

pytestmark = pytest.mark.postgresql

CLIENTS = 2 * POOL_SIZES["transaction"]  # twice the server connections: they share
ROUNDS = 20
ROUND_TIMEOUT_S = 30.0


def _asyncpg_url(pooler: PgBouncer, database: str) -> URL:
    return pooler.url(database).set(drivername="postgresql+asyncpg")


class TestAsyncpgThroughTransactionPooler(AsyncBackendConformance):
    @pytest.fixture
    async def backend(
        self, transaction_pooler: PgBouncer, new_database: Callable[..., str]
    ) -> AsyncIterator[MetastoreStateBackend]:
        backend = MetastoreStateBackend(_asyncpg_url(transaction_pooler, new_database()))
        yield backend
        await backend.aclose()


async def _client_round(
    backend: MetastoreStateBackend, client: int, round_: int, problems: list[str]
) -> None:
    """Write three map indices, then delete one key (even clients) or clear one map
    index (odd clients): same parameter shape, different statements. Check the effect."""
    scopes = [TaskScope("pgb-asyncpg", f"client-{client}", "t", map_index=i) for i in range(3)]
    for scope in scopes:
        await backend.aset(scope, "a", f'"{client}-{round_}"')
        await backend.aset(scope, "b", "1")
    if client % 2 == 0:
        await backend.adelete(scopes[1], "a")
        expected = {(1, "a"): None, (1, "b"): "1"}
    else:
        await backend.aclear(scopes[1])
        expected = {(1, "a"): None, (1, "b"): None}
    for index in (0, 2):
        expected[(index, "a")] = f'"{client}-{round_}"'
        expected[(index, "b")] = "1"
    for (index, key), want in sorted(expected.items()):
        got = await backend.aget(scopes[index], key)
        if got != want:
            problems.append(f"client {client} round {round_} {index}/{key}: {got!r} != {want!r}")


async def test_clients_sharing_server_connections_get_exact_results(
    transaction_pooler: PgBouncer, new_database: Callable[..., str]
) -> None:
    url = _asyncpg_url(transaction_pooler, new_database())
    backends = [MetastoreStateBackend(url) for _ in range(CLIENTS)]
    problems: list[str] = []
    try:
        for round_ in range(ROUNDS):
            rounds = (_client_round(b, c, round_, problems) for c, b in enumerate(backends))
            await asyncio.wait_for(asyncio.gather(*rounds), ROUND_TIMEOUT_S)
    finally:
        for backend in backends:
            await backend.aclose()
    assert problems == [], "\n".join(problems[:12])
