"""The state server when things break: its database goes away, or it is killed mid-burst.

* The database goes away (a loopback TCP proxy in front of the real PostgreSQL or
  MariaDB cuts every connection and refuses new ones, or stops forwarding) and comes
  back: requests answer 503, the client raises ``BackendUnavailableError`` within its
  ``timeout_seconds``, naming the state server and never the database's password,
  address or name; ``/readyz`` turns not-ready; once the database is back the server
  recovers by itself (no restart) and ``/readyz`` is ready again.
* ``kill -9`` during a burst of writes, then a restart on the same port: every write
  the client saw acknowledged is there with its value, none is half-written, and the
  same client objects carry on by themselves.

Both run the real ``statestore serve`` command.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL, make_url

from statestore import BackendUnavailableError, StateStore, TaskScope
from statestore.backends.http import HttpStateBackend
from statestore.metastore import upgrade
from tests.integration.conftest import _server
from tests.integration.serve_command import Served, start_serve
from tests.integration.tcp_proxy import TcpProxy

pytest.importorskip("fastapi", reason="the server extra is not installed")

pytestmark = pytest.mark.slow

PASSWORD = "hunter2-not-for-workers"  # must never reach a client
SCOPE = TaskScope("etl", "run-1", "load")
CLIENT_TIMEOUT_S = 8.0
SERVER_DB_TIMEOUT_S = 2


@pytest.fixture
def keys(tmp_path: Path) -> tuple[bytes, Path]:
    from statestore.server import generate_keypair

    private_pem, public_pem = generate_keypair()
    public_file = tmp_path / "verify.pem"
    public_file.write_bytes(public_pem)
    return private_pem, public_file


def _admin(private_pem: bytes) -> str:
    from statestore.server import Grant, mint_token

    return mint_token(Grant("admin:tests", admin=True), private_pem)


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def database(request: pytest.FixtureRequest) -> Iterator[URL]:
    databases = _server(str(request.param))
    url = databases.create()
    upgrade(url)
    try:
        yield url
    finally:
        databases.drop(url)


def _through(url: URL, proxy: TcpProxy) -> str:
    """The database URL via the proxy; on PostgreSQL with a password (trust auth ignores
    it) that must never show in what a client sees (MariaDB's root has none: a wrong one
    would be refused)."""
    proxied = url.set(host="127.0.0.1", port=proxy.port)
    if url.get_backend_name() == "postgresql":
        proxied = proxied.set(password=PASSWORD)
    return proxied.render_as_string(hide_password=False)


def _assert_names_only_the_server(message: str, served: Served, proxy: TcpProxy, url: URL) -> None:
    assert served.url in message, message
    for secret in (PASSWORD, f":{proxy.port}", str(url.database)):
        assert secret not in message, (secret, message)


def _client(url: str, token: str, timeout: float) -> StateStore:
    return StateStore(backend=HttpStateBackend(url, token=token, timeout=timeout))


def _ready(served: Served) -> int:
    return httpx.get(served.url + "/readyz", timeout=CLIENT_TIMEOUT_S).status_code


@pytest.mark.parametrize("how", ["refused", "stalled"])
def test_the_database_going_away_is_a_503_naming_the_server_then_recovery(
    database: URL, how: str, keys: tuple[bytes, Path], tmp_path: Path
) -> None:
    """``refused``: the proxy cuts every connection and refuses new ones (a stopped
    database); ``stalled``: it keeps connections open and forwards nothing (a database
    that stopped answering), so the server gives up after its ``timeout_seconds``."""
    env = {"STATESTORE__DATABASE__TIMEOUT_SECONDS": str(SERVER_DB_TIMEOUT_S)}
    with TcpProxy(database.host or "127.0.0.1", database.port or 5432) as proxy:
        served = start_serve(_through(database, proxy), tmp_path, keys[1], env=env,
                             probe="/readyz")  # fmt: skip
        try:
            token = _admin(keys[0])
            with _client(served.url, token, CLIENT_TIMEOUT_S) as store:
                state = store.task_state(SCOPE)
                state.set("cursor", 1)
                assert state.get("cursor") == 1

                if how == "refused":
                    proxy.refuse()
                    proxy.cut_all()  # the pooled connections die with it
                else:
                    proxy.stall()
                started = time.monotonic()
                with pytest.raises(BackendUnavailableError) as down:
                    state.get("cursor")
                elapsed = time.monotonic() - started
                assert elapsed < CLIENT_TIMEOUT_S, elapsed
                message = str(down.value)
                _assert_names_only_the_server(message, served, proxy, database)
                assert token not in message, message
                with pytest.raises(BackendUnavailableError):
                    state.set("cursor", 2)  # a write: the same, and nothing written
                answer = httpx.get(
                    f"{served.url}/api/v1/task-state/key",
                    params={"dag_id": "etl", "run_id": "run-1", "task_id": "load", "key": "c"},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=CLIENT_TIMEOUT_S,
                )
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"] == "application/problem+json"
                assert answer.json()["type"].endswith("BackendUnavailableError"), answer.text
                _assert_names_only_the_server(served.url + answer.text, served, proxy, database)
                assert _ready(served) == 503

                proxy.refuse(False)  # the database is back
                proxy.stall(False)
                deadline = time.monotonic() + 30
                while _ready(served) != 200:
                    assert time.monotonic() < deadline, "/readyz stayed not-ready"
                    time.sleep(0.2)
                assert state.get("cursor") == 1  # the failed write wrote nothing
                state.set("cursor", 3)
                assert state.get("cursor") == 3
                assert [state.get("cursor") for _ in range(20)] == [3] * 20
        finally:
            served.stop()
    log = served.log_text()
    assert PASSWORD not in log, log  # the server's own log masks it too
    assert "Traceback" not in log, log


BURST_THREADS = 4


def _write_burst(
    store: StateStore, name: str, acked: dict[str, int], count: list[int], stop: threading.Event
) -> None:
    """Write ``name-<i % 50>`` = a value naming ``i`` until stopped; record the last
    acknowledged ``i`` of each key, and count the acknowledged writes."""
    state = store.task_state(SCOPE)
    i = 0
    while not stop.is_set():
        key = f"{name}-{i % 50}"
        try:
            state.set(key, {"writer": name, "i": i, "pad": "x" * 2000})
        except BackendUnavailableError:
            continue  # not acknowledged (the server was down): nothing promised
        acked[key] = i  # the last acknowledged value of this key
        count[0] += 1
        i += 1


@pytest.mark.parametrize(
    "dialect",
    [
        pytest.param("sqlite"),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def test_kill_9_during_a_burst_of_writes(
    dialect: str, keys: tuple[bytes, Path], tmp_path: Path
) -> None:
    if dialect == "sqlite":
        url, drop = make_url(f"sqlite:///{tmp_path / 'state.db'}"), None
    else:
        drop = _server(dialect)
        url = drop.create()
    upgrade(url)
    text_url = url.render_as_string(hide_password=False)
    served = start_serve(text_url, tmp_path, keys[1], name="first")
    token = _admin(keys[0])
    stop = threading.Event()
    acked: list[dict[str, int]] = [{} for _ in range(BURST_THREADS)]
    counts = [[0] for _ in acked]
    stores = [_client(served.url, token, 30) for _ in acked]
    threads = [
        threading.Thread(
            target=_write_burst, args=(s, f"w{n}", acked[n], counts[n], stop), daemon=True
        )
        for n, s in enumerate(stores)
    ]
    restarted: Served | None = None
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)  # a burst in flight
        before_kill = sum(c[0] for c in counts)
        served.kill()
        time.sleep(1.0)  # the writers hit a dead port (refused: they retry)
        restarted = start_serve(text_url, tmp_path, keys[1], port=served.port, name="second")
        time.sleep(1.5)  # they carry on against the restarted server
        stop.set()
        for thread in threads:
            thread.join(40)
        assert not any(t.is_alive() for t in threads), "a writer hung"
        after = sum(c[0] for c in counts)
        assert before_kill > 0, "no write was acknowledged before the kill"
        assert after > before_kill, "the writers did not recover after the restart"
        with StateStore(text_url) as direct:
            state = direct.task_state(SCOPE)
            for n, written in enumerate(acked):
                for key, i in written.items():
                    value = state.get(key)
                    # A later write of this key may have been applied without its
                    # answer arriving (the kill); never an older one, never a torn one.
                    assert isinstance(value, dict), (key, value)
                    assert value["writer"] == f"w{n}", value
                    assert value["i"] >= i, (key, value, i)
                    assert value["i"] % 50 == int(key.rsplit("-", 1)[1]), value
                    assert value["pad"] == "x" * 2000
    finally:
        stop.set()
        for store in stores:
            store.close()
        served.stop()
        if restarted is not None:
            restarted.stop()
        if drop is not None:
            drop.drop(url)
    assert restarted is not None
    assert "Traceback" not in restarted.log_text(), restarted.log_text()
