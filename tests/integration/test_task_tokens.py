"""A task's store from its grant, against a real state server (issue 17 point 4).

What the adapters hand a task -- ``server_store(grant)`` -- reaches its own task state,
reads its inlets, writes its outlets, and is refused everything else, by the server.
SQLite only: the grant is checked by the server before any database is touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from statestore import AccessDeniedError, StateStore, TaskScope
from statestore.integrations import _server_tokens as core
from tests.integration.http_server import ServerProcess, start_server

SCOPE = TaskScope("etl", "r1", "load", 2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from statestore.metastore import upgrade

    workdir = tmp_path_factory.mktemp("task-tokens")
    url = f"sqlite:///{workdir / 'state.db'}"
    upgrade(url)
    started = start_server(url, workdir)
    try:
        yield started
    finally:
        started.stop()


def test_the_task_store_reaches_only_what_the_grant_names(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StateStore(server.url, token=server.admin_token()) as admin:
        admin.asset_state("raw").set("cursor", 41)
        admin.task_state(TaskScope("etl", "r1", "other")).set("k", "theirs")
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(server.private_key)
    monkeypatch.setenv(core.PRIVATE_KEY_FILE_ENV, str(key_file))  # as a deployment would
    monkeypatch.setenv("STATESTORE__CLIENT__URL", server.url)
    grant = core.task_grant(SCOPE, inlets=["raw"], outlets=["orders"])
    with core.server_store(grant) as store:
        mine = store.task_state(SCOPE)
        mine.set("job_id", "spark-1")
        assert mine.get("job_id") == "spark-1"
        assert store.asset_state("raw").get("cursor") == 41  # an inlet: readable
        store.asset_state("orders").set("watermark", "2026-12-01")  # an outlet: writable
        assert store.asset_state("orders").get("watermark") == "2026-12-01"
        with pytest.raises(AccessDeniedError):
            store.asset_state("raw").set("cursor", 0)  # an inlet is read-only
        with pytest.raises(AccessDeniedError):
            store.asset_state("secrets").get("k")  # not declared at all
        with pytest.raises(AccessDeniedError):
            store.task_state(TaskScope("etl", "r1", "other")).get("k")  # another task
        with pytest.raises(AccessDeniedError):
            store.task_state(TaskScope("etl", "r1", "load", 3)).set("k", 1)  # another index
    with StateStore(server.url, token=server.admin_token()) as admin:
        assert admin.asset_state("raw").get("cursor") == 41  # nothing refused was written
        assert admin.task_state(TaskScope("etl", "r1", "load", 3)).get("k") is None
        assert admin.task_state(SCOPE).get("job_id") == "spark-1"
    assert server.private_key.decode().splitlines()[1] not in server.log.read_text()
