"""The model-based test of ``tests/integration/test_state_machine.py``, through
PgBouncer in transaction mode: the same machine, the same checks of every read, report
and count, with the store's connections shared with nobody but taken per transaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from statestore import MetastoreStateBackend, StateStore
from statestore.metastore.tables import asset, asset_state, task_state
from tests.integration.behind_pgbouncer.conftest import PooledDatabases
from tests.integration.pgbouncer import PgBouncer
from tests.integration.test_state_machine import DEFAULT_DAYS, Stores, config, run_machine

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]


@pytest.fixture
def pooled_stores(transaction_pooler: PgBouncer, empty_database: str) -> Iterator[Stores]:
    url = transaction_pooler.url(empty_database)
    with StateStore(config=config(DEFAULT_DAYS, url)) as store:
        assert isinstance(store.backend, MetastoreStateBackend)
        other = StateStore(backend=store.backend, config=config(0))  # closed with `store`
        yield Stores(store, other, metastore=True)


def test_model_through_pgbouncer(
    pooled_stores: Stores, pooled_databases: PooledDatabases, empty_database: str
) -> None:
    direct = pooled_databases.direct(empty_database)

    def fresh() -> Stores:
        # Each hypothesis example starts from empty tables (emptied on the server itself).
        with direct.connect() as conn:
            for table in (asset_state, task_state, asset):
                conn.execute(delete(table))
        return pooled_stores

    run_machine(fresh)
