"""Real Dagster runs with statestore: a crash and a re-execution, retries, mapping, assets.

The pipelines are the ones the docs show (``examples/orchestrator_dagster_resume.py``
and ``examples/orchestrator_dagster_watermark.py``), run by Dagster itself on a
temporary Dagster instance; the state database is the test's own (SQLite, PostgreSQL),
given to the resource as its ``url``. Nothing of Dagster or the database is mocked.
"""

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy.engine import URL

from statestore import InvalidValueError, StateStore, TaskScope, set_default_store
from tests.integration.orchestrators.conftest import require

dagster = require("dagster")

from dagster import (  # noqa: E402 - after the skip/fail check above
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    DagsterInstance,
    DagsterRunStatus,
    OpExecutionContext,
    RetryPolicy,
    execute_job,
    graph,
    job,
    materialize,
    multi_asset,
    op,
    reconstructable,
)

from statestore.integrations.dagster import (  # noqa: E402
    StateStoreResource,
    asset_name_for,
    task_scope_for,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

pytestmark = [
    # Dagster marks some of its own APIs beta/preview and warns when it uses them itself.
    pytest.mark.filterwarnings("ignore::dagster.BetaWarning"),
    pytest.mark.filterwarnings("ignore::dagster.PreviewWarning"),
]


def _load_example(name: str) -> ModuleType:
    """Import an example as a top-level module, as ``dagster dev -f`` would."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def url(migrated_url: URL) -> str:
    """The test's database as a URL string for the resource config (password kept)."""
    return migrated_url.render_as_string(hide_password=False)


@pytest.fixture
def store(url: str) -> Iterator[StateStore]:
    """The same database, read directly to check what the runs left."""
    with StateStore(url) as opened:
        yield opened


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[DagsterInstance]:
    """A persistent Dagster instance in a temporary directory (runs, events, outputs)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(str(home)) as local:
        yield local


@pytest.mark.slow
def test_crashed_run_reexecuted_from_failure_resumes(
    url: str, store: StateStore, instance: DagsterInstance, tmp_path: Path
) -> None:
    example = _load_example("orchestrator_dagster_resume")
    cluster = tmp_path / "cluster"

    run_config: dict[str, Any] = {
        "resources": {
            "statestore": {"config": {"url": url}},
            "cluster": {"config": {"root": str(cluster)}},
        },
        "ops": {
            "run_job": {"config": {"crash_mid_poll": True}},
            "load_partition": {"config": {"fail_partition": "us"}},
        },
    }

    # Run 1, multiprocess executor: run_job's step process dies with os._exit(1) after
    # submitting; load_partition[us] fails at page 3. The run fails.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(EXAMPLES)  # recorded as the working directory step processes import from
        recon = reconstructable(example.resumable_load)
    first = execute_job(recon, instance, run_config=run_config)
    assert not first.success
    failed = {event.step_key for event in first.get_step_failure_events()}
    assert failed == {"run_job", "load_partition[us]"}
    jobs = sorted(path.name for path in cluster.glob("job-*"))
    assert len(jobs) == 1

    # Run 2, as the how-to does it: `python orchestrator_dagster_resume.py RUN_ID` with
    # DAGSTER_HOME set, a re-execution from failure (ReexecutionOptions) in a new process.
    # It keeps run 1's config, as the UI's "Re-execute from failure" does: the crash and
    # the error strike only attempts that start from scratch.
    done = subprocess.run(
        [sys.executable, "orchestrator_dagster_resume.py", first.run_id],
        cwd=EXAMPLES,
        env={**os.environ, "DAGSTER_HOME": instance.root_directory},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = re.search(r"^re-execution (\S+) of (\S+): (.*)$", done.stdout, re.M)
    assert printed is not None, done.stdout + done.stderr
    assert printed[2] == first.run_id
    assert printed[3] == f"{jobs[0]}: 12 pages"
    second = instance.get_run_by_id(printed[1])
    assert second is not None
    assert second.status == DagsterRunStatus.SUCCESS
    assert second.run_id != first.run_id
    assert second.root_run_id == first.run_id

    # The re-execution polled the job run 1 submitted, and submitted none of its own.
    assert sorted(path.name for path in cluster.glob("job-*")) == jobs
    assert (cluster / jobs[0]).read_text() == "100"
    # Each page was fetched once: us resumed at page 3, eu and apac were not re-run.
    fetched = (cluster / "fetched.log").read_text().split()
    assert sorted(fetched) == sorted(f"{p}:{n}" for p in example.PARTITIONS for n in range(1, 5))

    # What the store holds: one chain, one run_id (the root's); mapped steps by map key.
    run_job = store.task_state(TaskScope("resumable_load", first.run_id, "run_job"))
    assert run_job.get("job_id") == jobs[0]
    for partition in example.PARTITIONS:
        scope = TaskScope("resumable_load", first.run_id, "load_partition", map_key=partition)
        assert store.task_state(scope).get("pages_done") == 4
    us = TaskScope("resumable_load", first.run_id, "load_partition", map_key="us")
    item = store.task_state(us).get_item("pages_done")
    assert item is not None
    assert item.updated_by == f"dagster:{second.run_id}:load_partition[us]"  # who resumed it
    own_run = TaskScope("resumable_load", second.run_id, "run_job")
    assert list(store.task_state(own_run).keys()) == []  # nothing under the new run's id


attempts: list[tuple[int, object]] = []


@op(retry_policy=RetryPolicy(max_retries=2))
def flaky(context: OpExecutionContext, statestore: StateStoreResource) -> int:
    """Checkpoints, then fails on its first attempt; the retry reads the checkpoint."""
    state = statestore.task_state(context)
    attempts.append((context.retry_number, state.get("rows_done")))
    if context.retry_number == 0:
        state.set("rows_done", 500)
        raise RuntimeError("transient failure after 500 rows")
    return int(state.get("rows_done"))


@graph
def nested() -> Any:
    return flaky.alias("flaky_copy")()


@job
def retrying() -> None:
    flaky()
    nested()


def test_op_retry_keeps_task_state(url: str, store: StateStore) -> None:
    attempts.clear()
    result = retrying.execute_in_process(resources={"statestore": StateStoreResource(url=url)})
    assert result.success
    assert result.output_for_node("flaky") == 500
    assert result.output_for_node("nested.flaky_copy") == 500
    # Two ops (the alias has its own state): each saw nothing, then its own checkpoint.
    assert sorted(attempts) == [(0, None), (0, None), (1, 500), (1, 500)]
    for task_id in ("flaky", "nested.flaky_copy"):
        scope = TaskScope("retrying", result.run_id, task_id)
        assert store.task_state(scope).get("rows_done") == 500


@op
async def async_counter(context: OpExecutionContext, statestore: StateStoreResource) -> int:
    """An ``async def`` op uses the same accessor's async methods."""
    state = statestore.task_state(context)
    count = await state.aget("count", 0) + 1
    await state.aset("count", count)
    return int(count)


@job
def async_job() -> None:
    async_counter()


def test_async_op(url: str, store: StateStore) -> None:
    resource = StateStoreResource(url=url)
    result = async_job.execute_in_process(resources={"statestore": resource})
    assert result.output_for_node("async_counter") == 1
    scope = TaskScope("async_job", result.run_id, "async_counter")
    assert store.task_state(scope).get("count") == 1


def test_each_run_its_own_state_when_asked(url: str, store: StateStore) -> None:
    attempts.clear()
    resource = StateStoreResource(url=url, resume_across_reexecutions=False)
    result = retrying.execute_in_process(resources={"statestore": resource})
    assert result.success  # a retry is the same run either way
    assert store.task_state(TaskScope("retrying", result.run_id, "flaky")).get("rows_done") == 500


def test_asset_watermark_across_materializations(url: str, store: StateStore) -> None:
    example = _load_example("orchestrator_dagster_watermark")
    resources = {"statestore": StateStoreResource(url=url)}
    loaded = []
    for until in ("2026-11-21", "2026-11-22", "2026-11-24"):
        config = {"ops": {"warehouse__orders": {"config": {"until": until}}}}
        result = materialize([example.orders], resources=resources, run_config=config)
        loaded.append(result.output_for_node("warehouse__orders"))
    assert loaded == [["order-1", "order-2"], ["order-3"], ["order-4", "order-5"]]
    # One asset, named as Dagster shows its key; the runs were three different runs.
    watermark = store.asset_state("warehouse/orders").get_item("watermark")
    assert watermark is not None
    assert watermark.value == "2026-11-23T23:59"
    assert watermark.updated_by is not None
    assert watermark.updated_by.startswith("dagster:")


@multi_asset(outs={"left": AssetOut(key=["two", "left"]), "right": AssetOut()})
def two_assets(context: AssetExecutionContext, statestore: StateStoreResource) -> tuple[int, int]:
    """A step of two assets must name the asset whose state it means."""
    with pytest.raises(InvalidValueError, match="materializes 2 assets"):
        statestore.asset_state(context)
    statestore.asset_state(context, AssetKey(["two", "left"])).set("cursor", 1)
    statestore.asset_state(context, "right").set("cursor", 2)
    return 1, 2


def test_multi_asset_names_its_asset(url: str, store: StateStore) -> None:
    materialize([two_assets], resources={"statestore": StateStoreResource(url=url)})
    assert store.asset_state("two/left").get("cursor") == 1
    assert store.asset_state("right").get("cursor") == 2


def test_default_store_when_no_url(url: str, store: StateStore) -> None:
    """Without a url the resource uses (and does not close) the process's default store."""
    attempts.clear()
    set_default_store(store)
    try:
        result = retrying.execute_in_process(resources={"statestore": StateStoreResource()})
    finally:
        set_default_store(None)
    assert result.success
    scope = TaskScope("retrying", result.run_id, "flaky")
    assert store.task_state(scope).get("rows_done") == 500  # the store is still open


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_scope_and_asset_name_helpers(dialect: str) -> None:
    assert asset_name_for(AssetKey(["raw", "orders"])) == "raw/orders"
    assert asset_name_for(["raw", "orders"]) == "raw/orders"
    assert asset_name_for("raw/orders") == "raw/orders"
    assert asset_name_for(two_assets.specs_by_key[AssetKey("right")]) == "right"
    with pytest.raises(TypeError):
        asset_name_for(42)

    seen: list[TaskScope] = []

    @op
    def record(context: OpExecutionContext) -> None:
        seen.append(task_scope_for(context))

    @job
    def scoped() -> None:
        record()

    result = scoped.execute_in_process()
    assert seen == [TaskScope("scoped", result.run_id, "record")]


# -- a step's store on a state server, with a token minted from its context -------------


@pytest.fixture(scope="module")
def state_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from statestore.metastore import upgrade
    from tests.integration.http_server import start_server

    workdir = tmp_path_factory.mktemp("dagster-server")
    database = f"sqlite:///{workdir / 'state.db'}"
    upgrade(database)
    server = start_server(database, workdir)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("dialect", ["sqlite"])  # the server's database: one is enough
def test_asset_step_gets_a_store_limited_to_its_assets(dialect: str, state_server: Any) -> None:
    from dagster import asset

    from statestore import AccessDeniedError
    from statestore.integrations.dagster import server_store, task_grant

    with StateStore(state_server.url, token=state_server.admin_token()) as admin:
        admin.asset_state("raw/orders").set("cursor", 5)
    seen: dict[str, Any] = {}

    @asset(key=["raw", "orders"])
    def raw_orders() -> int:
        return 1

    @asset(key=["mart", "orders"], deps=[raw_orders])
    def mart_orders(context: AssetExecutionContext) -> int:
        seen["grant"] = task_grant(context)
        with server_store(context, url=state_server.url, private_key=state_server.private_key) as s:
            s.task_state(task_scope_for(context)).set("done", True)
            cursor = s.asset_state("raw/orders").get("cursor")
            s.asset_state("mart/orders").set("rows", cursor * 3)
            with pytest.raises(AccessDeniedError):
                s.asset_state("raw/orders").set("cursor", 0)  # upstream: read-only
            with pytest.raises(AccessDeniedError):
                s.asset_state("elsewhere").get("k")
        return 2

    result = materialize([raw_orders, mart_orders], selection=[mart_orders])
    assert result.success
    grant = seen["grant"]
    assert (grant.read_assets, grant.write_assets) == ({"raw/orders"}, {"mart/orders"})
    with StateStore(state_server.url, token=state_server.admin_token()) as admin:
        assert admin.asset_state("mart/orders").get("rows") == 15
        assert admin.asset_state("raw/orders").get("cursor") == 5
        assert admin.task_state(grant.task).get("done") is True


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_server_example_runs_on_a_url_and_a_key(
    dialect: str, state_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/orchestrator_dagster_server.py, configured by the two variables only."""
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(state_server.private_key)
    monkeypatch.setenv("STATESTORE__CLIENT__URL", state_server.url)
    monkeypatch.setenv("STATESTORE_TOKEN_PRIVATE_KEY_FILE", str(key_file))
    example = _load_example("orchestrator_dagster_server")
    result = materialize([example.raw_orders, example.daily_report])
    assert result.success
    assert result.output_for_node("mart__daily_report") == len("2026-12-01")
    with StateStore(state_server.url, token=state_server.admin_token()) as admin:
        assert admin.asset_state("raw/orders").get("until") == "2026-12-01"
        assert admin.asset_state("mart/daily_report").get("rows") == len("2026-12-01")
