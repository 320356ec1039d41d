"""A steady-state get/set/delete is one statement and one round trip (SPEC §8).

Measured, not assumed: the connection goes through a loopback proxy that counts client
requests. Warm-up operations first (connect, schema check, prepared statements), then
every further operation must cost exactly one request, sync and async alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.engine import URL

from statestore.metastore import MetastoreStateBackend
from statestore.scopes import AssetScope, TaskScope
from tests.integration.conftest import SERVERS
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.usefixtures("migrated_url")

OPS = 12
WARM_UP = 8
TASK = TaskScope("dag", "run", "task")
ASSET = AssetScope(name="orders", uri="s3://bucket/orders")


@pytest.fixture
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _task_ops(backend: MetastoreStateBackend) -> dict[str, Callable[[int], object]]:
    return {
        "task set": lambda i: backend.set(TASK, f"k{i % 3}", str(i)),
        "task get": lambda i: backend.get(TASK, f"k{i % 3}"),
        "task get missing": lambda i: backend.get(TASK, f"missing{i}"),
        "task delete": lambda i: backend.delete(TASK, f"k{i % 3}"),
        "task clear": lambda i: backend.clear(TASK),
        "asset set": lambda i: backend.set(ASSET, f"k{i % 3}", str(i)),
        "asset get": lambda i: backend.get(ASSET, f"k{i % 3}"),
        "asset delete": lambda i: backend.delete(ASSET, f"k{i % 3}"),
    }


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
def test_sync_operations_cost_one_round_trip(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url)
    try:
        measured = {}
        for name, op in _task_ops(backend).items():
            for i in range(WARM_UP):
                op(i)
            proxy.reset()
            for i in range(OPS):
                op(i)
            measured[name] = proxy.requests / OPS
        assert measured == dict.fromkeys(measured, 1.0)
    finally:
        backend.close()


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
async def test_async_operations_cost_one_round_trip(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url)
    ops: dict[str, Callable[[int], Awaitable[object]]] = {
        "task set": lambda i: backend.aset(TASK, f"k{i % 3}", str(i)),
        "task get": lambda i: backend.aget(TASK, f"k{i % 3}"),
        "task delete": lambda i: backend.adelete(TASK, f"k{i % 3}"),
        "task clear": lambda i: backend.aclear(TASK),
        "asset set": lambda i: backend.aset(ASSET, f"k{i % 3}", str(i)),
        "asset get": lambda i: backend.aget(ASSET, f"k{i % 3}"),
    }
    try:
        measured = {}
        for name, op in ops.items():
            for i in range(WARM_UP):
                await op(i)
            proxy.reset()
            for i in range(OPS):
                await op(i)
            measured[name] = proxy.requests / OPS
        assert measured == dict.fromkeys(measured, 1.0)
    finally:
        await backend.aclose()
