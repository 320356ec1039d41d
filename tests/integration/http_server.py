"""A real state server process for tests: uvicorn serving ``create_app`` on loopback.

The listening socket is bound here (port 0: the kernel picks a free one) and handed to
the child by file descriptor, so there is no window in which another process could
take the port. The child verifies tokens with a fresh Ed25519 public key; the test
mints tokens with the matching private key.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from statestore import wire

__all__ = ["ServerProcess", "start_server"]

_CHILD = """
import sys
import uvicorn
from statestore import StateStore
from statestore.server import create_app

database_url, public_key, fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = create_app(StateStore(database_url), public_key=public_key)
uvicorn.run(app, fd=fd, log_level="warning", access_log=False)
"""


@dataclass
class ServerProcess:
    """A running server: its URL, the key that mints its tokens, the process."""

    url: str
    private_key: bytes
    process: subprocess.Popen[bytes]
    log: Path
    public_key: bytes = b""

    @property
    def keys(self) -> tuple[bytes, bytes]:
        """``(private PEM, public PEM)``, to start another server that takes its tokens."""
        return self.private_key, self.public_key

    def token(self, grant: wire.Grant) -> str:
        from statestore.server import mint_token

        return mint_token(grant, self.private_key)

    def admin_token(self) -> str:
        return self.token(wire.Grant("tests", admin=True))

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s) and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(
    database_url: str,
    workdir: Path,
    *,
    timeout: float = 30.0,
    port: int = 0,
    keys: tuple[bytes, bytes] | None = None,
) -> ServerProcess:
    """Start a server on ``database_url`` (migrated already) and wait until it is live.

    ``port``: 0 for any free one; ``keys``: ``(private PEM, public PEM)`` to reuse (a
    restarted server then accepts the tokens minted for the first one).
    """
    from statestore.server import generate_keypair

    private_pem, public_pem = keys or generate_keypair()
    public_key = workdir / "server-public.pem"
    public_key.write_bytes(public_pem)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted sockets on Linux. uvicorn cannot set it on a socket it gets
    # by descriptor (it takes it for AF_UNIX), and without it every answer written in
    # two parts waits out the client's delayed ACK (~40 ms).
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    port = listener.getsockname()[1]  # the one the kernel chose, for port=0
    log = workdir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STATESTORE__")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, database_url, str(public_key), str(listener.fileno())],
            pass_fds=(listener.fileno(),),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    listener.close()  # the child has its copy
    server = ServerProcess(f"http://127.0.0.1:{port}", private_pem, process, log, public_pem)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(server.url + wire.LIVEZ, timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the server did not come up in {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)
