"""A real ``statestore serve`` process for the benchmarks, and the HTTP target.

The server is the command a deployment runs (uvicorn with uvloop and httptools, one
worker), over the same migrated database as the direct targets, on a free loopback
port. The HTTP target is a ``StateStore`` with only a URL and a task token -- what a
worker holds -- granted its own task instance and one asset (read and write), so
every request pays token verification and the grant check as in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from statestore import StateStore, StateStoreConfig, TaskScope, wire

__all__ = ["HttpTarget", "Server", "serve"]


@dataclass
class Server:
    """A running ``statestore serve``: its URL, the key that mints its tokens, the process."""

    url: str
    private_pem: bytes
    process: subprocess.Popen[bytes]
    log: Path

    def token(self, grant: wire.Grant) -> str:
        from statestore.server import mint_token  # the server extra

        return mint_token(grant, self.private_pem)

    def task_token(self, scope: TaskScope, asset: str) -> str:
        grant = wire.Grant(f"bench:{scope.task_id}", task=scope, write_assets=frozenset({asset}))
        return self.token(grant)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:  # a small race with other processes; fine for a benchmark
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serve(database_url: str) -> Iterator[Server]:
    """``statestore serve`` over ``database_url`` (migrated), until the block ends."""
    from statestore.server import generate_keypair

    with tempfile.TemporaryDirectory(prefix="statestore-bench-serve-") as tmp:
        workdir = Path(tmp)
        private_pem, public_pem = generate_keypair()
        (workdir / "public.pem").write_bytes(public_pem)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STATESTORE_")}
        log = workdir / "server.log"
        command = [sys.executable, "-m", "statestore", "--url", database_url, "serve",
                   "--port", str(port), "--public-key", str(workdir / "public.pem")]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        server = Server(f"http://127.0.0.1:{port}", private_pem, process, log)
        try:
            _wait_ready(server)
            yield server
        finally:
            server.stop()


def _wait_ready(server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"statestore serve exited:\n{server.log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(server.url + wire.READYZ, timeout=1.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"statestore serve did not start:\n{server.log.read_text()}")
        time.sleep(0.1)


def client_config() -> StateStoreConfig:
    """The client's settings: no default retention, as the direct target has none."""
    return StateStoreConfig(state_store={"default_retention_days": 0})


class HttpTarget:
    """The library through the state server, as a worker with a URL and a token uses it."""

    def __init__(self, server: Server, name: str = "statestore_http") -> None:
        self.name = name
        scope = TaskScope(name, "run", "task")
        asset = f"{name}_asset"
        token = server.task_token(scope, asset)
        self.store = StateStore(server.url, token=token, config=client_config())
        self.task = self.store.task_state(scope)
        self.asset = self.store.asset_state(asset)

    def set(self, key: str, value: Any) -> None:
        self.task.set(key, value)

    def get(self, key: str) -> Any:
        return self.task.get(key)

    def delete(self, key: str) -> None:
        self.task.delete(key)

    def update(self, key: str) -> None:
        """``update(+1)``: a read, then a compare-and-set with its write id."""
        self.task.update(key, lambda n: n + 1, default=0)

    def asset_set(self, key: str, value: Any) -> None:
        self.asset.set(key, value)

    def asset_get(self, key: str) -> Any:
        return self.asset.get(key)

    def close(self) -> None:
        self.store.close()
