"""Through a state server, a steady-state operation is one HTTP request, and each request
one database round trip (issue 17's performance contract).

Measured, not assumed, with two loopback proxies that count client requests (a burst of
bytes from a client after the other side has answered): one between the
``HttpStateBackend`` and a real server process, one between that server and PostgreSQL
(or MariaDB). Warm-up operations first -- connections, the schema check, the token's
first verification, an asset's registration -- then every further get, set, delete
and clear must cost exactly one request on each proxy, sync and async. A
compare-and-set commits a receipt with its write (``metastore.receipts``), so that a
copy of the request is answered, not applied again: on PostgreSQL in the same one
statement, on MariaDB in a transaction of four round trips (begin, the receipt, the
write, commit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from statestore.backends.http import HttpStateBackend
from statestore.scopes import AssetScope, TaskScope
from statestore.wire import Grant
from tests.integration.conftest import SERVERS
from tests.integration.http_server import ServerProcess, start_server
from tests.integration.tcp_proxy import TcpProxy

pytest.importorskip("fastapi", reason="the server extra is not installed")
pytestmark = pytest.mark.usefixtures("migrated_url")

OPS = 10
WARM_UP = 6
MEASURED = range(WARM_UP, WARM_UP + OPS)
LAST = {i % 3: str(i) for i in MEASURED}  # the last value set on each of k0, k1, k2
TASK = TaskScope("dag", "run", "task")
ASSET = AssetScope(name="orders")
CONDITIONAL = {  # a compare-and-set with its receipt (metastore.receipts)
    "postgresql": {"task compare-and-set": (1.0, 1.0)},  # one statement writes both
    "mysql": {"task compare-and-set": (1.0, 4.0)},  # begin, receipt, write, commit
}


@dataclass
class Proxied:
    """A task token's backend, through an HTTP proxy to a server whose database is
    behind a database proxy."""

    http: TcpProxy
    database: TcpProxy
    server: ServerProcess
    backend: HttpStateBackend

    def per_op(self) -> tuple[float, float]:
        return self.http.requests / OPS, self.database.requests / OPS

    def reset(self) -> None:
        self.http.reset()
        self.database.reset()


@pytest.fixture
def proxied(migrated_url: URL, tmp_path: Path) -> Iterator[Proxied]:
    with TcpProxy(migrated_url.host or "127.0.0.1", migrated_url.port or 0) as database:
        url = migrated_url.set(host="127.0.0.1", port=database.port)
        server = start_server(url.render_as_string(hide_password=False), tmp_path)
        try:
            port = int(server.url.rsplit(":", 1)[1])
            with TcpProxy("127.0.0.1", port) as http:
                grant = Grant("task", task=TASK, write_assets=frozenset({"orders"}))
                backend = HttpStateBackend(
                    f"http://127.0.0.1:{http.port}", token=server.token(grant)
                )
                try:
                    yield Proxied(http, database, server, backend)
                finally:
                    backend.close()
        finally:
            server.stop()


def _sync_ops(backend: HttpStateBackend) -> dict[str, Callable[[int], object]]:
    versions = {"cas": 0}  # 0: create-only first, then each write's version

    def cas(i: int) -> None:  # a lost compare-and-set would raise VersionConflictError
        backend.set_item(TASK, "cas", str(i), if_version=versions["cas"])
        versions["cas"] += 1

    return {
        "task set": lambda i: backend.set(TASK, f"k{i % 3}", str(i)),
        "task get": lambda i: backend.get(TASK, f"k{i % 3}"),
        "task get_item": lambda i: backend.get_item(TASK, f"k{i % 3}"),
        "task get missing": lambda i: backend.get(TASK, f"missing{i}"),
        "task compare-and-set": cas,
        "task set_item with writer": lambda i: backend.set_item(TASK, "w", str(i), updated_by="x"),
        "task delete": lambda i: backend.delete(TASK, f"k{i % 3}"),
        "task clear": lambda i: backend.clear(TASK),
        "asset set": lambda i: backend.set(ASSET, f"k{i % 3}", str(i)),
        "asset get": lambda i: backend.get(ASSET, f"k{i % 3}"),
        "asset delete": lambda i: backend.delete(ASSET, f"k{i % 3}"),
    }


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
def test_sync_operations_cost_one_request_and_one_round_trip(
    proxied: Proxied, dialect: str
) -> None:
    measured, results = {}, {}
    for name, op in _sync_ops(proxied.backend).items():
        for i in range(WARM_UP):
            op(i)
        proxied.reset()
        results[name] = [op(i) for i in range(WARM_UP, WARM_UP + OPS)]
        measured[name] = proxied.per_op()
    assert measured == {**dict.fromkeys(measured, (1.0, 1.0)), **CONDITIONAL[dialect]}
    # and the operations were real: reads saw the last value written to each key
    assert results["task get"] == results["asset get"] == [LAST[i % 3] for i in MEASURED]
    assert results["task get missing"] == [None] * OPS


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
async def test_async_operations_cost_one_request_and_one_round_trip(
    proxied: Proxied, dialect: str
) -> None:
    backend = proxied.backend
    versions = {"cas": 0}

    async def cas(i: int) -> None:
        await backend.aset_item(TASK, "cas", str(i), if_version=versions["cas"])
        versions["cas"] += 1

    ops: dict[str, Callable[[int], Awaitable[object]]] = {
        "task set": lambda i: backend.aset(TASK, f"k{i % 3}", str(i)),
        "task get": lambda i: backend.aget(TASK, f"k{i % 3}"),
        "task compare-and-set": cas,
        "task delete": lambda i: backend.adelete(TASK, f"k{i % 3}"),
        "task clear": lambda i: backend.aclear(TASK),
        "asset set": lambda i: backend.aset(ASSET, f"k{i % 3}", str(i)),
        "asset get": lambda i: backend.aget(ASSET, f"k{i % 3}"),
    }
    try:
        measured, results = {}, {}
        for name, op in ops.items():
            for i in range(WARM_UP):
                await op(i)
            proxied.reset()
            results[name] = [await op(i) for i in MEASURED]
            measured[name] = proxied.per_op()
        assert measured == {**dict.fromkeys(measured, (1.0, 1.0)), **CONDITIONAL[dialect]}
        assert results["task get"] == results["asset get"] == [LAST[i % 3] for i in MEASURED]
    finally:
        await backend.aclose()
