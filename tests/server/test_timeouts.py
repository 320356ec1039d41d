"""Slow clients: ``statestore serve --request-timeout`` cuts off slowloris connections.

A raw socket client against the real command (SQLite): a connection that sends nothing,
one that trickles its headers, one that trickles its body -- each gets a 408 and a
closed connection shortly after the deadline, and the trickled write writes nothing.
Requests that arrive in time, and kept-alive connections idle between requests (up to
the keep-alive timeout), are not affected; the server stays healthy. Every socket has a
timeout: nothing here can hang.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from statestore import StateStore
from statestore.metastore import upgrade
from tests.integration.serve_command import Served, start_serve
from tests.server.conftest import TASK_A, Keys, Mint, task_grant

pytest.importorskip("uvicorn", reason="the server extra is not installed")

DEADLINE_S = 1.0
SOCKET_TIMEOUT_S = 10.0  # far past the deadline: a recv that waits this long fails


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[tuple[Served, str]]:
    tmp_path = tmp_path_factory.mktemp("timeouts")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(url)
    args = ("--request-timeout", str(DEADLINE_S), "--keep-alive-timeout", "3")
    server = start_serve(url, tmp_path, keys.public_file, args=args)
    try:
        yield server, url
    finally:
        server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()


def _connect(server: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT_S)
    sock.settimeout(SOCKET_TIMEOUT_S)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a timeout here fails the test)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _read_response(sock: socket.socket) -> bytes:
    """One whole response, head and Content-Length body: under load the body may come
    in a later segment than the head, so one recv() is not enough."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-response: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-body: {received!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def _trickle(sock: socket.socket, data: bytes, pause: float = 0.2) -> bool:
    """Send ``data`` a byte per ``pause``; False once the server has closed."""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return False
        time.sleep(pause)
    return True


def _cut_off_after(started: float) -> float:
    elapsed = time.monotonic() - started
    assert DEADLINE_S * 0.9 <= elapsed < DEADLINE_S + 3, elapsed
    return elapsed


def test_a_silent_connection_is_closed_with_a_408(served: tuple[Served, str]) -> None:
    server, _ = served
    with _connect(server) as sock:
        started = time.monotonic()
        answer = _read_until_closed(sock)
        _cut_off_after(started)
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_trickled_headers_are_cut_off(served: tuple[Served, str]) -> None:
    server, _ = served
    with _connect(server) as sock:
        started = time.monotonic()
        request = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"
        finished = _trickle(sock, request)
        answer = _read_until_closed(sock)
        _cut_off_after(started)
    assert not finished, "the whole trickled request was accepted"
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_a_trickled_body_is_cut_off_and_writes_nothing(
    served: tuple[Served, str], mint: Mint
) -> None:
    server, url = served
    token = mint(task_grant())
    body = b'{"slow": "' + b"x" * 30 + b'"}'
    head = (
        "PUT /api/v1/task-state/key?dag_id=dag&run_id=run_1&task_id=task_a&key=slow "
        f"HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(head + body[:3])
        finished = _trickle(sock, body[3:])
        answer = _read_until_closed(sock)
        _cut_off_after(started)
    assert not finished
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    with StateStore(url) as direct:
        assert direct.task_state(TASK_A).get("slow") is None


def test_requests_in_time_and_idle_keep_alive_are_served(
    served: tuple[Served, str], mint: Mint
) -> None:
    """Headers over half the deadline, then 2 s idle (past the deadline, within the
    keep-alive timeout), then another request on the same connection: both answered."""
    server, _ = served
    with _connect(server) as sock:
        assert _trickle(sock, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n", pause=0.5 / 33)
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 200 "), first
        time.sleep(2.0)
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        second = _read_response(sock)
        assert second.startswith(b"HTTP/1.1 200 "), second
        # Idle past the keep-alive timeout: closed quietly (no 408: no request began).
        started = time.monotonic()
        assert _read_until_closed(sock) == b""
        assert 2.5 <= time.monotonic() - started < 6
    token = mint(task_grant())
    with StateStore(server.url, token=token) as store:  # the server is healthy
        store.task_state(TASK_A).set("after", 1)
        assert store.task_state(TASK_A).get("after") == 1
