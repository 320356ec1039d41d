"""A batch of 100 keys is one statement and one round trip on PostgreSQL and MySQL.

Counted through the loopback proxy of ``test_round_trips``: after warm-up (connect,
schema check, the statement compiled), each ``get_many``/``get_items``/``set_many``/
``delete_many`` of 100 keys must cost exactly one client request, sync and async, task
and asset state -- and must have done its work (every result checked).
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from statestore.metastore import MetastoreStateBackend
from statestore.scopes import AssetScope, StateScope, TaskScope
from tests.integration.conftest import SERVERS
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.usefixtures("migrated_url")

KEYS = [f"key-{i:03d}" for i in range(100)]
TASK = TaskScope("dag", "run", "task")
ASSET = AssetScope(name="orders", uri="s3://bucket/orders")


@pytest.fixture
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _entries(round_: int) -> list[tuple[str, str]]:
    return [(key, f'"{round_}:{key}"') for key in KEYS]


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
def test_sync_batches_cost_one_round_trip(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url)
    scopes: list[StateScope] = [TASK, ASSET]
    try:
        for scope in scopes:
            for warm in range(2):  # connect, check the schema, register the asset
                backend.set_many(scope, _entries(warm))
                backend.get_many(scope, KEYS)
                backend.get_items(scope, KEYS)
                backend.delete_many(scope, KEYS)
            trips = {}
            proxy.reset()
            backend.set_many(scope, _entries(7))
            trips["set_many"] = proxy.requests
            proxy.reset()
            assert backend.get_many(scope, KEYS) == dict(_entries(7))
            trips["get_many"] = proxy.requests
            proxy.reset()
            items = backend.get_items(scope, KEYS)
            trips["get_items"] = proxy.requests
            assert {k: (i.value, i.version) for k, i in items.items()} == {
                k: (v, 1) for k, v in _entries(7)
            }
            proxy.reset()
            backend.delete_many(scope, KEYS)
            trips["delete_many"] = proxy.requests
            assert backend.get_many(scope, KEYS) == {}
            assert trips == dict.fromkeys(trips, 1), (scope, trips)
    finally:
        backend.close()


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
async def test_async_batches_cost_one_round_trip(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url)
    scopes: list[StateScope] = [TASK, ASSET]
    try:
        for scope in scopes:
            for warm in range(2):
                await backend.aset_many(scope, _entries(warm))
                await backend.aget_many(scope, KEYS)
                await backend.aget_items(scope, KEYS)
                await backend.adelete_many(scope, KEYS)
            trips = {}
            proxy.reset()
            await backend.aset_many(scope, _entries(8))
            trips["set_many"] = proxy.requests
            proxy.reset()
            assert await backend.aget_many(scope, KEYS) == dict(_entries(8))
            trips["get_many"] = proxy.requests
            proxy.reset()
            items = await backend.aget_items(scope, KEYS)
            trips["get_items"] = proxy.requests
            assert sorted(items) == KEYS
            proxy.reset()
            await backend.adelete_many(scope, KEYS)
            trips["delete_many"] = proxy.requests
            assert await backend.aget_many(scope, KEYS) == {}
            assert trips == dict.fromkeys(trips, 1), (scope, trips)
    finally:
        await backend.aclose()


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
def test_a_batch_for_a_new_asset_registers_it_once(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url)
    try:
        backend.set(TASK, "warm", "1")  # connected, schema checked
        fresh = AssetScope(name="first-written-by-a-batch")
        backend.set_many(fresh, _entries(1))
        assert backend.get_many(fresh, KEYS) == dict(_entries(1))
        assert [a.keys for a in backend.list_assets() if a.name == fresh.name] == [100]
        proxy.reset()
        backend.set_many(fresh, _entries(2))  # registered now: the steady state
        assert proxy.requests == 1
    finally:
        backend.close()
