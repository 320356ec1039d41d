"""The whole conformance suite through HttpStateBackend and a real server process.

One uvicorn process per dialect (SQLite, PostgreSQL, MariaDB) serves ``create_app``
over loopback; every test talks to it with an admin token, sync (``httpx.Client``) and
async (``httpx.AsyncClient``), optional capabilities included. Between tests the
state tables are emptied directly in the database, so each test starts empty.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from statestore.backends.http import HttpStateBackend
from statestore.metastore import upgrade
from statestore.testing import AsyncBackendConformance, BackendConformance
from tests.integration.conftest import _server
from tests.integration.http_server import ServerProcess, start_server

pytest.importorskip("fastapi", reason="the server extra is not installed")

TABLES = ("statestore_asset_state", "statestore_task_state")


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite"),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, URL]]:
    """A migrated database of this dialect and a server process over it."""
    workdir = tmp_path_factory.mktemp(f"http-{request.param}")
    if request.param == "sqlite":
        url, drop = make_url(f"sqlite:///{workdir / 'state.db'}"), None
    else:
        databases = _server(request.param)
        url, drop = databases.create(), databases
    upgrade(url)
    server = start_server(url.render_as_string(hide_password=False), workdir)
    try:
        yield server, url
    finally:
        server.stop()
        # uvicorn re-raises the SIGTERM it shut down on: -15 is a clean stop too.
        assert server.process.returncode in (0, -signal.SIGTERM), server.log.read_text()
        assert "Traceback" not in server.log.read_text(), server.log.read_text()
        if drop is not None:
            drop.drop(url)


@pytest.fixture
def emptied(served: tuple[ServerProcess, URL]) -> Iterator[ServerProcess]:
    """The server, with the state tables emptied after the test.

    The asset registry is kept, its assets active again: the product never deletes a
    registry row, so the server remembers asset ids (``metastore.asset_ids``), and a
    row deleted under it would leave it an id that no longer exists."""
    server, url = served
    yield server
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for table in TABLES:
                conn.execute(text(f"DELETE FROM {table}"))
            conn.execute(text("UPDATE statestore_asset SET active = :yes"), {"yes": True})
    finally:
        engine.dispose()


class TestHttpConformance(BackendConformance):
    @pytest.fixture
    def backend(self, emptied: ServerProcess) -> Iterator[HttpStateBackend]:
        backend = HttpStateBackend(emptied.url, token=emptied.admin_token())
        yield backend
        backend.close()


class TestHttpConformanceAsync(AsyncBackendConformance):
    @pytest.fixture
    async def backend(self, emptied: ServerProcess) -> AsyncIterator[HttpStateBackend]:
        backend = HttpStateBackend(emptied.url, token=emptied.admin_token())
        yield backend
        await backend.aclose()


def test_a_task_token_reaches_only_its_own_task(emptied: ServerProcess, tmp_path: Path) -> None:
    """Through the store a worker builds: URL + token file; another task's state is 403."""
    from statestore import AccessDeniedError, StateStore, TaskScope
    from statestore.wire import Grant

    mine, theirs = TaskScope("etl", "run-1", "load"), TaskScope("etl", "run-1", "other")
    token_file = tmp_path / "token"
    token_file.write_text(emptied.token(Grant("etl.load", task=mine)))
    with StateStore(emptied.url, token_file=str(token_file)) as store:
        state = store.task_state(mine)
        state.set("cursor", {"page": 3})
        assert state.get("cursor") == {"page": 3}
        with pytest.raises(AccessDeniedError):
            store.task_state(theirs).set("cursor", 1)
    with StateStore(emptied.url, token=emptied.admin_token()) as admin:
        assert admin.task_state(theirs).get("cursor") is None
        assert admin.task_state(mine).get("cursor") == {"page": 3}


def test_the_cli_against_a_server(
    emptied: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`statestore --url http://... --token-file F task-state ...`: the CLI's store is
    the HTTP backend, with the token read from the file."""
    from statestore import StateStore, TaskScope
    from statestore.cli import main

    token_file = tmp_path / "token"
    token_file.write_text(emptied.admin_token() + "\n")
    base = ["--url", emptied.url, "--token-file", str(token_file)]
    task = ["--dag", "etl", "--run", "r1", "--task", "load"]
    assert main([*base, "task-state", "set", *task, "cursor", '{"page": 7}']) == 0
    capsys.readouterr()
    assert main([*base, "--json", "task-state", "get", *task, "cursor"]) == 0
    assert '"page": 7' in capsys.readouterr().out
    with StateStore(emptied.url, token=emptied.admin_token()) as store:
        assert store.task_state(TaskScope("etl", "r1", "load")).get("cursor") == {"page": 7}
    token_file.write_text("not-a-valid-token\n")
    assert main([*base, "task-state", "get", *task, "cursor"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("statestore: error: ")
    assert "not-a-valid-token" not in error


async def test_the_asset_registry_through_a_server(emptied: ServerProcess) -> None:
    """list/deactivate/activate assets with an admin token, sync and async; a task token
    is refused."""
    from statestore import AccessDeniedError, InactiveAssetError, StateStore, TaskScope
    from statestore.wire import Grant

    with StateStore(emptied.url, token=emptied.admin_token()) as store:
        store.asset_state("orders").set("watermark", "2026-01-01")
        # Earlier tests' assets stay registered (see emptied), all of them active.
        listed = [a for a in store.list_assets() if a.name == "orders"]
        assert [(a.name, a.active, a.keys) for a in listed] == [("orders", True, 1)]
        assert store.deactivate_assets("orders") == 1
        assert [a.name for a in await store.alist_assets(active=False)] == ["orders"]
        with pytest.raises(InactiveAssetError):
            store.asset_state("orders").set("watermark", "2026-01-02")
        assert await store.aactivate_assets("orders") == 1
        assert store.list_assets(active=False) == []
        await store.aclose()
    task = emptied.token(Grant("etl.load", task=TaskScope("etl", "r", "load")))
    with StateStore(emptied.url, token=task) as worker, pytest.raises(AccessDeniedError):
        worker.list_assets()


@pytest.mark.slow
def test_the_client_rides_out_a_server_restart(tmp_path: Path) -> None:
    """kill -9 the server: a short timeout ends in BackendUnavailableError naming the
    server; with a longer one the same calls wait for the restarted server (retries on
    refused connections), and the broken keep-alive connection is replaced."""
    from statestore import BackendUnavailableError, TaskScope

    url = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(url)
    first = start_server(url, tmp_path)
    scope = TaskScope("etl", "r1", "load")
    token = first.admin_token()
    patient = HttpStateBackend(first.url, token=token, timeout=20)
    impatient = HttpStateBackend(first.url, token=token, timeout=0.5)
    patient.set(scope, "n", "1")
    assert impatient.get(scope, "n") == "1"  # both hold a kept-alive connection now
    first.process.kill()
    first.process.wait(timeout=10)
    with pytest.raises(BackendUnavailableError) as down:
        impatient.get(scope, "n")
    assert first.url in str(down.value)
    assert token not in str(down.value)
    port = int(first.url.rsplit(":", 1)[1])
    restarted: list[ServerProcess] = []
    restarter = threading.Timer(
        1.0, lambda: restarted.append(start_server(url, tmp_path, port=port, keys=first.keys))
    )
    restarter.start()
    try:
        started = time.monotonic()
        assert patient.get(scope, "n") == "1"  # waited for the restart
        assert time.monotonic() - started >= 0.9
        patient.set_item(scope, "n", "2", if_version=1)  # a conditional write works again
        assert impatient.get(scope, "n") == "2"
    finally:
        restarter.join()
        patient.close()
        impatient.close()
        for server in restarted:
            server.stop()
