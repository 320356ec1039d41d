"""``http_connections``: statestore's own HTTP/1.1 keep-alive transports, sync and async.

Against a scripted server on a loopback socket (a thread answering each request with
the next bytes of a script, and able to close a connection instead): the answers a
state server gives and the rest of HTTP/1.1 framing a proxy might use (a body by
length, chunked with trailers, until the server closes; no body for 204), kept
connections reused and dropped when the server closes them or they expire, and each
failure the httpx exception the backend's retry rules expect (``may_resend`` and
``never_sent``). Then TLS with a certificate made here: verified against it, refused
when unknown (not retried: a certificate problem), and accepted unverified when asked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from statestore.backends import http_messages
from statestore.backends.http_connections import AsyncKeepAliveTransport, KeepAliveTransport

CLOSE = b""
"""In a script: close the connection instead of answering."""
THEN_CLOSE = b"\x00then close\x00"
"""In a script, before an answer: send it, then close (as a server's keep-alive timeout)."""


class ScriptedServer:
    """Answers each request, in order, with the next script entry (bytes, or CLOSE)."""

    def __init__(self, script: list[bytes], tls: ssl.SSLContext | None = None) -> None:
        self.script = list(script)
        self.requests: list[bytes] = []
        self.connections = 0
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                answer = self.script.pop(0) if self.script else CLOSE
                if answer == CLOSE:
                    return
                conn.sendall(answer.removeprefix(THEN_CLOSE))
                if (
                    answer.startswith(THEN_CLOSE)
                    or b"connection: close" in answer.lower()
                    or (answer.startswith(b"HTTP/1.0"))
                ):
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._listener.close()


def _ok(body: bytes = b'{"a":1}', *extra: bytes) -> bytes:
    headers = [b"HTTP/1.1 200 OK", b"content-type: application/json",
               b"content-length: %d" % len(body), *extra]  # fmt: skip
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


CHUNKED = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
           b"4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\nx-trailer: t\r\n\r\n")  # fmt: skip
UNTIL_CLOSE = b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nx-a: b\r\n\r\n"


def _request(port: int, method: str = "GET", body: bytes = b"", *, scheme: str = "http",
             timeout: float = 5.0) -> httpx.Request:  # fmt: skip
    seconds = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    return httpx.Request(method, f"{scheme}://127.0.0.1:{port}/v1/k?a=%2F", content=body,
                         headers={"authorization": "Bearer t"},
                         extensions={"timeout": seconds})  # fmt: skip


Send = Callable[..., Any]
"""Sends a request and returns the response; ``idle=True``: only lets time pass (the
async transport's loop runs meanwhile, as a long-lived loop would)."""


@pytest.fixture(params=["sync", "async"])
def send_with(request: pytest.FixtureRequest) -> Iterator[Callable[..., Send]]:
    """A function making a transport (sync, or async run on one loop) and its sender."""
    made: list[Any] = []
    loop = asyncio.new_event_loop()

    def make(**kwargs: Any) -> Send:
        kwargs.setdefault("keepalive_expiry", 4.0)
        if request.param == "sync":
            transport = KeepAliveTransport(**kwargs)
            made.append(transport)
            return lambda one, idle=False: None if idle else transport.handle_request(one)
        async_transport = AsyncKeepAliveTransport(**kwargs)
        made.append(async_transport)

        def send(one: httpx.Request, idle: bool = False) -> Any:
            if idle:
                return loop.run_until_complete(asyncio.sleep(0.05))
            return loop.run_until_complete(async_transport.handle_async_request(one))

        return send

    yield make
    for transport in made:
        if isinstance(transport, KeepAliveTransport):
            transport.close()
        else:
            loop.run_until_complete(transport.aclose())
    loop.close()


@pytest.fixture
def server() -> Iterator[Callable[..., ScriptedServer]]:
    started: list[ScriptedServer] = []

    def start(script: list[bytes], tls: ssl.SSLContext | None = None) -> ScriptedServer:
        started.append(ScriptedServer(script, tls))
        return started[-1]

    yield start
    for one in started:
        one.close()


def test_answers_by_every_framing_and_a_kept_connection(
    send_with: Callable[..., Send], server: Callable[..., ScriptedServer]
) -> None:
    served = server([_ok(), CHUNKED, NO_CONTENT, _ok(b"x" * 200_000), UNTIL_CLOSE])
    send = send_with()
    first = send(_request(served.port, "PUT", b'{"value": 1}'))
    assert (first.status_code, first.json(), first.headers["content-type"]) == (
        200, {"a": 1}, "application/json")  # fmt: skip
    assert served.requests[0] == (
        b"PUT /v1/k?a=%%2F HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nauthorization: Bearer t\r\n"
        b'Content-Length: 12\r\n\r\n{"value": 1}' % served.port
    )
    chunked = send(_request(served.port))
    assert chunked.content == b"abcdefg"
    empty = send(_request(served.port, "DELETE"))
    assert (empty.status_code, empty.content, empty.headers["x-a"]) == (204, b"", "b")
    assert send(_request(served.port)).content == b"x" * 200_000
    assert send(_request(served.port)).content == b"all of it"  # HTTP/1.0, until closed
    assert served.connections == 1  # every answer on the one kept connection


def test_connection_close_and_an_idle_close_by_the_server_open_a_new_one(
    send_with: Callable[..., Send], server: Callable[..., ScriptedServer]
) -> None:
    served = server([_ok(b"1", b"connection: close"), THEN_CLOSE + _ok(b"2"), _ok(b"3")])
    send = send_with()
    assert send(_request(served.port)).content == b"1"  # the server then closes
    assert send(_request(served.port)).content == b"2"  # a new connection, kept...
    assert served.connections == 2
    time.sleep(0.2)  # ... which the server closes while it is idle
    send(_request(served.port, "OPTIONS"), idle=True)  # let a loop see its FIN arrive
    assert send(_request(served.port)).content == b"3"  # noticed: a new one, no error
    assert served.connections == 3


def test_an_expired_kept_connection_is_not_reused(
    send_with: Callable[..., Send], server: Callable[..., ScriptedServer]
) -> None:
    served = server([_ok(b"1"), _ok(b"2")])
    send = send_with(keepalive_expiry=0.0)
    assert send(_request(served.port)).content == b"1"
    assert send(_request(served.port)).content == b"2"
    assert served.connections == 2


def test_failures_are_the_exceptions_the_retry_rules_read(
    send_with: Callable[..., Send], server: Callable[..., ScriptedServer]
) -> None:
    send = send_with()
    unused = socket.create_server(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    with pytest.raises(httpx.ConnectError) as refused:  # nothing listens: never sent
        send(_request(port))
    assert http_messages.never_sent(refused.value)
    served = server([CLOSE, b"HTTP/2 200\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"])
    for _ in range(3):  # closed unanswered; not HTTP/1.x; a bad length
        with pytest.raises(httpx.RemoteProtocolError) as broke:
            send(_request(served.port, "PUT", b"1"))
        assert http_messages.may_resend(broke.value)
        assert not http_messages.never_sent(broke.value)  # it may have been applied
    silent = server([])  # answers nothing, closes nothing:
    hold = threading.Event()
    silent._answer = lambda conn: hold.wait(5) and None  # type: ignore[method-assign,assignment]
    with pytest.raises(httpx.ReadTimeout) as slow:
        send(_request(silent.port, timeout=0.3))
    assert http_messages.may_resend(slow.value) and not http_messages.never_sent(slow.value)  # noqa: PT018
    hold.set()


def _certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with ``cryptography``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "statestore test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


def test_tls_verified_refused_and_unverified(
    send_with: Callable[..., Send], server: Callable[..., ScriptedServer], tmp_path: Path
) -> None:
    cert_file, key_file = _certificate(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    served = server([_ok(b"1"), _ok(b"2"), _ok(b"3")], tls)
    trusting = ssl.create_default_context(cafile=str(cert_file))
    send = send_with(verify=trusting)
    assert send(_request(served.port, scheme="https")).content == b"1"
    assert send(_request(served.port, scheme="https")).content == b"2"  # kept, over TLS
    with pytest.raises(httpx.ConnectError) as unknown:  # the system's CAs do not know it
        send_with(verify=True)(_request(served.port, scheme="https"))
    assert not http_messages.may_resend(unknown.value)  # a certificate problem: final
    assert send_with(verify=False)(_request(served.port, scheme="https")).content == b"3"


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
    send_with: Callable[..., Send], server: Callable[..., ScriptedServer]
) -> None:
    served = server([_ok()])
    request = httpx.Request("GET", f"http://127.0.0.1:{served.port}/v1/k",
                            headers={"authorization": "Bearer a\r\nx-evil: 1"})  # fmt: skip
    with pytest.raises(httpx.LocalProtocolError):
        send_with()(request)
    assert served.requests == []


@pytest.mark.parametrize(
    "answer",
    [
        _ok(b"1") + _ok(b"STALE"),  # more than one answer: the extra one must not be kept
        _ok(b"1")[:-1] + b"1X",  # a body longer than its length
    ],
    ids=["two answers", "a longer body"],
)
def test_bytes_past_the_answer_never_answer_the_next_request(
    send_with: Callable[..., Send], server: Callable[..., ScriptedServer], answer: bytes
) -> None:
    served = server([answer, _ok(b"2")])
    send = send_with()
    assert send(_request(served.port)).content == b"1"
    time.sleep(0.1)  # the extra bytes have arrived
    send(_request(served.port, "OPTIONS"), idle=True)
    assert send(_request(served.port)).content == b"2"  # on a new connection
    assert served.connections == 2


def test_an_interim_answer_is_skipped(
    send_with: Callable[..., Send], server: Callable[..., ScriptedServer]
) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
    served = server([early + b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(b"1"), _ok(b"2")])
    send = send_with()
    assert send(_request(served.port, "PUT", b"x")).content == b"1"
    assert send(_request(served.port)).content == b"2"
    assert served.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n12",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"f" * 17 + b"\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"1" * 70_000,
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n",
        b"HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n",
    ],
    ids=[
        "two lengths",
        "gzip then chunked",
        "chunks and a length",
        "negative chunk",
        "0x chunk",
        "17 hex digits",
        "a huge length",
        "a chunk line past 64 KiB",
        "switching protocols",
        "a two-digit status",
    ],
)
def test_framing_that_could_be_misread_is_refused(
    send_with: Callable[..., Send], server: Callable[..., ScriptedServer], answer: bytes
) -> None:
    served = server([answer, _ok(b"2")])
    send = send_with()
    with pytest.raises(httpx.RemoteProtocolError) as refused:
        send(_request(served.port))
    assert http_messages.may_resend(refused.value)
    assert send(_request(served.port)).content == b"2"  # and the next is answered right
    assert served.connections == 2


def test_connection_close_among_other_tokens_is_honoured(
    send_with: Callable[..., Send], server: Callable[..., ScriptedServer]
) -> None:
    served = server([_ok(b"1", b"connection: Close, foo"), _ok(b"2")])
    send = send_with()
    assert send(_request(served.port)).content == b"1"
    assert send(_request(served.port)).content == b"2"
    assert served.connections == 2
