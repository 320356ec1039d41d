"""How many server connections one store holds, and what happens when they run out.

The budget (docs/deploying.md): one connection for everything a single thread does --
reads, writes, the first asset write, a lost compare-and-set, cleanup -- at most
``pool_size + max_overflow`` under threads, and nothing left behind by an event loop
that has finished (``asyncio.run`` per call). Waits for a connection end within
``timeout_seconds`` in a ``BackendUnavailableError`` that says what ran out.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from statestore import MetastoreStateBackend, StateStore, TaskScope
from statestore.cleanup import cleanup
from statestore.exceptions import BackendUnavailableError, VersionConflictError

SCOPE = TaskScope("budget", "run", "task")


def _named(url: URL) -> tuple[URL, str]:
    """``url`` tagged with a unique application name, to count its connections."""
    name = f"sst-{uuid.uuid4().hex[:10]}"
    return url.update_query_dict({"application_name": name}), name


def _server_connections(url: URL, name: str) -> int:
    engine = create_engine(url.difference_update_query(["application_name"]))
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": name},
                ).scalar_one()
            )
    finally:
        engine.dispose()


@pytest.fixture
def pg_url(migrated_url: URL) -> URL:
    if migrated_url.get_backend_name() != "postgresql":
        pytest.skip("counts server sessions in PostgreSQL's pg_stat_activity")
    return migrated_url


@pytest.fixture
def counted(pg_url: URL) -> Iterator[tuple[StateStore, URL, str]]:
    url, name = _named(pg_url)
    store = StateStore(url.render_as_string(hide_password=False))
    try:
        yield store, url, name
    finally:
        store.close()
    assert _server_connections(url, name) == 0  # close() released every one


def test_one_thread_holds_one_connection_whatever_it_does(
    counted: tuple[StateStore, URL, str],
) -> None:
    store, url, name = counted
    state = store.task_state(SCOPE)
    state.set("k", 1)
    assert state.get("k") == 1
    assert _server_connections(url, name) == 1
    watermark = store.asset_state(f"orders-{uuid.uuid4().hex[:6]}")
    watermark.set("w", "2026-12-01")  # the first write registers the asset (slow path)
    assert watermark.get("w") == "2026-12-01"
    item = watermark.get_item("w")
    assert item is not None
    watermark.set("w", "2026-12-02")
    with pytest.raises(VersionConflictError):  # a lost compare-and-set
        watermark.set("w", "2026-12-03", if_version=item.version)
    assert watermark.get("w") == "2026-12-02"
    report = cleanup(store)
    assert report.deleted == 0
    assert store.list_assets()
    assert _server_connections(url, name) == 1


def test_threads_stay_within_pool_size_plus_overflow(pg_url: URL) -> None:
    url, name = _named(pg_url)
    from statestore.config import StateStoreConfig

    config = StateStoreConfig(
        database={"url": url.render_as_string(hide_password=False), "pool_size": 2,
                  "max_overflow": 3}
    )  # fmt: skip
    store = StateStore(config=config)
    errors: list[BaseException] = []
    peak = 0
    stop = threading.Event()

    def work(index: int) -> None:
        state = store.task_state(TaskScope("budget", "run", f"t{index}"))
        try:
            for i in range(40):
                state.set("k", i)
                if state.get("k") != i:
                    errors.append(AssertionError(f"thread {index} read a wrong value"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _server_connections(url, name))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stop.set()
    sampler.join(timeout=10)
    try:
        assert errors == []
        assert 1 <= peak <= 5  # pool_size 2 + max_overflow 3
        # Beyond pool_size, connections close as they come back.
        assert 1 <= _server_connections(url, name) <= 2
    finally:
        store.close()


def test_asyncio_run_per_call_holds_at_most_two_connections(
    counted: tuple[StateStore, URL, str],
) -> None:
    store, url, name = counted
    state = store.task_state(SCOPE)

    async def one_call(i: int) -> None:
        await state.aset("k", i)
        assert await state.aget("k") == i

    for i in range(100):
        asyncio.run(one_call(i))
        if i % 25 == 0:
            assert _server_connections(url, name) <= 2
    assert _server_connections(url, name) <= 2
    assert state.get("k") == 99


def test_a_loop_closed_without_shutdown_is_released_on_next_use(
    counted: tuple[StateStore, URL, str],
) -> None:
    store, url, name = counted
    state = store.task_state(SCOPE)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(state.aset("k", "from a bare loop"))
    loop.close()  # no shutdown_asyncgens(): the store finds out on its next loop
    assert _server_connections(url, name) == 1

    async def read() -> object:
        return await state.aget("k")

    assert asyncio.run(read()) == "from a bare loop"
    assert _server_connections(url, name) == 0


def test_an_exhausted_pool_ends_in_a_typed_error_within_the_timeout(migrated_url: URL) -> None:
    from statestore.config import StateStoreConfig

    config = StateStoreConfig(
        database={"url": migrated_url.render_as_string(hide_password=False), "pool_size": 1,
                  "max_overflow": 0, "timeout_seconds": 1}
    )  # fmt: skip
    with StateStore(config=config) as store:
        state = store.task_state(SCOPE)
        state.set("k", "v")
        backend = store.primary_backend
        assert isinstance(backend, MetastoreStateBackend)
        with backend.maintenance_engine.connect():  # takes the only connection
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="pool_size") as caught:
                state.get("k")
            assert time.monotonic() - started < 5
            assert "docs/deploying.md" in str(caught.value)
        assert state.get("k") == "v"  # and it works again once one is free


def test_too_many_clients_is_a_typed_error_naming_the_limit(pg_url: URL) -> None:
    role = f"sst_limited_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1')
        conn.exec_driver_sql(f'GRANT ALL ON ALL TABLES IN SCHEMA {_schema(pg_url)} TO "{role}"')
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA {_schema(pg_url)} TO "{role}"')
    limited = pg_url.set(username=role).render_as_string(hide_password=False)
    try:
        with StateStore(limited) as first, StateStore(limited) as second:
            first.task_state(SCOPE).set("k", 1)  # holds the role's one connection
            with pytest.raises(BackendUnavailableError, match="too many clients") as caught:
                second.task_state(SCOPE).get("k")
            assert "max_connections" in str(caught.value)
            assert first.task_state(SCOPE).get("k") == 1
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()


def _schema(url: URL) -> str:
    return str(url.query["options"]).split("=", 1)[1]


def test_a_bare_closed_loop_leaves_no_sqlite_thread_behind(tmp_path: Path) -> None:
    """A loop closed without shutting down (Starlette's TestClient, anyio's portals)
    leaves aiosqlite connections the store must close itself: left to garbage
    collection, aiosqlite's __del__ binds its close to the closed current loop and its
    worker thread dies with "Event loop is closed" in whatever test runs next."""
    failures: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(f"{args.thread}: {args.exc_value!r}")
    before = {t.ident for t in threading.enumerate()}
    store = StateStore(f"sqlite:///{tmp_path / 'bare.db'}")
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(store.task_state(SCOPE).aset("k", "v"))
        loop.close()  # no shutdown_asyncgens()
        store.close()
        gc.collect()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and [
            t for t in threading.enumerate()
            if t.ident not in before and "_connection_worker_thread" in t.name
        ]:  # fmt: skip
            time.sleep(0.05)
        left = [
            t.name for t in threading.enumerate()
            if t.ident not in before and "_connection_worker_thread" in t.name
        ]  # fmt: skip
    finally:
        asyncio.set_event_loop(None)
        threading.excepthook = previous
    assert left == []  # the worker thread closed the file and stopped
    assert failures == []
