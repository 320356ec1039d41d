"""Real Prefect 3 flow runs with statestore.integrations.prefect, on SQLite and PostgreSQL.

Prefect runs against a throwaway API server (``prefect_test_harness``: a local
subprocess with its own SQLite database, no network), started once for the module
because it takes seconds. statestore's own database is the ``migrated_url`` fixture's,
installed as the default store the way a deployment would configure it.

The examples' flows (examples/orchestrator_prefect_export.py) run here too, loaded
from their file, so the how-to shows code that is tested.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy.engine import URL

from statestore import InvalidScopeError, StateStore, TaskScope, map_key_for, set_default_store
from tests.integration.orchestrators.conftest import require

prefect = require("prefect")

from prefect import flow, task  # noqa: E402 - only once Prefect is known to be installed
from prefect.assets import Asset  # noqa: E402
from prefect.runtime import flow_run, task_run  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from statestore.integrations import prefect as integration  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "orchestrator_prefect_export.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("orchestrator_prefect_export", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Prefect API for this module only: a fresh PREFECT_HOME and server database."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_LOGGING_TO_API_ENABLED,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_UI_ENABLED,
        temporary_settings,
    )

    home = tmp_path_factory.mktemp("prefect-home")
    updates: dict[Any, Any] = {
        PREFECT_HOME: str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
        PREFECT_SERVER_UI_ENABLED: False,
        PREFECT_LOGGING_TO_API_ENABLED: False,
    }
    with (
        temporary_settings(updates=updates, restore_defaults={PREFECT_API_URL}),
        prefect_test_harness(server_startup_timeout=180),
    ):
        yield


@pytest.fixture
def store(prefect_api: None, migrated_url: URL) -> Iterator[StateStore]:
    """statestore on this test's database, as the default store the helpers use."""
    with StateStore(migrated_url.render_as_string(hide_password=False)) as built:
        previous = set_default_store(built)
        try:
            yield built
        finally:
            set_default_store(previous)


def test_example_resumes_jobs_after_task_and_flow_retries(
    store: StateStore, tmp_path: Path
) -> None:
    example = _load_example()
    state = example.export(["eu", "us", "apac"], str(tmp_path), return_state=True)
    job_ids = state.result()
    jobs = example.FakeCluster(str(tmp_path)).jobs()
    # One job per partition, polled by task attempt 1 (failed), its retry, and the
    # flow retry's new task run: all three found the same job id.
    assert sorted(jobs) == job_ids
    assert len(jobs) == 3
    assert set(jobs.values()) == {3}
    run_id = str(state.state_details.flow_run_id)
    for partition in ("eu", "us", "apac"):
        scope = TaskScope("export", run_id, "run_job", map_key=map_key_for(partition))
        item = store.task_state(scope).get_item("job_id")
        assert item is not None
        assert item.value.startswith(f"job-{partition}-")
        assert item.updated_by is not None
        assert item.updated_by.startswith("prefect:export/")


def test_example_watermark_carries_over_between_flow_runs(
    store: StateStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _load_example()
    example.run_all(str(tmp_path))  # the export flow again, then load_orders twice
    out = capsys.readouterr().out
    assert "jobs submitted: 3, polls per job: [3]\n" in out
    assert "flow run 1 loaded ['order-1'], flow run 2 loaded ['order-2']\n" in out
    assert store.asset_state(example.ORDERS_ASSET).get("watermark") == "2026-11-21T08:15"


# What each attempt saw; module-level, since Prefect copies list parameters.
_SEEN: list[dict[str, Any]] = []


@task(name="record_ids", retries=1, retry_delay_seconds=0)
def _record_ids() -> None:
    _SEEN.append(
        {
            "flow_run": str(flow_run.id),
            "flow_attempt": flow_run.run_count,
            "task_run": str(task_run.id),
            "task_attempt": task_run.run_count,
            "scope": integration.task_scope(),
        }
    )
    if task_run.run_count == 1:
        raise RuntimeError("task attempt 1 fails")


@flow(name="retrying", retries=1, retry_delay_seconds=0)
def _retrying_flow() -> None:
    _record_ids()
    if flow_run.run_count == 1:
        raise RuntimeError("flow attempt 1 fails")


def test_which_ids_survive_task_and_flow_retries(prefect_api: None) -> None:
    """The observation the scope is built on (see docs/howto-prefect.md)."""
    _SEEN.clear()
    _retrying_flow()
    seen = list(_SEEN)
    assert [(s["flow_attempt"], s["task_attempt"]) for s in seen] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]
    assert len({s["flow_run"] for s in seen}) == 1  # a flow retry keeps the flow run id
    assert seen[0]["task_run"] == seen[1]["task_run"]  # a task retry keeps the task run id
    assert seen[2]["task_run"] == seen[3]["task_run"]
    assert seen[0]["task_run"] != seen[2]["task_run"]  # a flow retry makes new task runs
    scopes = {s["scope"] for s in seen}
    assert scopes == {TaskScope("retrying", seen[0]["flow_run"], "record_ids")}


@task(name="checkpoint", retries=1, retry_delay_seconds=0)
async def _async_checkpoint(pages: int) -> list[int]:
    state = integration.task_state()
    done: int = await state.aget("pages_done", 0)
    fetched = []
    for page in range(done + 1, pages + 1):
        fetched.append(page)
        await state.aset("pages_done", page)
        if page == 2 and task_run.run_count == 1:
            raise ConnectionError("attempt 1 dies after page 2")
    return fetched


@flow(name="async-pages")
async def _async_flow(pages: int) -> list[int]:
    fetched: list[int] = await _async_checkpoint(pages)
    return fetched


# Prefect's engine leaves an HTTP connection to its API server open when an async flow's
# event loop ends (statestore's own connections are closed in the loop, below).
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
def test_async_task_resumes_from_its_checkpoint(prefect_api: None, migrated_url: URL) -> None:
    """An async task awaits aget/aset; the store lives and is closed in the flow's loop."""

    async def run() -> tuple[list[int], int]:
        url = migrated_url.render_as_string(hide_password=False)
        async with StateStore(url) as store:
            previous = set_default_store(store)
            try:
                state = await _async_flow(4, return_state=True)
                run_id = str(state.state_details.flow_run_id)
                fetched: list[int] = await state.aresult()
                scope = TaskScope("async-pages", run_id, "checkpoint")
                return fetched, await store.task_state(scope).aget("pages_done")
            finally:
                set_default_store(previous)

    fetched, done = asyncio.run(run())
    gc.collect()  # report Prefect's unclosed socket here, where it is filtered
    assert fetched == [3, 4]  # the retry started after page 2, the last checkpoint
    assert done == 4


@task
def _wrong_parameter(partition: str) -> None:
    integration.task_state(map_over="region")


@flow
def _misuse() -> None:
    _wrong_parameter("eu")


def test_misuse_is_explained(store: StateStore) -> None:
    with pytest.raises(InvalidScopeError, match="inside a Prefect task run"):
        integration.task_state()
    with pytest.raises(InvalidScopeError, match=r"not parameters of this task run.*'partition'"):
        _misuse()


def test_prefect_asset_is_named_by_its_key() -> None:
    assert integration.asset_scope(Asset(key="s3://bucket/orders")).name == "s3://bucket/orders"
    assert integration.asset_scope("orders").name == "orders"


# -- a task run's store on a state server, with a token minted from its context ----------

RAW = Asset(key="s3://bucket/raw")
REPORT = Asset(key="s3://bucket/report")


@pytest.fixture(scope="module")
def state_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from statestore.metastore import upgrade
    from tests.integration.http_server import start_server

    workdir = tmp_path_factory.mktemp("prefect-server")
    url = f"sqlite:///{workdir / 'state.db'}"
    upgrade(url)
    server = start_server(url, workdir)
    try:
        yield server
    finally:
        server.stop()


def test_materializing_task_gets_a_store_limited_to_its_assets(
    prefect_api: None, state_server: Any
) -> None:
    from prefect.assets import materialize

    from statestore import AccessDeniedError

    with StateStore(state_server.url, token=state_server.admin_token()) as admin:
        admin.asset_state(RAW.key).set("cursor", 7)

    @materialize(REPORT, asset_deps=[RAW])
    def build_report() -> dict[str, Any]:
        with integration.server_store(
            url=state_server.url, private_key=state_server.private_key
        ) as store:
            state = integration.task_state(store=store)
            state.set("attempt", task_run.run_count)
            cursor = integration.asset_state(RAW, store=store).get("cursor")
            integration.asset_state(REPORT, store=store).set("rows", cursor * 2)
            refused = []
            for attempt in (
                lambda: integration.asset_state(RAW, store=store).set("cursor", 0),
                lambda: integration.asset_state("elsewhere", store=store).get("k"),
            ):
                try:
                    attempt()
                except AccessDeniedError:
                    refused.append(True)
            return {"scope": state.scope, "refused": refused}

    @flow(name="report")
    def report_flow() -> Any:
        return build_report()

    result = report_flow()
    assert result["refused"] == [True, True]
    assert result["scope"].dag_id == "report"
    assert result["scope"].task_id == "build_report"
    with StateStore(state_server.url, token=state_server.admin_token()) as admin:
        assert admin.asset_state(REPORT.key).get("rows") == 14
        assert admin.asset_state(RAW.key).get("cursor") == 7  # the refused write wrote nothing
        assert admin.task_state(result["scope"]).get("attempt") == 1


def test_server_example_runs_on_a_url_and_a_key(
    prefect_api: None, state_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/orchestrator_prefect_server.py, configured by the two variables only."""
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(state_server.private_key)
    monkeypatch.setenv("STATESTORE__CLIENT__URL", state_server.url)
    monkeypatch.setenv("STATESTORE_TOKEN_PRIVATE_KEY_FILE", str(key_file))
    spec = importlib.util.spec_from_file_location(
        "orchestrator_prefect_server", EXAMPLE.with_name("orchestrator_prefect_server.py")
    )
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.daily_report("2026-12-01") == len("2026-12-01")
    with StateStore(state_server.url, token=state_server.admin_token()) as admin:
        assert admin.asset_state(example.ORDERS.key).get("until") == "2026-12-01"
        assert admin.asset_state(example.REPORT.key).get("built_from") == "2026-12-01"
