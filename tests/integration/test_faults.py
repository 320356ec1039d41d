"""Dropped connections: one transparent retry, typed errors, recovery without restart.

A loopback proxy sits between the store and the server and cuts every connection (as a
server restart does), refuses new ones (as a server that is down does), or stalls
them (as a stopped server or a black-holing firewall does).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from sqlalchemy.engine import URL

from statestore import BackendUnavailableError
from statestore.metastore import MetastoreStateBackend
from statestore.scopes import AssetScope, TaskScope
from tests.integration.conftest import SERVERS
from tests.integration.tcp_proxy import TcpProxy

TASK = TaskScope("dag", "run", "task")
ASSET = AssetScope(name="orders")


@pytest.fixture
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
def test_cut_connections_are_retried_once(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url)
    try:
        backend.set(TASK, "k", "1")
        backend.set(ASSET, "k", "1")
        operations: list[Callable[[], object]] = [
            lambda: backend.set(TASK, "k", "2"),
            lambda: backend.get(TASK, "k"),
            lambda: backend.delete(TASK, "gone"),
            lambda: backend.set(ASSET, "k", "2"),
            lambda: backend.clear(TaskScope("x", "y", "z")),
        ]
        for op in operations:
            proxy.cut_all()  # every pooled connection dies, as in a server restart
            op()  # ... and the operation still succeeds, on a new connection
        assert backend.get(TASK, "k") == "2"
        assert backend.get(ASSET, "k") == "2"
    finally:
        backend.close()


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
def test_server_down_is_typed_and_recovers(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url)
    try:
        backend.set(TASK, "k", "1")
        proxy.refuse()
        proxy.cut_all()
        with pytest.raises(BackendUnavailableError) as info:
            backend.get(TASK, "k")
        assert "127.0.0.1" in str(info.value)
        proxy.refuse(False)
        assert backend.get(TASK, "k") == "1"  # the same backend works again, no restart
    finally:
        backend.close()


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
async def test_async_cut_connections_are_retried_once(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url)
    try:
        await backend.aset(TASK, "k", "1")
        proxy.cut_all()
        await backend.aset(TASK, "k", "2")
        proxy.cut_all()
        assert await backend.aget(TASK, "k") == "2"
        proxy.refuse()
        proxy.cut_all()
        with pytest.raises(BackendUnavailableError):
            await backend.aget(TASK, "k")
        proxy.refuse(False)
        assert await backend.aget(TASK, "k") == "2"
    finally:
        await backend.aclose()


STALL_TIMEOUT = 1.0
# The watchdog's tick, libpq's 2-second floor on connect_timeout, and a slow machine.
STALL_BOUND = 5.0


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
def test_stalled_server_times_out_then_recovers(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url, timeout=STALL_TIMEOUT)
    try:
        backend.set(TASK, "k", "1")
        proxy.stall()  # a connection in use: the statement's deadline cuts it
        stalled: list[Callable[[], object]] = [
            lambda: backend.get(TASK, "k"),
            lambda: backend.set(TASK, "k", "x"),
        ]
        for op in stalled:
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError) as info:
                op()
            assert time.monotonic() - started < STALL_BOUND
            assert "127.0.0.1" in str(info.value)
            assert re.search(r"within 1 s|time ?out|timed out", str(info.value), re.IGNORECASE)
        proxy.stall(False)
        assert backend.get(TASK, "k") == "1"  # the stalled write never happened
        backend.set(TASK, "k", "2")
        assert backend.get(TASK, "k") == "2"
    finally:
        backend.close()


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
async def test_async_stalled_server_times_out_then_recovers(
    proxied: tuple[TcpProxy, URL],
) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url, timeout=STALL_TIMEOUT)
    try:
        await backend.aset(TASK, "k", "1")
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            await backend.aget(TASK, "k")
        assert time.monotonic() - started < STALL_BOUND
        assert "127.0.0.1" in str(info.value)
        proxy.stall(False)
        assert await backend.aget(TASK, "k") == "1"
    finally:
        await backend.aclose()


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
def test_stalled_connect_times_out(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    backend = MetastoreStateBackend(url, timeout=STALL_TIMEOUT)
    try:
        backend.set(TASK, "k", "1")
        proxy.cut_all()
        proxy.stall()  # the retry's new connection hangs in its handshake
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            backend.get(TASK, "k")
        assert time.monotonic() - started < 2 * STALL_BOUND
        proxy.stall(False)
        assert backend.get(TASK, "k") == "1"
    finally:
        backend.close()
