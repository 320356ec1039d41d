"""When PgBouncer runs out, statestore says so within ``timeout_seconds``.

Two limits a deployment meets: session mode gives each client a server connection for
as long as it stays connected, so clients beyond ``default_pool_size`` wait in
PgBouncer's queue (for ``query_wait_timeout``, 120 s by default); and
``max_client_conn`` refuses clients beyond it. Each ends in a
``BackendUnavailableError`` that names what ran out, and the stores that did get in
keep working.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from statestore import StateStore, StateStoreConfig, TaskScope
from statestore.exceptions import BackendUnavailableError
from tests.integration.behind_pgbouncer.conftest import PooledDatabases
from tests.integration.pgbouncer import PgBouncer

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

SCOPE = TaskScope("limits", "run", "task")


@pytest.fixture
def private_pooler(
    pooled_databases: PooledDatabases, transaction_pooler: PgBouncer
) -> Iterator[Callable[..., PgBouncer]]:
    """``make(pool_mode, pool_size, max_client_conn)``: a PgBouncer of this test's own."""
    started: list[PgBouncer] = []

    def make(pool_mode: str, pool_size: int, max_client_conn: int = 500) -> PgBouncer:
        pooler = PgBouncer(
            pooled_databases.server.admin_url,
            pool_mode=pool_mode,
            pool_size=pool_size,
            max_client_conn=max_client_conn,
        )
        pooler.start()
        started.append(pooler)
        return pooler

    yield make
    for pooler in started:
        pooler.close()


def _store(pooler: PgBouncer, database: str, timeout: float = 2) -> StateStore:
    url = pooler.url(database).render_as_string(hide_password=False)
    return StateStore(
        config=StateStoreConfig(
            database={"url": url, "timeout_seconds": timeout, "pool_size": 1, "max_overflow": 0}
        )
    )


def test_a_full_session_pool_ends_in_a_typed_error_within_the_timeout(
    private_pooler: Callable[..., PgBouncer], new_database: Callable[..., str]
) -> None:
    pooler = private_pooler("session", pool_size=1)
    database = new_database()
    first = _store(pooler, database)
    second = _store(pooler, database, timeout=2)
    try:
        first.task_state(SCOPE).set("k", "first")  # holds the one server connection
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as caught:
            second.task_state(SCOPE).get("k")
        waited = time.monotonic() - started
        assert waited < 10, waited  # timeout_seconds, not PgBouncer's 120 s
        message = str(caught.value)
        assert "no answer within 2 s" in message
        assert "PgBouncer" in message
        assert "docs/deploying.md" in message
        assert first.task_state(SCOPE).get("k") == "first"  # the first store is unharmed
    finally:
        first.close()
        second.close()
    # Once the first store is gone, the second one gets the server connection.
    with _store(pooler, database) as third:
        assert third.task_state(SCOPE).get("k") == "first"


def test_max_client_conn_is_a_typed_error_naming_it(
    private_pooler: Callable[..., PgBouncer], new_database: Callable[..., str]
) -> None:
    pooler = private_pooler("transaction", pool_size=2, max_client_conn=1)
    database = new_database()
    with _store(pooler, database) as first, _store(pooler, database) as second:
        first.task_state(SCOPE).set("k", 1)  # the one client connection PgBouncer allows
        with pytest.raises(BackendUnavailableError, match="max_client_conn") as caught:
            second.task_state(SCOPE).get("k")
        assert "too many clients" in str(caught.value)
        assert first.task_state(SCOPE).get("k") == 1


async def test_the_async_side_is_bounded_the_same_way(
    private_pooler: Callable[..., PgBouncer], new_database: Callable[..., str]
) -> None:
    pooler = private_pooler("session", pool_size=1)
    database = new_database()
    first = _store(pooler, database)
    second = _store(pooler, database, timeout=2)
    try:
        await first.task_state(SCOPE).aset("k", "first")
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="no answer within 2 s"):
            await second.task_state(SCOPE).aget("k")
        assert time.monotonic() - started < 10
        assert await first.task_state(SCOPE).aget("k") == "first"
    finally:
        await first.aclose()
        await second.aclose()
