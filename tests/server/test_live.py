"""Against a real ``statestore serve`` process per dialect, over loopback."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from statestore import StateStore, wire
from statestore.exceptions import AccessDeniedError
from statestore.scopes import AssetScope, TaskScope
from tests.server.conftest import ADMIN, LiveServer, Mint, bearer, task_grant

LIMIT = 65535  # [state_store] max_value_bytes default: the server's body limit


@pytest.fixture
def direct(live_server: LiveServer) -> Iterator[StateStore]:
    """The server's database, opened directly: what was really written."""
    with StateStore(live_server.db_url) as store:
        yield store


def _scope(task: str = "t") -> TaskScope:
    return TaskScope(f"dag_{uuid.uuid4().hex[:8]}", "run", task)


def test_every_route_over_loopback(live_server: LiveServer, mint: Mint, direct: StateStore) -> None:
    scope = _scope()
    asset = AssetScope(name=f"asset_{uuid.uuid4().hex[:8]}")
    token = bearer(mint(task_grant(scope, write_assets=frozenset({asset.name or ""}))))
    with httpx.Client(base_url=live_server.base_url, headers=token) as http:
        put = http.put(wire.TASK_KEY, params=wire.key_params(scope, "a/b"), content=b'{"n": 1}')
        assert put.status_code == 204
        got = http.get(wire.TASK_KEY, params=wire.key_params(scope, "a/b"))
        assert (got.status_code, got.text) == (200, '{"n":1}')
        item = wire.item_from_headers(got.text, got.headers)
        assert (item.version, item.updated_by) == (1, f"task:{scope.task_id}")
        conflict = http.put(
            wire.TASK_KEY,
            params=wire.key_params(scope, "a/b"),
            content=b"2",
            headers=wire.if_version_headers(0),
        )
        assert (conflict.status_code, conflict.json()["current_version"]) == (412, 1)
        cas = http.put(
            wire.TASK_KEY,
            params=wire.key_params(scope, "a/b"),
            content=b"2",
            headers=wire.if_version_headers(1),
        )
        assert cas.status_code == 204
        assert (
            http.put(wire.TASK_KEY, params=wire.key_params(scope, "c"), content=b"3").status_code
            == 204
        )
        page = http.get(wire.TASK_STATE, params=wire.scope_params(scope))
        assert wire.list_page_from_json(page.content) == [("a/b", "2"), ("c", "3")]
        stored = direct.backend.get_item(scope, "a/b")
        assert stored is not None
        assert (stored.value, stored.version, stored.updated_by) == (
            "2",
            2,
            f"task:{scope.task_id}",
        )
        assert http.delete(wire.TASK_KEY, params=wire.key_params(scope, "c")).status_code == 204
        assert direct.backend.get(scope, "c") is None
        assert http.delete(wire.TASK_STATE, params=wire.scope_params(scope)).status_code == 204
        assert direct.backend.list_items(scope) == []
        absent = http.get(wire.TASK_KEY, params=wire.key_params(scope, "a/b"))
        assert wire.is_absent(absent.status_code, absent.json())
        aput = http.put(wire.ASSET_KEY, params=wire.key_params(asset, "wm"), content=b"10")
        assert aput.status_code == 204
        assert http.get(wire.ASSET_KEY, params=wire.key_params(asset, "wm")).text == "10"
        assert direct.backend.get(asset, "wm") == "10"
        nul = http.get(wire.TASK_KEY, params=wire.key_params(scope, "x\x00y"))
        assert (nul.status_code, nul.json()["type"]) == (
            422,
            wire.PROBLEM_PREFIX + "InvalidKeyError",
        )
    with httpx.Client(base_url=live_server.base_url, headers=bearer(mint(ADMIN))) as admin:
        names = [a["name"] for a in admin.get(wire.ASSETS).json()["assets"]]
        assert asset.name in names
        assert admin.get(wire.READYZ).json() == {"status": "ready"}


def test_another_task_is_forbidden_and_nothing_is_written(
    live_server: LiveServer, mint: Mint, direct: StateStore
) -> None:
    mine, theirs = _scope("a"), _scope("b")
    direct.backend.set_item(theirs, "k", '"secret-of-b"', updated_by="seed")
    with httpx.Client(
        base_url=live_server.base_url, headers=bearer(mint(task_grant(mine)))
    ) as http:
        for method, path, params, body in (
            ("GET", wire.TASK_KEY, wire.key_params(theirs, "k"), None),
            ("PUT", wire.TASK_KEY, wire.key_params(theirs, "k"), b'"overwritten"'),
            ("DELETE", wire.TASK_KEY, wire.key_params(theirs, "k"), None),
            ("GET", wire.TASK_STATE, wire.scope_params(theirs), None),
            ("DELETE", wire.TASK_STATE, wire.scope_params(theirs), None),
            ("POST", wire.CLEANUP, {}, None),
        ):
            response = http.request(method, path, params=params, content=body)
            assert response.status_code == 403, (method, path)
            assert "secret-of-b" not in response.text
        missing = httpx.get(live_server.base_url + wire.TASK_KEY, params=wire.key_params(mine, "k"))
        assert (missing.status_code, missing.json()["type"]) == (
            401,
            wire.PROBLEM_PREFIX + "AuthenticationError",
        )
    item = direct.backend.get_item(theirs, "k")
    assert item is not None
    assert (item.value, item.version) == ('"secret-of-b"', 1)


def _raw_request(port: int, head: str, first_body_part: bytes) -> bytes:
    """Send the head and the start of a body, then read the answer without sending more."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + first_body_part)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_oversized_bodies_are_refused_before_they_are_read(
    live_server: LiveServer, mint: Mint, direct: StateStore
) -> None:
    scope = _scope()
    token = mint(task_grant(scope))
    query = httpx.QueryParams(wire.key_params(scope, "big"))
    head = (
        f"PUT {wire.TASK_KEY}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    )
    # 100 MB declared, 10 bytes sent: only an answer given before reading can arrive.
    declared = _raw_request(
        live_server.port, head + "Content-Length: 100000000\r\n\r\n", b'"xxxxxxxx"'
    )
    assert declared.startswith(b"HTTP/1.1 413 "), declared[:200]
    # Chunked: one chunk over the limit, and the request never finished.
    chunk = b"1" * (LIMIT + 10)
    chunked = _raw_request(
        live_server.port,
        head + "Transfer-Encoding: chunked\r\n\r\n",
        f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 413 "), chunked[:200]
    assert direct.backend.get(scope, "big") is None


def test_http_state_backend_end_to_end(
    live_server: LiveServer, mint: Mint, direct: StateStore
) -> None:
    """The library's own client (HttpStateBackend) against the real server."""
    scope = _scope()
    asset = f"asset_{uuid.uuid4().hex[:8]}"
    token = mint(task_grant(scope, write_assets=frozenset({asset})))
    with StateStore(live_server.base_url, token=token) as remote:
        state = remote.task_state(scope)
        state.set("cursor", {"page": 3, "ids": [1, 2]})
        assert state.get("cursor") == {"page": 3, "ids": [1, 2]}
        assert state.update("n", lambda n: n + 1, default=0) == 1
        assert state.update("n", lambda n: n + 1, default=0) == 2
        item = state.get_item("n")
        assert item is not None
        assert (item.value, item.version, item.updated_by) == (2, 2, f"task:{scope.task_id}")
        assert list(state.keys()) == ["cursor", "n"]
        remote.asset_state(asset).set("wm", "2026-12-01")
        assert remote.asset_state(asset).get("wm") == "2026-12-01"
        with pytest.raises(AccessDeniedError):  # another task instance
            remote.task_state(_scope("other")).get("cursor")
        state.delete("cursor")
        assert state.get("cursor", "gone") == "gone"
    assert direct.backend.get(scope, "n") == "2"
    assert direct.backend.get(scope, "cursor") is None
    assert direct.backend.get(AssetScope(name=asset), "wm") == '"2026-12-01"'
