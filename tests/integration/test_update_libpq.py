"""PostgreSQL: ``update()``'s two statements through libpq (``metastore/libpq.py``).

Checked against a real server: the libpq path is the one taken, and it stores exactly
what the cursor path stores (value, version, timestamps, expiry, provenance); with the
prepared-statement opt-in the cursor runs instead; a cut connection is run again on a
new one; a stalled server times out and writes nothing; and an error the server raises
reaches the caller typed exactly as the cursor path's (a read-only database here).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from sqlalchemy.engine import URL

from statestore import (
    BackendUnavailableError,
    StateStore,
    StateStoreConfig,
    TaskScope,
    TaskStateAccessor,
)
from statestore.metastore.hotpath import SyncHotPath
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.parametrize(
    "dialect", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)

TASK = TaskScope("dag", "run", "task", map_key="eu")
T0 = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=timezone.utc)
VALUE = {"text": 'grüße ✓ \\u0000 "quoted"', "n": [1, 2.5, None, True], "deep": {"a": {}}}


@pytest.fixture
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def libpq_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The fetch of every statement run through libpq (cursor fallbacks not counted)."""
    calls: list[str] = []
    execute = SyncHotPath._execute_libpq

    def counted(self: SyncHotPath, statement: Any, parameters: Any, fetch: Any) -> Any:
        if self._idle._idle and self._idle._idle[-1].dbapi_connection.prepare_threshold is None:
            calls.append(fetch)
        return execute(self, statement, parameters, fetch)

    monkeypatch.setattr(SyncHotPath, "_execute_libpq", counted)
    return calls


def _store(url: URL, **query: str) -> StateStore:
    return StateStore(url.update_query_dict(query).render_as_string(hide_password=False),
                      updated_by="w1")  # fmt: skip


def _updated(store: StateStore, key: str) -> list[Any]:
    """Each scope's ``key`` set, read, then updated twice at T0 (its items after)."""
    items = []
    state: Any
    for state in (store.task_state(TASK), store.asset_state("orders")):
        state.set(key, {"seed": 0})
        assert state.get(key) == {"seed": 0}  # the asset's id is known from here
        kwargs = {"retention": timedelta(hours=5)} if isinstance(state, TaskStateAccessor) else {}
        with time_machine.travel(T0, tick=False):
            state.update(key, lambda v: {**v, "once": 1}, **kwargs)
            assert state.update(key, lambda v: {**v, **VALUE}, **kwargs) == {
                "seed": 0, "once": 1, **VALUE,
            }  # fmt: skip
            items.append(state.get_item(key))  # at T0: the task's key expires T0 + 5 h
    return items


def test_libpq_stores_what_the_cursor_stores(migrated_url: URL, libpq_calls: list[str]) -> None:
    with _store(migrated_url) as store:
        via_libpq = _updated(store, "libpq")
    # two updates of each key: the task's replace answers its row count; the asset's,
    # a function (migration 0007), the rows it replaced
    assert libpq_calls == ["row", "rowcount"] * 2 + ["row", "scalar"] * 2
    libpq_calls.clear()
    with _store(migrated_url, prepare_threshold="0") as prepared:  # the cursor's way
        via_cursor = _updated(prepared, "cursor")
    assert libpq_calls == []
    for libpq_item, cursor_item in zip(via_libpq, via_cursor, strict=True):
        assert libpq_item is not None
        assert libpq_item == cursor_item  # value, version, updated_at, updated_by, expires_at
        assert (libpq_item.version, libpq_item.updated_at, libpq_item.updated_by) == (3, T0, "w1")
    assert via_libpq[0].expires_at == T0 + timedelta(hours=5)  # the task's, as retention says
    assert via_libpq[1].expires_at is None


def test_a_cut_connection_is_run_again(
    proxied: tuple[TcpProxy, URL], libpq_calls: list[str]
) -> None:
    proxy, url = proxied
    with _store(url) as store:
        state = store.asset_state("orders")
        state.set("n", 1)
        assert state.get("n") == 1
        for expected in (2, 3):
            proxy.cut_all()  # as a server restart: the kept connection is dead
            assert state.update("n", lambda n: n + 1) == expected
        assert state.get("n") == 3
    assert libpq_calls.count("scalar") == 2  # an asset replace: migration 0007's function


def test_a_stalled_server_times_out_and_writes_nothing(proxied: tuple[TcpProxy, URL]) -> None:
    proxy, url = proxied
    config = StateStoreConfig(database={"url": url.render_as_string(hide_password=False),
                                        "timeout_seconds": 1.0})  # fmt: skip
    with StateStore(config=config) as store:
        state = store.task_state(TASK)
        state.set("n", 1)
        assert state.get("n") == 1
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            state.update("n", lambda n: n + 1)
        assert time.monotonic() - started < 5.0  # the watchdog's tick and a slow machine
        assert re.search(r"within 1 s|time ?out|timed out", str(info.value), re.IGNORECASE)
        proxy.stall(False)
        assert state.get("n") == 1
        assert state.update("n", lambda n: n + 1) == 2  # and the store works again


@pytest.fixture
def read_only(migrated_url: URL) -> Iterator[StateStore]:
    """A store whose every transaction is read-only (writes refused by the server),
    with the key ``n`` seeded by a writable one."""
    with _store(migrated_url) as writable:
        writable.asset_state("orders").set("n", 1)
    options = f"{migrated_url.query.get('options', '')} -c default_transaction_read_only=on"
    with _store(migrated_url, options=options.strip()) as store:
        assert store.asset_state("orders").get("n") == 1
        yield store


def test_a_refused_write_is_typed_as_the_cursors(
    read_only: StateStore, libpq_calls: list[str]
) -> None:
    state = read_only.asset_state("orders")
    with pytest.raises(BackendUnavailableError) as via_libpq:
        state.update("n", lambda n: n + 1)
    assert libpq_calls == ["row", "scalar"]
    with pytest.raises(BackendUnavailableError) as via_cursor:
        state.set("n", 2, if_version=1)  # the same statement through the cursor
    assert str(via_libpq.value) == str(via_cursor.value)
    assert "takes no writes" in str(via_libpq.value)
    assert state.get("n") == 1
