"""Airflow 3.3 with ``StatestoreBackend``: Airflow's own example DAGs, run for real.

Each test runs DAGs with ``dag.test()`` -- Airflow's scheduler loop, task runner and
in-process Execution API, through which every state call of a task reaches the
configured ``[state_store] backend`` -- in one subprocess with its own ``AIRFLOW_HOME``
(Airflow's metadata database: a copy of one SQLite file migrated once per module),
while statestore's storage is this test's database (SQLite and PostgreSQL). Then the
test reads statestore's tables back through statestore's API and checks that the DAGs
behaved as their docstrings say, and that Airflow's own state tables stayed empty.

Airflow is not imported into the pytest process (importing it writes an
``AIRFLOW_HOME`` and configures logging); its presence is checked by metadata only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL

from statestore import AssetScope, StateItem, StateStore, TaskScope, TaskStateAccessor
from tests.integration.orchestrators.conftest import require

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "orchestrator_airflow_resume.py"
BACKEND = "statestore.integrations.airflow.StatestoreBackend"
AIRFLOW_EXAMPLES = (
    "example_task_state_store.py",
    "example_task_state_store_async.py",
    "example_task_state_store_mapped.py",
    "example_asset_state_store.py",
)

try:
    _AIRFLOW = importlib.metadata.version("apache-airflow-core")
except importlib.metadata.PackageNotFoundError:
    require("airflow.state")  # skips here, fails under STATESTORE_TEST_REQUIRE_ORCHESTRATORS
    raise
if tuple(int(part) for part in _AIRFLOW.split(".")[:2]) < (3, 3):
    require("airflow.state")  # 3.3 introduced the state store; an older one fails to import it

pytestmark = pytest.mark.slow

# Runs inside the subprocess: every DAG named on the command line, one after the other,
# then a few direct calls of the backend as Airflow's server resolves it.
RUNNER = r"""
import asyncio, json, sys
from datetime import timedelta

from airflow.models.asset import AssetModel
from airflow.sdk import timezone
from airflow.state import AssetScope, TaskScope, get_state_backend
from airflow.utils.cli import get_bagged_dag
from airflow.utils.session import create_session
from sqlalchemy import select

from airflow.sdk.execution_time.context import TaskStateStoreAccessor

out = {"runs": [], "sdk_task_aget": hasattr(TaskStateStoreAccessor, "aget")}
for dag_id in sys.argv[1:]:
    run = get_bagged_dag(None, dag_id).test()
    out["runs"].append([dag_id, run.run_id, getattr(run.state, "value", run.state)])

backend = get_state_backend()
out["backend"] = f"{type(backend).__module__}.{type(backend).__qualname__}"
with create_session() as session:
    ids = dict(session.execute(select(AssetModel.name, AssetModel.id)).all())
out["asset_ids"] = ids
if "orders/daily" in ids:
    scope = AssetScope(asset_id=ids["orders/daily"])  # what the Execution API passes
    out["total_runs"] = backend.get(scope, "total_runs")
    out["total_runs_async"] = asyncio.run(backend.aget(scope, "total_runs"))
for dag_id, run_id, _ in out["runs"]:
    if dag_id == "example_task_state_store_mapped":
        mapped = [TaskScope(dag_id, run_id, "process_table", i) for i in range(3)]
        out["mapped"] = [json.loads(backend.get(s, "result")) for s in mapped]
        backend.clear(mapped[0], all_map_indices=True)
        out["mapped_after_clear"] = [backend.get(s, "result") for s in mapped]
    if dag_id == "example_task_state_store_async":  # the backend's async twins, directly
        scope = TaskScope(dag_id, run_id, "ingest_pages")
        asyncio.run(backend.aset(scope, "probe", '{"a": 1}', expires_at=None))
        out["async_probe"] = asyncio.run(backend.aget(scope, "probe"))
        asyncio.run(backend.adelete(scope, "probe"))
        out["async_probe_deleted"] = asyncio.run(backend.aget(scope, "probe"))
report = backend.cleanup(dry_run=True, now=timezone.utcnow() + timedelta(days=31))
out["cleanup_dry_run"] = report.would_delete
print("RESULT " + json.dumps(out))
"""


# Runs inside the subprocess: the backend as Airflow's server resolves and calls it, on
# assets registered through Airflow's own models (no DAG needed).
BACKEND_CALLS = r"""
import asyncio, json, os
from datetime import timedelta

import httpx
from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI
from airflow.models.asset import AssetActive, AssetModel
from airflow.sdk import timezone
from airflow.state import AssetScope, TaskScope, get_state_backend
from airflow.utils.session import create_session
from sqlalchemy import delete

def outcome(call):
    try:
        return ["ok", call()]
    except Exception as exc:
        return [type(exc).__name__, str(exc)]

def add_asset(name, uri):
    with create_session() as session:
        model = AssetModel(name=name, uri=uri)
        session.add(model)
        session.flush()
        session.add(AssetActive.for_asset(model))
        return model.id

backend, out = get_state_backend(), {}
old = add_asset("orders", "s3://old/orders")
out["old_set"] = outcome(lambda: backend.set(AssetScope(asset_id=old), "cursor", '"v1"'))
out["old_get"] = backend.get(AssetScope(asset_id=old), "cursor")
# The DAGs now declare another asset named "orders": Airflow deactivates the old one.
with create_session() as session:
    session.execute(delete(AssetActive).where(AssetActive.name == "orders"))
new = add_asset("orders", "s3://new/orders")
# Before cleanup: Airflow's new asset has nothing stored under its new id; only writes
# are refused (the name's entry still holds the old asset's state).
fresh = AssetScope(asset_id=new)
before = out["new_before_cleanup"] = {}
before["get"] = outcome(lambda: backend.get(fresh, "cursor"))
before["aget"] = outcome(lambda: asyncio.run(backend.aget(fresh, "cursor")))
before["delete"] = outcome(lambda: backend.delete(fresh, "cursor"))
before["adelete"] = outcome(lambda: asyncio.run(backend.adelete(fresh, "cursor")))
before["clear"] = outcome(lambda: backend.clear(fresh))
before["aclear"] = outcome(lambda: asyncio.run(backend.aclear(fresh)))
before["set"] = outcome(lambda: backend.set(fresh, "cursor", '"v2"'))
before["aset"] = outcome(lambda: asyncio.run(backend.aset(fresh, "cursor", '"v2"')))
before["get_after_writes"] = outcome(lambda: backend.get(fresh, "cursor"))
before["old_get"] = backend.get(AssetScope(asset_id=old), "cursor")  # untouched
# The same through Airflow's Execution API, as a task's calls reach it.
api = httpx.Client(transport=InProcessExecutionAPI().transport, base_url="http://in-process./")
by_name = {"name": "orders", "key": "cursor"}
http = out["http_before_cleanup"] = {}
http["get"] = api.get("store/asset/by-name/value", params=by_name).status_code
http["get_by_uri"] = api.get(
    "store/asset/by-uri/value", params={"uri": "s3://new/orders", "key": "cursor"}
).status_code
http["delete"] = api.delete("store/asset/by-name/value", params=by_name).status_code
http["clear"] = api.delete("store/asset/by-name/clear", params={"name": "orders"}).status_code
http["put"] = api.put("store/asset/by-name/value", params=by_name, json={"value": 2}).status_code
out["old_get_after_http"] = backend.get(AssetScope(asset_id=old), "cursor")
out["cleanup_dry_run"] = backend.cleanup(dry_run=True).would_delete
out["cleanup"] = backend.cleanup().deleted
out["new_get"] = backend.get(AssetScope(asset_id=new), "cursor")
out["new_set"] = outcome(lambda: backend.set(AssetScope(asset_id=new), "cursor", '"v2"'))
out["new_get_after"] = backend.get(AssetScope(asset_id=new), "cursor")
out["http_get_after"] = api.get("store/asset/by-name/value", params=by_name).json()
# The old asset's id now names an asset whose state was swept: nothing stored.
stale = AssetScope(asset_id=old)
out["old_get_after_cleanup"] = outcome(lambda: backend.get(stale, "cursor"))
out["old_delete_after_cleanup"] = outcome(lambda: backend.delete(stale, "cursor"))
out["unknown"] = outcome(lambda: backend.get(AssetScope(asset_id=987654), "cursor"))

task = TaskScope("dag", "run", "task")
out["too_big"] = outcome(lambda: backend.set(task, "big", json.dumps("x" * 200)))
out["too_big_get"] = backend.get(task, "big")
past = timezone.utcnow() - timedelta(seconds=1)
backend.set(task, "expired", '"gone"', expires_at=past)
backend.set(task, "forever", '"kept"', expires_at=None)
out["expired_get"] = backend.get(task, "expired")
os.environ["AIRFLOW__STATE_STORE__DEFAULT_RETENTION_DAYS"] = "0"
out["cleanup_retention_0"] = backend.cleanup().deleted
os.environ["AIRFLOW__STATE_STORE__DEFAULT_RETENTION_DAYS"] = "30"
out["cleanup_retention_30"] = backend.cleanup().deleted
out["forever_get"] = backend.get(task, "forever")
print("RESULT " + json.dumps(out))
"""


# Runs inside the subprocess: 50 backend instances in one process (Airflow builds one
# wherever it needs one and never closes it), then a fork with Airflow's per-process
# instance, as a pre-forking server or the LocalExecutor does.
SHARED_STORE = r"""
import asyncio, gc, json, os, warnings
from pathlib import Path

from airflow.state import TaskScope, get_state_backend
from sqlalchemy.engine import make_url

from statestore.integrations.airflow import StatestoreBackend

URL = make_url(os.environ["AIRFLOW__STATESTORE__URL"])

def connections():
    # PostgreSQL: this process's server connections to the state database (libpq tags
    # them with $PGAPPNAME). SQLite: this process's open handles on the database file.
    if URL.get_backend_name() == "sqlite":
        target = os.path.realpath(URL.database)
        return sum(os.path.realpath(fd) == target for fd in Path("/proc/self/fd").iterdir())
    import psycopg
    with psycopg.connect(
        host=URL.host, port=URL.port, user=URL.username, password=URL.password,
        dbname=URL.database, application_name="counter",
    ) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (URL.database, os.environ["PGAPPNAME"]),
        ).fetchone()[0]

out, task = {}, TaskScope("dag", "run", "task")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    backends = [StatestoreBackend() for _ in range(50)]
    for i, backend in enumerate(backends):
        backend.set(task, f"k{i}", json.dumps(i))
    out["reads"] = [backend.get(task, f"k{i}") for i, backend in enumerate(backends)]
    out["connections_sync"] = connections()

    async def in_one_loop():  # Airflow's API server: one event loop
        for i, backend in enumerate(backends):
            await backend.aset(task, f"a{i}", json.dumps(i))
        reads = [await backend.aget(task, f"a{i}") for i, backend in enumerate(backends)]
        return reads, connections()

    out["areads"], out["connections_in_loop"] = asyncio.run(in_one_loop())
    out["stores"] = len({id(backend.store) for backend in backends})
    del backend, backends
    gc.collect()
    out["connections_after_gc"] = connections()

    airflows = get_state_backend()
    airflows.set(task, "parent", '"p"')
    parent_store = airflows.store
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own store, never the parent's connections
        try:
            child = {"own_store": airflows.store is not parent_store}
            airflows.set(task, "child", '"c"')
            child["reads"] = [airflows.get(task, "parent"), airflows.get(task, "child")]
            child["new_instance_shares"] = StatestoreBackend().store is airflows.store
        except Exception as exc:
            child = {"error": repr(exc)}
        os.write(write_end, json.dumps(child).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        out["child"] = json.loads(pipe.read())
    out["child_exit"] = os.waitpid(pid, 0)[1]
    out["parent_after_fork"] = [
        airflows.get(task, "parent"), airflows.get(task, "child"), airflows.store is parent_store
    ]
out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``airflow db migrate`` per module; each test copies the migrated file."""
    home = tmp_path_factory.mktemp("airflow-template")
    env = _airflow_env(home, dags=home / "dags")
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return home / "airflow.db"


def _airflow_env(home: Path, *, dags: Path, state_url: URL | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STATESTORE"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__STATE_STORE__BACKEND=BACKEND,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    if state_url is not None:
        rendered = state_url.render_as_string(hide_password=False)
        # The backend reads Airflow's option; task code (the helpers) statestore's own.
        env["AIRFLOW__STATESTORE__URL"] = rendered
        env["STATESTORE__DATABASE__URL"] = rendered
    return env


@pytest.fixture
def airflow_home(tmp_path: Path, airflow_db: Path) -> Path:
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    shutil.copy(airflow_db, home / "airflow.db")
    return home


def _run_dags(
    home: Path,
    state_url: URL,
    files: list[Path],
    dag_ids: list[str],
    *,
    unset: tuple[str, ...] = (),
) -> Any:
    for file in files:
        shutil.copy(file, home / "dags" / file.name)
    return _run(home, state_url, RUNNER, dag_ids, unset=unset)


def _run(
    home: Path,
    state_url: URL,
    script: str,
    args: list[str],
    *,
    unset: tuple[str, ...] = (),
    **env_vars: str,
) -> Any:
    env = _airflow_env(home, dags=home / "dags", state_url=state_url)
    env.update(env_vars)
    for name in unset:  # to run with only one of the two URL settings
        del env[name]
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        check=False, env=env, capture_output=True, text=True, timeout=600, cwd=home,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        pytest.fail(f"DAG runner failed ({done.returncode}):\n{done.stdout[-6000:]}\n"
                    f"{done.stderr[-6000:]}")  # fmt: skip
    result = json.loads(lines[-1].removeprefix("RESULT "))
    if isinstance(result, dict):
        result["log"] = done.stdout + done.stderr  # the tasks' logs, for failure messages
    return result


def _airflow_state_rows(home: Path) -> int:
    with sqlite3.connect(home / "airflow.db") as conn:
        task = conn.execute("SELECT count(*) FROM task_state_store").fetchone()[0]
        asset = conn.execute("SELECT count(*) FROM asset_state_store").fetchone()[0]
    return int(task) + int(asset)


def _item(state: TaskStateAccessor, key: str) -> StateItem:
    item = state.get_item(key)
    assert item is not None, key
    return item


def _airflow_examples() -> list[Path]:
    folder = Path(str(importlib.util.find_spec("airflow").origin)).parent / "example_dags"  # type: ignore[union-attr]
    return [folder / name for name in AIRFLOW_EXAMPLES]


def test_airflow_example_dags_behave_as_documented(airflow_home: Path, migrated_url: URL) -> None:
    dag_ids = [
        "example_task_state_store",
        "example_task_state_store_async",
        "example_task_state_store_mapped",
        "example_asset_state_store_producer",
        "example_asset_state_store_producer",  # a second run: the watermark carries over
        "example_asset_state_store_consumer",
    ]
    out = _run_dags(airflow_home, migrated_url, _airflow_examples(), dag_ids)
    assert out["backend"] == BACKEND
    states = {dag_id: state for dag_id, _, state in out["runs"]}
    # Airflow 3.3.2's async example calls task_state_store.aget, which its Task SDK's
    # TaskStateStoreAccessor does not have (only the asset accessor is async): every
    # try fails with AttributeError, whatever the backend. Expect success once it has.
    async_ok = out["sdk_task_aget"]
    assert states.pop("example_task_state_store_async") == ("success" if async_ok else "failed")
    assert set(states.values()) == {"success"}
    runs = {dag_id: run_id for dag_id, run_id, _ in out["runs"]}
    assert _airflow_state_rows(airflow_home) == 0  # nothing went to Airflow's tables

    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        # Sync retry: the job id from the failed first try was reused, not resubmitted.
        job = store.task_state(
            TaskScope("example_task_state_store", runs["example_task_state_store"], "run_job")
        )
        job_id = job.get("job_id")
        assert _item(job, "job_id").expires_at is None  # NEVER_EXPIRE
        assert _item(job, "submitted_at").expires_at is not None  # default retention
        assert job.get("status") == "complete"
        assert job.get("result")["job_id"] == job_id

        # Async retry: resumed from the checkpoint, and every page counted exactly once;
        # and the backend's async twins, called directly.
        pages = store.task_state(
            TaskScope(
                "example_task_state_store_async",
                runs["example_task_state_store_async"],
                "ingest_pages",
            )
        )
        if async_ok:
            assert pages.get("progress") == {"done": list(range(1, 13)), "rows": 7800}
        assert out["async_probe"] == '{"a": 1}'  # stored verbatim
        assert out["async_probe_deleted"] is None

        # Mapped: each map index had its own state, until clear(all_map_indices=True).
        assert [r["map_index"] for r in out["mapped"]] == [0, 1, 2]
        assert [r["table"] for r in out["mapped"]] == ["orders", "customers", "products"]
        assert out["mapped_after_clear"] == [None, None, None]

        # Asset state, by Airflow's name: two runs, the second saw the first's watermark.
        orders = store.asset_state(AssetScope(name="orders/daily"))
        summary = orders.get("last_run_summary")
        assert orders.get("total_runs") == 2
        assert summary["prev_watermark"] != "2026-01-01T00:00:00+00:00"
        assert summary["prev_watermark"] < orders.get("watermark") == summary["completed_at"]
        [info] = [a for a in store.list_assets() if a.name == "orders/daily"]
        assert info.uri == "s3://warehouse/orders/daily"

    # The backend, called as Airflow's server calls it: by Airflow's asset id.
    assert out["total_runs"] == out["total_runs_async"] == "2"
    # 31 days on, the default-retention keys of all the runs have expired.
    assert out["cleanup_dry_run"] > 0


def test_context_helper_resumes_a_crashed_task(airflow_home: Path, migrated_url: URL) -> None:
    # Configured as the how-to says: statestore's own URL only, for backend and helpers.
    out = _run_dags(
        airflow_home, migrated_url, [EXAMPLE], ["orchestrator_airflow_resume"],
        unset=("AIRFLOW__STATESTORE__URL",),
    )  # fmt: skip
    [(_, run_id, state)] = out["runs"]
    assert state == "success"
    assert _airflow_state_rows(airflow_home) == 0
    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        export = store.task_state(TaskScope("orchestrator_airflow_resume", run_id, "export"))
        assert export.get("batches_done") == 5
        writers = [export.get(f"batch-{n}")["written_by_try"] for n in range(5)]
        assert writers == [1, 1, 1, 2, 2]  # the retry skipped what the first try did
        assert _item(export, "batches_done").updated_by == export.scope.describe()
        watermark = store.asset_state("orders_export").get("watermark")
        assert watermark == run_id
        report = store.task_state(TaskScope("orchestrator_airflow_resume", run_id, "report"))
        assert report.get("watermark_seen") == run_id  # read through Airflow's accessor


def test_helpers_follow_airflows_url_option(airflow_home: Path, migrated_url: URL) -> None:
    # Only Airflow's option: the backend and the helpers in task code both use it.
    out = _run_dags(
        airflow_home, migrated_url, [EXAMPLE], ["orchestrator_airflow_resume"],
        unset=("STATESTORE__DATABASE__URL",),
    )  # fmt: skip
    [(_, run_id, state)] = out["runs"]
    assert state == "success", out["log"][-2000:]
    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        export = store.task_state(TaskScope("orchestrator_airflow_resume", run_id, "export"))
        assert export.get("batches_done") == 5  # written by the helpers
        report = store.task_state(TaskScope("orchestrator_airflow_resume", run_id, "report"))
        assert report.get("watermark_seen") == run_id  # read through Airflow's accessor


def test_backend_keeps_airflow_assets_apart_and_checks_before_writing(
    airflow_home: Path, migrated_url: URL
) -> None:
    out = _run(
        airflow_home, migrated_url, BACKEND_CALLS, [],
        AIRFLOW__STATE_STORE__MAX_VALUE_STORAGE_BYTES="100",
    )  # fmt: skip
    assert out["old_set"] == ["ok", None]
    assert out["old_get"] == '"v1"'
    # A new Airflow asset reusing the name never sees the old asset's state: it reads
    # as empty and deletes nothing (as in Airflow, where nothing is stored under its
    # new id yet), while writes are refused until cleanup retires the old state ...
    before = out["new_before_cleanup"]
    for read in ("get", "aget", "get_after_writes"):
        assert before[read] == ["ok", None], read
    for removal in ("delete", "adelete", "clear", "aclear"):
        assert before[removal] == ["ok", None], removal
    for write in ("set", "aset"):
        error, message = before[write]
        assert error == "InvalidScopeError", write
        assert "s3://old/orders" in message
        assert "s3://new/orders" in message
        assert "cleanup()" in message
    assert before["old_get"] == '"v1"'  # the old asset's state is untouched
    # ... which is what a task sees through the Execution API: "not found" (so its
    # get(key, default) returns the default), deletes succeed, a write fails.
    assert out["http_before_cleanup"] == {
        "get": 404, "get_by_uri": 404, "delete": 204, "clear": 204, "put": 500,
    }  # fmt: skip
    assert out["old_get_after_http"] == '"v1"'
    # Once cleanup has retired the old asset (Airflow reports it inactive), the new
    # one starts empty, as it would in Airflow.
    assert out["cleanup_dry_run"] == 1
    assert out["cleanup"] == 1
    assert out["new_get"] is None
    assert out["new_set"] == ["ok", None]
    assert out["new_get_after"] == '"v2"'
    assert out["http_get_after"] == {"value": "v2"}
    # The old id now names an asset whose state is gone: it reads as empty too, and a
    # delete through it leaves the new asset's state alone.
    assert out["old_get_after_cleanup"] == ["ok", None]
    assert out["old_delete_after_cleanup"] == ["ok", None]
    assert out["unknown"][0] == "UnknownAssetError"
    # [state_store] max_value_storage_bytes: refused before anything is written.
    assert out["too_big"][0] == "ValueTooLargeError"
    assert "max_value_storage_bytes = 100" in out["too_big"][1]
    assert out["too_big_get"] is None
    # Expiry on read; default_retention_days = 0 turns time-based cleanup off.
    assert out["expired_get"] is None
    assert out["cleanup_retention_0"] == 0
    assert out["cleanup_retention_30"] == 1
    assert out["forever_get"] == '"kept"'

    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        [orders] = [a for a in store.list_assets() if a.name == "orders"]
        assert (orders.uri, orders.active, orders.keys) == ("s3://new/orders", True, 1)
        assert store.asset_state("orders").get("cursor") == "v2"


def test_backend_instances_share_one_store_per_process(
    airflow_home: Path, migrated_url: URL
) -> None:
    app_name = f"statestore-airflow-{uuid.uuid4().hex[:8]}"
    out = _run(
        airflow_home, migrated_url, SHARED_STORE, [],
        PGAPPNAME=app_name, PYTHONWARNINGS="always::ResourceWarning",
    )  # fmt: skip
    assert out["reads"] == [json.dumps(i) for i in range(50)]
    assert out["areads"] == [json.dumps(i) for i in range(50)]
    assert out["stores"] == 1
    # One sync connection, plus one for the event loop: not one (or two) per instance.
    assert out["connections_sync"] == 1
    assert 1 <= out["connections_in_loop"] <= 2
    assert out["connections_after_gc"] <= 2
    assert out["warnings"] == []
    # Airflow's per-process instance, inherited by a forked child: the child uses a
    # store of its own, and parent and child both read what was written.
    assert out["child"] == {"own_store": True, "reads": ['"p"', '"c"'], "new_instance_shares": True}
    assert out["child_exit"] == 0
    assert out["parent_after_fork"] == ['"p"', '"c"', True]
    # Nothing was left checked out for garbage collection at exit to complain about.
    for complaint in ("non-checked-in", "deleted while still open", "SAWarning"):
        assert complaint not in out["log"], complaint


@pytest.mark.parametrize("dialect", ["sqlite"])  # the state server's database: one is enough
def test_server_example_tasks_get_tokens_for_their_own_assets(
    dialect: str, airflow_home: Path, migrated_url: URL, tmp_path: Path
) -> None:
    """examples/orchestrator_airflow_server.py: each task's store is on a state server,
    with a token minted from its context (configured by the two settings only)."""
    from statestore.metastore import upgrade
    from tests.integration.http_server import start_server

    database = f"sqlite:///{tmp_path / 'server.db'}"
    upgrade(database)
    server = start_server(database, tmp_path)
    try:
        key_file = tmp_path / "signing.pem"
        key_file.write_bytes(server.private_key)
        example = ROOT / "examples" / "orchestrator_airflow_server.py"
        shutil.copy(example, airflow_home / "dags" / example.name)
        out = _run(
            airflow_home, migrated_url, RUNNER, ["orchestrator_airflow_server"],
            AIRFLOW__STATESTORE__SERVER_URL=server.url,
            STATESTORE_TOKEN_PRIVATE_KEY_FILE=str(key_file),
        )  # fmt: skip
        [(_, run_id, state)] = out["runs"]
        assert state == "success", out["log"][-3000:]
        with StateStore(server.url, token=server.admin_token()) as admin:
            assert admin.asset_state("orders").get("until") == run_id
            assert admin.asset_state("daily_report").get("rows") == len(run_id)
            report = TaskScope("orchestrator_airflow_server", run_id, "build_report")
            assert admin.task_state(report).get("rows") == len(run_id)
        secret_line = server.private_key.decode().splitlines()[1]
        assert secret_line not in out["log"]
        assert secret_line not in server.log.read_text()
    finally:
        server.stop()
