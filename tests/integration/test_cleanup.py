"""Cleanup, the asset registry and the orphan sweep, on every database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy.engine import URL

from statestore import (
    NEVER_EXPIRE,
    InactiveAssetError,
    InMemoryStateBackend,
    StateStore,
    StateStoreConfig,
    TaskScope,
)
from statestore.cleanup import (
    cleanup,
    cleanup_task_states,
    iter_expired_task_states,
    sweep_asset_states,
)
from statestore.exceptions import InvalidTypeError, InvalidValueError
from statestore.metastore import MetastoreStateBackend, maintenance

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
LATER = T0 + timedelta(hours=2)


def make_store(url: URL, **state_store: object) -> StateStore:
    config = StateStoreConfig(
        database={"url": url.render_as_string(hide_password=False)}, state_store=state_store
    )
    return StateStore(config=config)


@pytest.fixture
def store(migrated_url: URL) -> Iterator[StateStore]:
    with make_store(migrated_url) as store:
        yield store


def fill(store: StateStore, instances: int = 5) -> None:
    """Per task instance: 2 expiring keys, 1 never-expiring, 1 on the 30-day default."""
    with time_machine.travel(T0, tick=False):
        for i in range(instances):
            state = store.task_state(TaskScope("dag", "run", "task", i))
            state.set("a", i, retention=timedelta(hours=1))
            state.set("b", i, retention=timedelta(minutes=5))
            state.set("keep", i, retention=NEVER_EXPIRE)
            state.set("default", i)
        store.asset_state("orders").set("wm", "2026-01-01")


@pytest.mark.parametrize("batch_size", [0, 1, 3, 1000])
def test_cleanup_deletes_only_expired_task_state(store: StateStore, batch_size: int) -> None:
    fill(store)
    dry = cleanup_task_states(store, dry_run=True, now=LATER)
    assert (dry.would_delete, dry.deleted, dry.dry_run) == (10, 0, True)
    seen: list[int] = []
    report = cleanup_task_states(store, batch_size=batch_size, now=LATER, progress=seen.append)
    assert report.deleted == 10
    assert report.skipped_reason is None
    if batch_size:
        assert report.batches == -(-10 // batch_size)
        assert seen[-1] == 10
    with time_machine.travel(LATER, tick=False):
        for i in range(5):
            state = store.task_state(TaskScope("dag", "run", "task", i))
            assert state.get("keep") == i
            assert state.get("default") == i
            assert state.get("a") is None
        assert store.asset_state("orders").get("wm") == "2026-01-01"
    for size in (0, 3):  # nothing left: no batch deleted anything, batched or not
        empty = cleanup_task_states(store, now=LATER, batch_size=size)
        assert (empty.deleted, empty.batches) == (0, 0)
    # 31 days on, the default-retention keys go too; NEVER_EXPIRE never does.
    assert cleanup_task_states(store, now=T0 + timedelta(days=31)).deleted == 5
    assert cleanup_task_states(store, now=datetime(9999, 1, 1, tzinfo=timezone.utc)).deleted == 0


def test_batch_size_from_config(migrated_url: URL) -> None:
    with make_store(migrated_url, state_cleanup_batch_size=4) as store:
        fill(store)
        assert cleanup_task_states(store, now=LATER).batches == 3


def test_dry_run_lists_rows_grouped(store: StateStore) -> None:
    fill(store, instances=3)
    with time_machine.travel(T0, tick=False):
        store.task_state(TaskScope("a_dag", "run", "task")).set(
            "z", 1, retention=timedelta(microseconds=1)
        )
    rows = list(iter_expired_task_states(store, now=LATER))
    assert [(r.dag_id, r.map_index, r.key) for r in rows] == [
        ("a_dag", -1, "z"),
        ("dag", 0, "a"), ("dag", 0, "b"),
        ("dag", 1, "a"), ("dag", 1, "b"),
        ("dag", 2, "a"), ("dag", 2, "b"),
    ]  # fmt: skip
    assert rows[1].expires_at == T0 + timedelta(hours=1)
    assert cleanup(store, dry_run=True, now=LATER).would_delete == 7


def test_two_cleanups_at_once(store: StateStore) -> None:
    fill(store, instances=40)
    reports = []

    def run() -> None:
        reports.append(cleanup_task_states(store, batch_size=7, now=LATER))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.deleted for r in reports) == 80
    assert cleanup_task_states(store, dry_run=True, now=LATER).would_delete == 0


def test_interrupted_cleanup_can_be_rerun(store: StateStore) -> None:
    fill(store, instances=10)
    backend = store.backend
    assert isinstance(backend, MetastoreStateBackend)
    batches = maintenance.delete_expired_batches(backend.engine, backend.dialect, LATER, 3)
    assert next(batches) == 3
    batches.close()  # the process "dies" after one committed batch
    assert cleanup_task_states(store, now=LATER).deleted == 17


def test_bad_arguments(store: StateStore) -> None:
    with pytest.raises(InvalidTypeError):
        cleanup_task_states(store, now=datetime(2026, 1, 1))  # naive
    with pytest.raises(InvalidValueError):
        cleanup_task_states(store, batch_size=-1)
    with pytest.raises(InvalidTypeError):
        cleanup_task_states(store, batch_size=True)


def test_other_backends_are_explicitly_not_cleaned() -> None:
    store = StateStore(backend=InMemoryStateBackend())
    store.task_state(TaskScope("d", "r", "t")).set("k", 1, retention=timedelta(seconds=1))
    report = cleanup(store, now=LATER + timedelta(days=1))
    assert report.deleted == 0
    assert report.skipped_reason is not None
    assert "explicitly not cleaned up" in report.skipped_reason
    assert sweep_asset_states(store).skipped_reason
    assert list(iter_expired_task_states(store)) == []


def test_asset_registry_and_sweep(store: StateStore) -> None:
    store.asset_state("orders").set("wm", 1)
    store.asset_state("users").set("cursor", 2)
    assert [(a.name, a.active, a.keys) for a in store.list_assets()] == [
        ("orders", True, 1),
        ("users", True, 1),
    ]
    assert store.deactivate_assets("orders", "never_registered") == 1
    assert store.deactivate_assets("orders") == 0
    assert [a.name for a in store.list_assets(active=False)] == ["orders"]
    with pytest.raises(InactiveAssetError):
        store.asset_state("orders").set("wm", 2)
    assert store.asset_state("orders").get("wm") == 1  # readable until swept
    assert sweep_asset_states(store, dry_run=True).would_delete == 1
    assert store.asset_state("orders").get("wm") == 1
    assert sweep_asset_states(store).deleted == 1
    assert store.asset_state("orders").get("wm") is None
    assert store.asset_state("users").get("cursor") == 2  # active: untouched
    assert store.activate_assets("orders") == 1
    store.asset_state("orders").set("wm", 3)
    assert store.asset_state("orders").get("wm") == 3


async def test_asset_registry_async(store: StateStore) -> None:
    await store.asset_state("orders").aset("wm", 1)
    assert await store.adeactivate_assets("orders") == 1
    with pytest.raises(InactiveAssetError):
        await store.asset_state("orders").aset("wm", 2)
    await store.asset_state("orders").aclear()  # clearing is allowed
    assert [a.keys for a in await store.alist_assets()] == [0]
    assert await store.aactivate_assets("orders") == 1
    await store.aclose()


def test_cleanup_never_touches_asset_state(store: StateStore) -> None:
    with time_machine.travel(T0, tick=False):
        store.asset_state("orders").set("wm", 1)
    assert cleanup(store, now=datetime(9999, 1, 1, tzinfo=timezone.utc)).deleted == 0
    assert store.asset_state("orders").get("wm") == 1


async def test_clear_on_success_on_the_metastore(migrated_url: URL) -> None:
    with make_store(migrated_url, clear_on_success=True) as store:
        scope = TaskScope("d", "r", "t", 0)
        store.task_state(scope).set("k", 1)
        store.task_state(TaskScope("d", "r", "t", 1)).set("k", 1)
        store.asset_state("a").set("k", 1)
        store.on_task_success(scope)
        assert store.task_state(scope).get("k") is None
        assert store.task_state(TaskScope("d", "r", "t", 1)).get("k") == 1
        await store.aon_task_success(TaskScope("d", "r", "t", 1))
        assert store.task_state(TaskScope("d", "r", "t", 1)).get("k") is None
        assert store.asset_state("a").get("k") == 1
        await store.aclose()
