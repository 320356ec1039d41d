"""HttpStateBackend without a server process: the pure core, the token, the retries.

The backend talks to :class:`tests.unit.http_fake.FakeServer` through
``httpx.MockTransport`` (sync and async alike), which answers by the contract in
``statestore.wire`` on an in-memory backend; so the whole conformance suite runs here
in a second, and faults (a refused connection, a broken answer, a proxy's error page)
are injected per request.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from statestore import lifecycle, wire
from statestore.backends import http_messages as messages
from statestore.backends.http import HttpStateBackend
from statestore.exceptions import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigError,
    InactiveAssetError,
    StateStoreError,
    ValueTooLargeError,
    VersionConflictError,
)
from statestore.items import StoredItem
from statestore.scopes import AssetScope, TaskScope
from statestore.testing import AsyncBackendConformance, BackendConformance
from tests.unit.http_fake import FakeServer

URL = "http://state.test:8765/root"
TOKEN = "secret-token"
SCOPE = TaskScope("dag", "run", "task")
ASSET = AssetScope(name="orders")


def _backend(server: FakeServer, **options: object) -> HttpStateBackend:
    transport = httpx.MockTransport(server.handle)
    options.setdefault("token", TOKEN)
    return HttpStateBackend(
        URL,
        transport=transport,
        async_transport=transport,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def server() -> FakeServer:
    return FakeServer(tokens={TOKEN})


# -- the conformance suite over the wire contract -----------------------------------------


class TestHttpOverWireContract(BackendConformance):
    @pytest.fixture
    def backend(self) -> Iterator[HttpStateBackend]:
        backend = _backend(FakeServer(tokens={TOKEN}))
        yield backend
        backend.close()


class TestHttpOverWireContractAsync(AsyncBackendConformance):
    @pytest.fixture
    async def backend(self) -> HttpStateBackend:
        return _backend(FakeServer(tokens={TOKEN}))


# -- requests: one per operation, the contract's shape -------------------------------------


def test_every_operation_is_one_request_with_the_token(server: FakeServer) -> None:
    backend = _backend(server)
    backend.set(SCOPE, "k", '"v"')
    assert backend.get(SCOPE, "k") == '"v"'
    item = backend.get_item(SCOPE, "k")
    assert item is not None
    assert (item.value, item.version) == ('"v"', 1)
    backend.set_item(SCOPE, "k", '"w"', if_version=1, updated_by="me")
    assert backend.list_items(SCOPE) == [("k", '"w"')]
    backend.delete(SCOPE, "k")
    backend.clear(SCOPE, all_map_indices=True)
    methods = [(r.method, r.url.path) for r in server.requests]
    key, state = "/root" + wire.TASK_KEY, "/root" + wire.TASK_STATE
    assert methods == [("PUT", key), ("GET", key), ("GET", key), ("PUT", key), ("GET", state),
                       ("DELETE", key), ("DELETE", state)]  # fmt: skip
    assert {r.headers["Authorization"] for r in server.requests} == {f"Bearer {TOKEN}"}
    backend.close()


def test_calls_follow_the_wire_contract() -> None:
    expires = datetime(2026, 12, 31, tzinfo=timezone.utc)
    put = messages.set_call(SCOPE, "a/b", '{"x":1}', expires_at=expires, updated_by="w")
    assert (put.method, put.path, put.content) == ("PUT", wire.TASK_KEY, b'{"x":1}')
    assert put.params == {**wire.key_params(SCOPE, "a/b"), "expires_at": expires.isoformat(),
                          "updated_by": "w"}  # fmt: skip
    assert "If-Match" not in put.headers
    assert "Idempotency-Key" not in put.headers  # a plain write resent writes the same
    cas = messages.set_call(ASSET, "k", "1", expires_at=None, if_version=7)
    assert (cas.path, cas.headers["If-Match"]) == (wire.ASSET_KEY, '"7"')
    create = messages.set_call(ASSET, "k", "1", expires_at=None, if_version=0)
    assert create.headers["If-None-Match"] == "*"
    # Each conditional write is named by its own unguessable write id.
    write_ids = {cas.headers["Idempotency-Key"], create.headers["Idempotency-Key"]}
    assert len(write_ids) == 2
    assert all(len(write_id) >= 20 for write_id in write_ids)
    assert messages.clear_call(SCOPE, all_map_indices=True).params["all_map_indices"] == "true"
    assert "all_map_indices" not in messages.clear_call(ASSET, all_map_indices=True).params
    page = messages.list_call(ASSET, prefix="p", after="a", limit=5, values=False)
    assert (page.path, page.params) == (
        wire.ASSET_STATE, {"name": "orders", "prefix": "p", "after": "a", "limit": "5",
                           "values": "false"},
    )  # fmt: skip
    keyed = TaskScope("dag", "run", "task", map_key="region=eu")
    get = messages.get_call(keyed, "k")
    assert (get.method, get.path) == ("GET", wire.TASK_KEY)
    assert get.params == {"dag_id": "dag", "run_id": "run", "task_id": "task",
                          "map_key": "region=eu", "key": "k"}  # fmt: skip


# -- responses -----------------------------------------------------------------------------


def _problem(exc: StateStoreError) -> httpx.Response:
    status, body = wire.problem_for(exc)
    return httpx.Response(status, json=body)


def test_problems_become_the_same_typed_exception_with_the_same_message() -> None:
    for original in (
        VersionConflictError("k at version 3; expected 2", current_version=3),
        InactiveAssetError("asset 'orders' is inactive"),
        AuthenticationError("the token has expired"),
        ValueTooLargeError(70_000, 65_535),
    ):
        raised = messages.error_of(_problem(original), URL)
        assert type(raised) is type(original)
        assert str(raised) == str(original)
    conflict = messages.error_of(_problem(VersionConflictError("x", current_version=3)), URL)
    assert isinstance(conflict, VersionConflictError)
    assert conflict.current_version == 3


def test_only_the_absent_problem_reads_as_none() -> None:
    status, body = wire.absent_problem("k")
    assert messages.read_value(httpx.Response(status, json=body), URL) is None
    assert messages.read_item(httpx.Response(status, json=body), URL) is None
    # A 404 from a wrong root path or a proxy is an error, never a silent "absent".
    with pytest.raises(StateStoreError, match="404"):
        messages.read_value(httpx.Response(404, text="<h1>Not Found</h1>"), URL)


def test_a_proxy_error_page_names_the_server() -> None:
    with pytest.raises(BackendUnavailableError, match=r"state\.test:8765/root.*HTTP 502"):
        messages.read_done(httpx.Response(502, text="<html>Bad Gateway</html>"), URL)


def test_a_503_from_the_server_names_the_server() -> None:
    """The server's own 503 says only that its database is unavailable: the client adds
    which server said so."""
    unavailable = BackendUnavailableError("the state server's database is unavailable")
    status, body = wire.problem_for(unavailable)
    with pytest.raises(BackendUnavailableError) as raised:
        messages.read_value(httpx.Response(status, json=body), URL)
    assert str(raised.value) == f"the state server at {URL}: {unavailable}"


def test_item_metadata_comes_from_headers() -> None:
    updated = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    item = StoredItem(
        value="[1]", version=4, updated_at=updated, updated_by="wörker 1%", expires_at=None
    )
    response = httpx.Response(200, content=b"[1]", headers=wire.item_headers(item))
    assert messages.read_item(response, URL) == item


# -- the token -----------------------------------------------------------------------------


def test_token_file_is_reread_when_it_changes(tmp_path: Path, server: FakeServer) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    server.tokens = {"first-token"}
    backend = _backend(server, token=None, token_file=token_file)
    backend.set(SCOPE, "k", "1")
    token_file.write_text("second-token\n")
    os.utime(token_file, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a coarse clock
    server.tokens = {"second-token"}
    assert backend.get(SCOPE, "k") == "1"
    sent = [r.headers["Authorization"] for r in server.requests]
    assert sent == ["Bearer first-token", "Bearer second-token"]


def test_a_401_is_resent_once_when_the_file_was_renewed_meanwhile(
    tmp_path: Path, server: FakeServer
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old")
    server.tokens = {"new"}

    def renew_on_first(request: httpx.Request) -> httpx.Response | None:
        if len(server.requests) == 1:  # the renewer rewrites the file as the token expires
            token_file.write_text("new")
            os.utime(token_file, ns=(time.time_ns(), time.time_ns() + 1_000_000))
        return None

    server.fault = renew_on_first
    backend = _backend(server, token=None, token_file=token_file)
    backend.set(SCOPE, "k", "2")
    assert backend.get(SCOPE, "k") == "2"
    assert [r.headers["Authorization"] for r in server.requests] == [
        "Bearer old", "Bearer new", "Bearer new",
    ]  # fmt: skip


def test_a_rejected_token_is_an_authentication_error_without_the_token(
    server: FakeServer,
) -> None:
    backend = _backend(server, token="wrong-token-value")
    with pytest.raises(AuthenticationError) as raised:
        backend.get(SCOPE, "k")
    assert "wrong-token-value" not in str(raised.value)
    assert len(server.requests) == 1  # an inline token cannot have been renewed


def test_token_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        messages.TokenSource("t", tmp_path / "f")
    with pytest.raises(ConfigError, match="needs a token"):
        messages.TokenSource()
    with pytest.raises(ConfigError, match="cannot read the token file"):
        messages.TokenSource(token_file=tmp_path / "missing").current()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        messages.TokenSource(token_file=tmp_path / "empty").current()
    # a line break inside would end the Authorization header and start another
    with pytest.raises(ConfigError, match="line break") as inline:
        messages.TokenSource("eyJ.a\r\nx-evil: 1")
    assert "evil" not in str(inline.value)  # the token's text is never shown
    (tmp_path / "two").write_text("eyJ.first\neyJ.second\n")
    with pytest.raises(ConfigError, match="two lines") as in_file:
        messages.TokenSource(token_file=tmp_path / "two").current()
    assert "first" not in str(in_file.value)
    assert messages.TokenSource(" eyJ.abc-_.x \n").current() == "eyJ.abc-_.x"  # stripped
    with pytest.raises(ConfigError, match="http"):
        HttpStateBackend("ftp://state.test", token="t")


# -- retries -------------------------------------------------------------------------------


def _failing(server: FakeServer, exc: type[httpx.TransportError], times: int) -> None:
    def fail(request: httpx.Request) -> None:
        if len(server.requests) <= times:
            raise exc("simulated", request=request)

    server.fault = fail


def test_a_refused_connection_is_retried_even_for_a_conditional_write(server: FakeServer) -> None:
    _failing(server, httpx.ConnectError, times=2)
    backend = _backend(server)
    backend.set_item(SCOPE, "k", '"v"', if_version=0)
    assert backend.get(SCOPE, "k") == '"v"'
    assert len(server.requests) == 4  # two refused, the write, the read


@pytest.mark.parametrize("broken", [httpx.ReadError, httpx.RemoteProtocolError])
def test_an_ambiguous_failure_resends_reads_and_plain_writes(
    server: FakeServer, broken: type[httpx.TransportError]
) -> None:
    backend = _backend(server)
    _failing(server, broken, times=1)
    backend.set(SCOPE, "k", '"v"')
    server.requests.clear()
    _failing(server, broken, times=1)
    assert backend.get(SCOPE, "k") == '"v"'
    assert len(server.requests) == 2


def _answer_lost_once(server: FakeServer, method: str = "PUT") -> None:
    """The server acts on the next ``method`` request, then the connection breaks."""
    lost: list[httpx.Request] = []

    def lose(request: httpx.Request) -> None:
        if request.method == method and not lost:
            lost.append(request)
            raise httpx.ReadError("simulated: broke after the server answered", request=request)

    server.lost_answer = lose


@pytest.mark.parametrize("if_version", [0, 1])
def test_a_conditional_write_whose_answer_was_lost_is_resent_and_applied_once(
    server: FakeServer, if_version: int
) -> None:
    backend = _backend(server)
    backend.get(SCOPE, "k")  # any answer says whether the server keeps write receipts
    if if_version:
        backend.set(SCOPE, "k", '"old"')
    server.requests.clear()
    _answer_lost_once(server)
    backend.set_item(SCOPE, "k", '"new"', if_version=if_version)  # no conflict with itself
    item = backend.get_item(SCOPE, "k")
    assert item is not None
    assert (item.value, item.version) == ('"new"', if_version + 1)  # applied once
    puts = [r for r in server.requests if r.method == "PUT"]
    assert len(puts) == 2  # the write, and its copy after the broken connection
    assert len({r.headers["Idempotency-Key"] for r in puts}) == 1


def test_without_receipts_a_conditional_write_whose_answer_was_lost_is_not_resent(
    server: FakeServer,
) -> None:
    """A server that has not said it keeps write receipts (one over a custom backend)
    would answer a copy 412: the outcome is reported unknown instead, and nothing is
    sent twice. Once a server says it keeps them, the same failure is resent."""
    server.keeps_receipts = False
    backend = _backend(server)
    _answer_lost_once(server)
    with pytest.raises(BackendUnavailableError, match="whether the write was applied is unknown"):
        backend.set_item(SCOPE, "k", '"v"', if_version=0)
    assert [r.method for r in server.requests] == ["PUT"]
    item = backend.get_item(SCOPE, "k")  # applied once, and the client was told "unknown"
    assert item is not None
    assert item.version == 1
    server.keeps_receipts = True
    backend.get(SCOPE, "k")  # an answer that says it
    _answer_lost_once(server)
    backend.set_item(SCOPE, "k", '"w"', if_version=1)
    assert [r.method for r in server.requests][-2:] == ["PUT", "PUT"]
    item = backend.get_item(SCOPE, "k")
    assert item is not None
    assert (item.value, item.version) == ('"w"', 2)


async def test_async_update_whose_answer_was_lost_counts_once(server: FakeServer) -> None:
    from statestore import StateStore

    backend = _backend(server)
    store = StateStore(backend=backend)
    counter = store.asset_state("orders")
    await counter.aset("n", 1)
    _answer_lost_once(server)
    assert await counter.aupdate("n", lambda n: n + 1) == 2
    assert (await counter.aget_item("n")).value == 2  # type: ignore[union-attr]
    await backend.aclose()


def test_retries_stop_inside_the_timeout_naming_the_server_not_the_token(
    server: FakeServer,
) -> None:
    _failing(server, httpx.ConnectError, times=10_000)
    backend = _backend(server, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as raised:
        backend.get(SCOPE, "k")
    elapsed = time.monotonic() - started
    assert 0.2 < elapsed < 1.5, elapsed  # 0.5 s, with room for a loaded machine
    message = str(raised.value)
    assert "http://state.test:8765/root" in message
    assert "0.5 s" in message
    assert TOKEN not in message
    assert 3 <= len(server.requests) <= 12


async def test_async_retries_stop_inside_the_timeout(server: FakeServer) -> None:
    _failing(server, httpx.ConnectError, times=10_000)
    backend = _backend(server, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="did not answer"):
        await backend.aget(SCOPE, "k")
    assert time.monotonic() - started < 1.2  # 0.3 s, with room for a loaded machine
    await backend.aclose()


def test_a_refused_certificate_is_not_retried(server: FakeServer) -> None:
    def bad_certificate(request: httpx.Request) -> None:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("TLS", request=request) from exc

    server.fault = bad_certificate
    with pytest.raises(BackendUnavailableError, match="1 attempt within"):
        _backend(server).get(SCOPE, "k")
    assert len(server.requests) == 1


def test_pauses_grow_and_never_pass_the_deadline() -> None:
    policy = messages.RetryPolicy(timeout=10.0)
    pauses = [policy.pause(attempt, remaining=100.0) for attempt in range(8)]
    assert all(p is not None for p in pauses)
    assert 0.025 <= pauses[0] <= 0.05  # type: ignore[operator]
    assert all(0.5 <= p <= 1.0 for p in pauses[5:])  # type: ignore[operator]
    assert policy.pause(0, remaining=0.05) is None


# -- clients: per event loop, released with it, not shared with a forked child ------------


def test_each_event_loop_gets_its_own_pool_closed_as_the_loop_ends() -> None:
    backend = HttpStateBackend(URL, token=TOKEN)  # real pools, never connected here
    states = []

    async def use() -> None:
        pool = backend._async_transport()
        assert backend._async_transport() is pool  # one per loop, reused
        states.append(backend._loops[asyncio.get_running_loop()])

    kept = len(lifecycle._LEFT_BEHIND)
    for _ in range(3):
        asyncio.run(use())
    assert len({id(state.pool) for state in states}) == 3
    assert [(state.owned, state.released) for state in states] == [(True, True)] * 3
    assert len(backend._loops) == 1  # the ended loops' entries are dropped, not kept
    assert len(lifecycle._LEFT_BEHIND) == kept


def test_a_forked_child_builds_its_own_client(server: FakeServer) -> None:
    backend = _backend(server)
    backend.set(SCOPE, "k", "1")
    parent_pool = backend._pool
    assert parent_pool is not None
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        ok = backend._pool is None and backend.get(SCOPE, "k") == "1"
        ok = ok and backend._pool is parent_pool  # a given transport is reused as given
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert backend._pool is parent_pool
    assert backend.get(SCOPE, "k") == "1"
    backend.close()
    assert backend._pool is None


def test_repr_and_url_never_show_credentials() -> None:
    backend = HttpStateBackend("https://user:pw@state.test/x/?q=1", token=TOKEN)
    assert backend.url == "https://state.test/x"
    assert "pw" not in repr(backend)
    assert TOKEN not in repr(backend)
