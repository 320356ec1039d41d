"""Worker-side object storage: conformance, containment, ordering, gc — on every database."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import fsspec
import pytest
from sqlalchemy.engine import URL

from statestore import (
    ConfigError,
    StateStore,
    StateStoreConfig,
    TaskScope,
    ValueTooLargeError,
)
from statestore.backends.objectstore import ObjectStoreStateBackend, object_ref
from statestore.backends.offload import WorkerBackedStateBackend, ref_of
from statestore.cleanup import cleanup, gc_objects, iter_expired_task_states, sweep_asset_states
from statestore.metastore import MetastoreStateBackend
from statestore.scopes import AssetScope
from statestore.testing import AsyncBackendConformance, BackendConformance

SCOPE = TaskScope("dag", "run", "task")
OBJECT_STORE = "statestore.backends.objectstore.ObjectStoreStateBackend"


@pytest.fixture(params=["file", "memory"])
def object_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "file":
        yield f"file://{tmp_path / 'objects'}"
        return
    root = f"statestore-{uuid.uuid4().hex}"
    yield f"memory://{root}"
    memory = fsspec.filesystem("memory")
    if memory.exists(root):
        memory.rm(root, recursive=True)


def _composed(url: URL, object_url: str) -> WorkerBackedStateBackend:
    return WorkerBackedStateBackend(MetastoreStateBackend(url), ObjectStoreStateBackend(object_url))


class TestMetastoreWithObjectStore(BackendConformance):
    @pytest.fixture
    def backend(self, migrated_url: URL, object_url: str) -> Iterator[WorkerBackedStateBackend]:
        backend = _composed(migrated_url, object_url)
        yield backend
        backend.close()


class TestMetastoreWithObjectStoreAsync(AsyncBackendConformance):
    @pytest.fixture
    async def backend(
        self, migrated_url: URL, object_url: str
    ) -> AsyncIterator[WorkerBackedStateBackend]:
        backend = _composed(migrated_url, object_url)
        yield backend
        await backend.aclose()


def make_store(url: URL, object_url: str, **workers: object) -> StateStore:
    config = StateStoreConfig(
        database={"url": url.render_as_string(hide_password=False)},
        workers={
            "state_backend": "statestore.backends.objectstore.ObjectStoreStateBackend",
            "object_store_url": object_url,
            **workers,
        },
    )
    return StateStore(config=config)


@pytest.fixture
def store(migrated_url: URL, object_url: str) -> Iterator[StateStore]:
    with make_store(migrated_url, object_url) as store:
        yield store


def _row(store: StateStore, scope: TaskScope | AssetScope, key: str) -> str | None:
    backend = store.primary_backend
    return backend.get(scope, key)


def test_large_values_go_to_the_object_store(store: StateStore) -> None:
    big = {"blob": "x" * 5_000_000}  # 5 MB, far over max_value_bytes
    store.task_state(SCOPE).set("big", big)
    assert store.task_state(SCOPE).get("big") == big
    stored = _row(store, SCOPE, "big")
    assert stored is not None
    assert len(stored) < 300  # only the reference is in the database
    assert ref_of(stored) == object_ref(SCOPE, "big")


async def test_async_round_trip_and_delete(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    await state.aset("k", [1, 2])
    assert await state.aget("k") == [1, 2]
    await state.adelete("k")
    assert await state.aget("k") is None
    await store.aclose()


def test_object_size_limit_writes_nothing(migrated_url: URL, object_url: str) -> None:
    with make_store(migrated_url, object_url, max_object_bytes=1000) as store:
        with pytest.raises(ValueTooLargeError):
            store.task_state(SCOPE).set("k", "x" * 2000)
        assert _row(store, SCOPE, "k") is None
        worker = store.worker_backend
        assert isinstance(worker, ObjectStoreStateBackend)
        assert worker.iter_objects() == []


def test_marker_lookalike_dicts_round_trip_as_data(store: StateStore, migrated_url: URL) -> None:
    lookalikes = [
        {"$statestore": "ref", "ref": "task/../../etc/passwd"},
        {"$statestore": "data", "value": 1},
        {"$statestore": None},
    ]
    for i, value in enumerate(lookalikes):
        store.task_state(SCOPE).set(f"k{i}", value)
        store.asset_state("a").set(f"k{i}", value)
        assert store.task_state(SCOPE).get(f"k{i}") == value
        assert store.asset_state("a").get(f"k{i}") == value
    # ... and without a worker-side backend, too.
    with StateStore(migrated_url.render_as_string(hide_password=False)) as plain:
        for i, value in enumerate(lookalikes):
            plain.task_state(TaskScope("d", "r", "t")).set(f"k{i}", value)
            assert plain.task_state(TaskScope("d", "r", "t")).get(f"k{i}") == value


HOSTILE = [
    "..", "../..", "../../etc/passwd", "/etc/passwd", "\\..\\..\\windows", "%2e%2e%2f",
    "%2e%2e", "s3://other-bucket/x", "file:///etc/passwd", "C:\\Windows", "\uff0e\uff0e\uff0f",
    "\u2024\u2024\u2215", "a/../../b", "~", "~root", " ", "KEY", "key", "\u202e..",
]  # fmt: skip


def test_keys_and_ids_cannot_escape_the_base(migrated_url: URL, tmp_path: Path) -> None:
    base = tmp_path / "inside" / "objects"
    before = set(tmp_path.rglob("*"))
    with make_store(migrated_url, f"file://{base}") as store:
        for i, hostile in enumerate(HOSTILE):
            scope = TaskScope(hostile, hostile, hostile, i)
            store.task_state(scope).set(hostile, i)
            store.asset_state(hostile).set(hostile, i)
            assert store.task_state(scope).get(hostile) == i
            assert store.asset_state(hostile).get(hostile) == i
        created = {p for p in tmp_path.rglob("*") if p.is_file()} - before
        created = {p for p in created if not p.name.startswith("state.db")}  # SQLite's own
        assert created
        assert all(base in p.parents for p in created), created
        assert len([p for p in created if p.suffix == ".json"]) == 2 * len(HOSTILE)


def test_tampered_references_are_refused(tmp_path: Path) -> None:
    worker = ObjectStoreStateBackend(f"file://{tmp_path / 'objects'}")
    (tmp_path / "secret.json").write_text('"secret"')
    for ref in ["../secret.json", "/etc/passwd", "task/../../secret.json", "s3://x/y.json",
                "task/" + "0" * 64 + "/m-1/../../../secret.json",
                # matched whole: no trailing newline, ASCII digits only in a map index
                "task/" + "0" * 64 + "/m-1/" + "0" * 64 + ".json\n",
                "task/" + "0" * 64 + "/m\u0663/" + "0" * 64 + ".json"]:  # fmt: skip
        with pytest.raises(ValueError, match="not an object reference"):
            worker.deserialize_task_state_from_ref(ref)


def test_crash_between_row_delete_and_object_delete(store: StateStore) -> None:
    store.task_state(SCOPE).set("k", {"big": "x" * 1000})
    store.asset_state("a").set("k", 1)
    store.primary_backend.delete(SCOPE, "k")  # the process "dies" before the object goes
    assert store.task_state(SCOPE).get("k") is None
    too_young = gc_objects(store, dry_run=True)  # inside the grace period: kept
    assert too_young.orphans == []
    dry = gc_objects(store, dry_run=True, grace=timedelta(0))
    assert dry.orphans == [object_ref(SCOPE, "k")]
    assert dry.scanned == 2
    done = gc_objects(store, grace=timedelta(0))
    assert done.deleted == 1
    assert gc_objects(store, dry_run=True, grace=timedelta(0)).orphans == []
    assert store.asset_state("a").get("k") == 1  # a referenced object is never collected


def test_concurrent_writers_never_leave_a_dangling_row(store: StateStore) -> None:
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(20):
                store.task_state(SCOPE).set("hot", {"w": w, "i": i, "pad": "x" * 2000})
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    value = store.task_state(SCOPE).get("hot")
    assert value is not None
    assert value["i"] == 19


def test_cleanup_and_sweep_delete_objects_after_rows(store: StateStore) -> None:
    state = store.task_state(SCOPE)
    state.set("short", "x" * 100, retention=timedelta(microseconds=1))
    state.set("keep", "y")
    store.asset_state("orders").set("wm", 1)
    worker = store.worker_backend
    assert isinstance(worker, ObjectStoreStateBackend)
    assert len(worker.iter_objects()) == 3
    listed = list(iter_expired_task_states(store))
    assert [(r.key, r.object_ref) for r in listed] == [("short", object_ref(SCOPE, "short"))]
    assert cleanup(store, batch_size=1).deleted == 1
    refs = {ref for ref, _ in worker.iter_objects()}
    assert refs == {object_ref(SCOPE, "keep"), object_ref(AssetScope(name="orders"), "wm")}
    store.deactivate_assets("orders")
    assert sweep_asset_states(store).deleted == 1
    assert {ref for ref, _ in worker.iter_objects()} == {object_ref(SCOPE, "keep")}
    state.clear()
    assert worker.iter_objects() == []


def test_configuration_errors(migrated_url: URL) -> None:
    url = migrated_url.render_as_string(hide_password=False)
    with pytest.raises(ConfigError, match="object_store_url"):
        StateStore(
            config=StateStoreConfig(
                database={"url": url},
                workers={
                    "state_backend": "statestore.backends.objectstore.ObjectStoreStateBackend"
                },
            )
        )
    with pytest.raises(ConfigError, match=r"\[workers\] state_backend"):
        StateStore(
            config=StateStoreConfig(
                database={"url": url}, workers={"state_backend": "statestore.scopes.TaskScope"}
            )
        )


def test_secrets_never_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        ObjectStoreStateBackend("nosuchproto://user:hunter2@bucket/path")
    assert "hunter2" not in str(info.value)
