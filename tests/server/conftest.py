"""The state server under test: in-process (httpx.ASGITransport) and as a real
``statestore serve`` process on a free loopback port, one per dialect per session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL, make_url

from statestore import StateStore
from statestore.metastore import upgrade
from statestore.scopes import TaskScope
from statestore.server import Grant, create_app, generate_keypair, mint_token
from tests.integration import conftest as databases

TASK_A = TaskScope("dag", "run_1", "task_a")
TASK_B = TaskScope("dag", "run_1", "task_b")
Mint = Callable[..., str]


@dataclass(frozen=True)
class Keys:
    private_pem: bytes
    public_pem: bytes
    public_file: Path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    private_pem, public_pem = generate_keypair()
    public_file = tmp_path_factory.mktemp("keys") / "public.pem"
    public_file.write_bytes(public_pem)
    return Keys(private_pem, public_pem, public_file)


@pytest.fixture(scope="session")
def mint(keys: Keys) -> Mint:
    """``mint(grant, ttl=...)``: a token signed with the test key."""

    def make(grant: Grant, ttl: timedelta = timedelta(minutes=5), **kw: object) -> str:
        return mint_token(grant, keys.private_pem, ttl=ttl, **kw)  # type: ignore[arg-type]

    return make


def task_grant(scope: TaskScope = TASK_A, **kw: object) -> Grant:
    return Grant(f"task:{scope.task_id}", task=scope, **kw)  # type: ignore[arg-type]


ADMIN = Grant("admin:test", admin=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- in-process ---------------------------------------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    url = f"sqlite:///{tmp_path / 'server.db'}"
    upgrade(url)
    with StateStore(url) as store:
        yield store


@pytest.fixture
async def client(sqlite_store: StateStore, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    """The app over a migrated SQLite store, in this process."""
    app = create_app(sqlite_store, public_key=keys.public_pem, close_store=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://statestore") as c:
        yield c


# -- a real server process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    port: int
    db_url: str
    dialect: str


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"statestore serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"statestore serve not ready in 60 s: {log.read_text()[-2000:]}")


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("sqlite"),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def live_server(
    request: pytest.FixtureRequest, keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """``statestore --url ... serve`` on a migrated database of each dialect."""
    dialect = str(request.param)
    workdir = tmp_path_factory.mktemp(f"serve-{dialect}")
    server = None
    url: URL
    if dialect == "sqlite":
        url = make_url(f"sqlite:///{workdir / 'state.db'}")
    else:
        server = databases._server(dialect)
        url = server.create()
    upgrade(url)
    text_url = url.render_as_string(hide_password=False)
    port = free_port()
    log = workdir / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "statestore",
                "--url",
                text_url,
                "serve",
                "--port",
                str(port),
                "--public-key",
                str(keys.public_file),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, base, log)
        yield LiveServer(base, port, text_url, dialect)
    finally:
        proc.terminate()
        proc.wait(20)
        if server is not None:
            server.drop(url)
        if "Traceback" in log.read_text():
            raise AssertionError(f"the server logged a traceback: {log.read_text()[-3000:]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The integration conftest drops its throwaway databases only where it was loaded.
    while databases._servers:
        _, found = databases._servers.popitem()
        if isinstance(found, databases.ServerDatabases):
            found.close()
