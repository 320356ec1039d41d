"""Two ``statestore serve`` replicas behind a real nginx, sharing one database.

16 clients (threads, each its own store and connections) call ``update(+1)`` on one
asset key through nginx, which spreads their requests over both replicas. The
compare-and-set is the database's, not a replica's, so however the requests are
spread the final count must equal the number of updates that reported success: none
lost, none applied twice. nginx's access log shows that both replicas served. Then one
replica is lost mid-burst after it applied what it had received: nginx passes those
requests on, and the write receipts keep every count exact.

nginx comes from the distribution (``.ci/run`` installs it); where it is missing the
test skips, except in CI (``CI=true``), where a missing nginx is a failure.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL, make_url

from statestore import StateStore, VersionConflictError
from statestore.metastore import upgrade
from tests.integration.conftest import _server
from tests.integration.nginx import PREFIX, Nginx, find_nginx
from tests.integration.serve_command import Served, start_serve
from tests.integration.tcp_proxy import TcpProxy

pytest.importorskip("fastapi", reason="the server extra is not installed")

pytestmark = pytest.mark.slow

CLIENTS = 16
UPDATES_PER_CLIENT = 6
DEADLINE_S = 90.0  # the whole burst; a client stops where it is when it passes


def _need_nginx() -> None:
    if find_nginx() is None:
        message = "nginx is not installed (apt-get install nginx)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def database(request: pytest.FixtureRequest) -> Iterator[URL]:
    """A fresh, migrated database of this dialect on the test server."""
    databases = _server(str(request.param))
    url = databases.create()
    upgrade(url)
    try:
        yield url
    finally:
        databases.drop(url)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    from statestore.server import generate_keypair

    private_pem, public_pem = generate_keypair()
    public_file = tmp_path_factory.mktemp("keys") / "verify.pem"
    public_file.write_bytes(public_pem)
    return private_pem, public_file


@pytest.fixture(scope="module")
def replicas(
    database: URL, keys: tuple[bytes, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Served]]:
    """Two replicas on the database, shared by this module's tests (each its own nginx)."""
    _need_nginx()
    tmp_path = tmp_path_factory.mktemp("replicas")
    text_url = database.render_as_string(hide_password=False)
    started: list[Served] = []
    try:
        for name in ("replica-a", "replica-b"):
            started.append(start_serve(text_url, tmp_path, keys[1], name=name,
                                       args=("--root-path", PREFIX)))  # fmt: skip
        yield started
    finally:
        for served in started:
            served.stop()
    for served in started:
        log = served.log_text()
        assert "Traceback" not in log, log
        assert "Warning" not in log, log  # e.g. a deprecation printed at start-up


def _count_up(
    store: StateStore,
    results: dict[str, int],
    errors: list[BaseException],
    lock: threading.Lock,
    updates: int = UPDATES_PER_CLIENT,
    key: str = "n",
) -> None:
    counter = store.asset_state("counter")
    deadline = time.monotonic() + DEADLINE_S
    for _ in range(updates):
        if time.monotonic() > deadline:
            return
        try:
            counter.update(key, lambda n: n + 1, default=0, retries=200)
        except VersionConflictError:  # gave up: wrote nothing
            with lock:
                results["gave_up"] += 1
        except Exception as exc:  # noqa: BLE001 - any other failure (an unknown outcome) fails the test
            with lock:
                errors.append(exc)
            return
        else:
            with lock:
                results["succeeded"] += 1


@contextlib.contextmanager
def _counting(url: str, token: str, jobs: list[tuple[Any, ...]]) -> Iterator[None]:
    """One store and thread per job, each running ``_count_up(store, *job)``, started
    before the block; after it, every thread is joined (none may hang) and every store
    closed. A fault the test injects goes in the block."""
    stores = [StateStore(url, token=token) for _ in jobs]
    threads = [
        threading.Thread(target=_count_up, args=(store, *job), daemon=True)
        for store, job in zip(stores, jobs, strict=True)
    ]
    try:
        for thread in threads:
            thread.start()
        yield
        for thread in threads:
            thread.join(DEADLINE_S + 30)
        assert not any(thread.is_alive() for thread in threads), "a client hung"
    finally:
        for store in stores:
            store.close()


def test_replicas_behind_nginx_lose_no_update(
    replicas: list[Served], database: URL, keys: tuple[bytes, Path], tmp_path: Path
) -> None:
    from statestore.server import Grant, mint_token

    grant = Grant("task:counting", write_assets=frozenset({"counter"}))
    token = mint_token(grant, keys[0])
    results = {"succeeded": 0, "gave_up": 0}
    errors: list[BaseException] = []
    lock = threading.Lock()
    with Nginx([r.port for r in replicas], tmp_path) as nginx:
        with _counting(nginx.url, token, [(results, errors, lock)] * CLIENTS):
            pass
        served_by = nginx.served_by()
    assert errors == [], errors
    assert results["succeeded"] > 0
    assert results["succeeded"] + results["gave_up"] == CLIENTS * UPDATES_PER_CLIENT
    with StateStore(make_url(database).render_as_string(hide_password=False)) as direct:
        item = direct.asset_state("counter").get_item("n")
    assert item is not None
    assert item.value == results["succeeded"]  # none lost, none applied twice
    assert item.updated_by == "task:counting"
    # Both replicas answered a share of the requests (round robin: about half each).
    replica_addresses = {f"127.0.0.1:{r.port}" for r in replicas}
    assert set(served_by) == replica_addresses, served_by
    assert min(served_by.values()) >= CLIENTS * UPDATES_PER_CLIENT // 4, served_by


def test_the_root_path_behind_nginx(replicas: list[Served], tmp_path: Path) -> None:
    """nginx strips ``/state``; the replicas run with ``--root-path /state``: routes match,
    the OpenAPI document names the prefix as its server, a 405 lists the path's methods."""
    import httpx

    with Nginx([r.port for r in replicas], tmp_path) as nginx:
        assert httpx.get(f"{nginx.url}/readyz", timeout=5).json() == {"status": "ready"}
        document = httpx.get(f"{nginx.url}/api/v1/openapi.json", timeout=5).json()
        assert document["servers"] == [{"url": PREFIX}]
        refused = httpx.put(f"{nginx.url}/api/v1/openapi.json", timeout=5)
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD"


def test_a_replica_lost_mid_burst_loses_and_doubles_no_update(
    database: URL, keys: tuple[bytes, Path], tmp_path: Path
) -> None:
    """One replica goes away in the middle of 16 clients counting through nginx, *after*
    it has applied the requests it received and before its answers arrive: a proxy
    between nginx and that replica holds its answers back for a moment, then cuts every
    connection and refuses new ones, and the replica is killed. nginx passes the
    unanswered requests to the other replica -- PUTs too, which it treats as idempotent.
    A compare-and-set the lost replica had applied is answered there from its receipt
    (204), not refused (412), which would make ``update()`` apply +1 a second time.

    Each client counts on a key of its own, so that every compare-and-set in flight on
    the lost replica was applied there (on one shared key most of them lose their race,
    and a lost one's copy proves nothing). Every client goes on by itself, and each
    count equals that client's successful updates."""
    from statestore.server import Grant, mint_token

    _need_nginx()
    updates = 25
    text_url = database.render_as_string(hide_password=False)
    names = [f"c{i}" for i in range(CLIENTS)]
    lost, kept = (start_serve(text_url, tmp_path, keys[1], name=name, args=("--root-path", PREFIX))
                  for name in ("replica-lost", "replica-kept"))  # fmt: skip
    token = mint_token(Grant("task:counting", write_assets=frozenset({"counter"})), keys[0])
    results = {name: {"succeeded": 0, "gave_up": 0} for name in names}
    errors: list[BaseException] = []
    lock = threading.Lock()
    try:
        with (
            TcpProxy("127.0.0.1", lost.port) as link,
            Nginx([link.port, kept.port], tmp_path) as nginx,
        ):
            jobs = [(results[name], errors, lock, updates, name) for name in names]
            with _counting(nginx.url, token, jobs):
                deadline = time.monotonic() + DEADLINE_S
                while (
                    sum(r["succeeded"] for r in results.values()) < CLIENTS * 3
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.005)
                link.stall()  # what the replica received it applies; its answers wait
                time.sleep(0.3)
                link.refuse()
                link.cut_all()  # nginx: the upstream failed before answering
                lost.kill()
            passed_on = nginx.passed_on()
    finally:
        lost.stop()
        kept.stop()
    assert errors == [], errors  # every client recovered by itself
    with StateStore(text_url) as direct:
        counter = direct.asset_state("counter")
        counts = {name: counter.get(name) for name in names}
        for name in names:
            counter.delete(name)
    assert all(r["succeeded"] + r["gave_up"] == updates for r in results.values()), results
    assert counts == {name: results[name]["succeeded"] for name in names}  # none doubled
    # The fault was real: nginx passed on writes the lost replica had applied.
    assert ("PUT", "204") in passed_on, passed_on
