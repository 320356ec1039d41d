"""PostgreSQL: plain statements through libpq (``metastore/libpq.py``).

Checked against a real server: the libpq path is the one taken (gets, writes and
``update()``'s read and compare-and-set), and it stores and answers exactly what the
cursor path does (value, version, timestamps, expiry, provenance, conflicts); with the
prepared-statement opt-in it runs plain statements prepared under statestore's own
names (and prepares again a name the server forgot); with another client encoding or a
text libpq would cut short at a NUL, the cursor runs instead; a cut connection is run
again on a new one; a stalled
server times out and writes nothing; and an error the server raises reaches the caller
typed exactly as the cursor path's (a read-only database here).
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
from statestore.metastore import hotpath
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


def _label(sql: str) -> str:
    """A function call by its function (``task_write``: ``statestore_task_write``), any
    other statement by its verb (``delete``)."""
    match = re.search(r"\bstatestore_(\w+)\(", sql)
    return match.group(1) if match else sql.split(maxsplit=1)[0].lower()


@pytest.fixture
def libpq_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement run through libpq, by its label (cursor fallbacks not counted;
    under the prepared-statement opt-in, ``prepared <label>``)."""
    calls: list[str] = []
    pending: list[str] = []
    execute, ready = SyncHotPath._execute_libpq, hotpath.libpq_ready

    def counted(self: SyncHotPath, statement: Any, parameters: Any, fetch: Any) -> Any:
        pending[:] = [_label(statement.sql)]
        return execute(self, statement, parameters, fetch)

    def counted_ready(connection: Any, driver: Any) -> tuple[bool, Any]:
        answer = ready(connection, driver)
        if answer[0]:  # a prepared statement (the opt-in) is marked so
            calls.append(pending[0] if answer[1] is None else f"prepared {pending[0]}")
        return answer

    monkeypatch.setattr(SyncHotPath, "_execute_libpq", counted)
    monkeypatch.setattr(hotpath, "libpq_ready", counted_ready)
    return calls


def _store(url: URL, **query: str) -> StateStore:
    return StateStore(url.update_query_dict(query).render_as_string(hide_password=False),
                      updated_by="w1")  # fmt: skip


def _cursor_only(store: StateStore) -> StateStore:
    """``store`` with libpq turned off on its sync hot path: every statement through
    psycopg's cursor, the reference the libpq paths are checked against."""
    store.backend._connections.sync_hotpath()._libpq = False  # type: ignore[attr-defined]
    return store


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
    # the task: its set and get (functions, migration 0008), then two updates, each a
    # read of its value and version (a plain select) and a replace (0009's function); the
    # asset: its first set (a function that found no registered asset: the general way
    # registers it), its first get by name (the cursor's way: a typed row, the id with
    # it), then two updates by its id (migrations 0007's read and 0009's replace)
    task_calls = ["task_write", "task_read"] + ["select", "task_replace_or_read"] * 2
    assert libpq_calls == task_calls + ["asset_write"] + [
        "asset_read", "asset_replace_or_read"] * 2  # fmt: skip
    libpq_calls.clear()
    with _store(migrated_url, prepare_threshold="0") as prepared:  # the opt-in
        via_prepared = _updated(prepared, "prepared")
    # plain statements, no functions: the server keeps each one's plan by name; the
    # asset's updates read its row by id (the get-item statement's text and version)
    steps = ["insert", "select"] + ["select", "update"] * 2 + ["insert"] + ["select", "update"] * 2
    assert libpq_calls == [f"prepared {step}" for step in steps]
    libpq_calls.clear()
    with _cursor_only(_store(migrated_url)) as by_cursor:
        via_cursor = _updated(by_cursor, "cursor")
    assert libpq_calls == []
    for libpq_item, prepared_item, cursor_item in zip(
        via_libpq, via_prepared, via_cursor, strict=True
    ):
        assert libpq_item is not None
        # value, version, updated_at, updated_by, expires_at
        assert libpq_item == prepared_item == cursor_item
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
    # the set, the get by name (the cursor's), then each update: its read cut and run
    # again, its replace (functions, migrations 0007 and 0009); the last get by the known id
    assert libpq_calls == ["asset_write"] + [
        "asset_read", "asset_read", "asset_replace_or_read"] * 2 + ["asset_read"]  # fmt: skip


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
    assert libpq_calls == ["asset_read", "asset_replace_or_read"]
    with pytest.raises(BackendUnavailableError) as via_cursor:
        state.set("n", 2, if_version=1)  # the same statement through the cursor
    assert str(via_libpq.value) == str(via_cursor.value)
    assert "takes no writes" in str(via_libpq.value)
    assert state.get("n") == 1


def _observed(store: StateStore, dag: str) -> list[Any]:
    """What a run of gets and writes answers and leaves, each with its outcome (a
    value, an item, or the error's type and message with the scope's dag taken out)."""
    seen: list[Any] = []

    def outcome(call: Any) -> Any:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            return (type(exc).__name__, str(exc).replace(dag, "<dag>"))

    task = store.task_state(TaskScope(dag, "run", "task", map_index=3))
    asset = store.asset_state(f"{dag}-orders")
    with time_machine.travel(T0, tick=False):
        task.set("k", VALUE, retention=timedelta(hours=2))
        task.set("forever", [1, "ü"], retention=None)
        seen += [outcome(lambda: task.set("k", 1, if_version=0)),  # create-only: taken
                 outcome(lambda: task.set("k", 2, if_version=9)),  # another version
                 outcome(lambda: task.set("new", 3, if_version=0))]  # fmt: skip
        seen += [task.get("k"), task.get("missing", "absent"), task.get_item("k")]
        task.set_many({"a": 1, "b": {"c": None}})
        seen += [task.get_many(["a", "b", "k", "none"]), task.get_item("forever")]
        asset.set("position", 5)
        asset.set("position", 6, if_version=1)
        seen += [asset.get("position"), asset.get_item("position"),
                 outcome(lambda: asset.set("position", 0, if_version=1))]  # fmt: skip
        task.delete("a")
        asset.delete("position")
        seen += [task.get("a"), asset.get("position"), sorted(task.keys())]
    with time_machine.travel(T0 + timedelta(hours=3), tick=False):
        seen += [task.get("k"), task.get("forever")]  # k expired at T0 + 2 h
        task.clear()
        seen += [sorted(task.keys())]
    return seen


OBSERVED = [
    "task_write", "task_write", "insert", "task_replace", "insert", "task_read",
    "task_read", "asset_write", "update", "update", "delete", "delete", "task_read",
    "task_read", "task_read", "delete",
]  # fmt: skip
"""What ``_observed`` runs through libpq by default."""


def test_gets_and_writes_answer_and_store_as_the_cursors(
    migrated_url: URL, libpq_calls: list[str]
) -> None:
    with _store(migrated_url) as store:
        via_libpq = _observed(store, "libpq")
    # every write and every get of a value by a known id went through libpq: task
    # sets and gets as functions (0008), a create-only insert, the asset's first set
    # (a function; no asset yet), its compare-and-sets by name and the deletes as
    # statements; not get_item's typed row, get_many's rows, set_many (its arrays have
    # no libpq form here: the cursor's way), nor an asset found by name (its first get,
    # and the one after the lost compare-and-set forgot its id)
    assert libpq_calls == OBSERVED
    libpq_calls.clear()
    with _store(migrated_url, prepare_threshold="0") as prepared:
        via_prepared = _observed(prepared, "prepared")
    # the same statements, each the plain one a function stood for (no functions under
    # the opt-in: a prepared statement's plan is kept already)
    plain = {"task_write": "insert", "task_replace": "update", "task_read": "select",
             "asset_write": "insert"}  # fmt: skip
    assert libpq_calls == [f"prepared {plain.get(label, label)}" for label in OBSERVED]
    libpq_calls.clear()
    with _cursor_only(_store(migrated_url)) as by_cursor:
        via_cursor = _observed(by_cursor, "cursor")
    assert libpq_calls == []
    assert via_libpq == via_prepared == via_cursor
    assert via_libpq[0][0] == via_libpq[1][0] == "VersionConflictError"
    assert via_libpq[3:5] == [VALUE, "absent"]
    assert via_libpq[-3:] == [None, [1, "ü"], []]


def test_another_client_encoding_takes_the_cursor(
    migrated_url: URL, libpq_calls: list[str]
) -> None:
    # libpq.py encodes text as UTF-8: a connection in LATIN1 must not be sent its bytes
    with _store(migrated_url, client_encoding="latin1") as store:
        state = store.task_state(TASK)
        state.set("k", {"text": "grüße"})
        assert state.get("k") == {"text": "grüße"}
        assert state.update("k", lambda v: {**v, "n": 1}) == {"text": "grüße", "n": 1}
    assert libpq_calls == []
    with _store(migrated_url) as store:  # and what it stored reads the same in UTF-8
        assert store.task_state(TASK).get("k") == {"text": "grüße", "n": 1}


def test_a_text_libpq_would_cut_short_takes_the_cursor(
    migrated_url: URL, libpq_calls: list[str]
) -> None:
    with _store(migrated_url) as store:
        store.task_state(TASK).set("k", 1)  # connected, schema known
        path = store.backend._connections.sync_hotpath()  # type: ignore[attr-defined]
        assert path.run_plain("SELECT %(t)s::text", {"t": "a"}, fetch="scalar") == "a"
        assert libpq_calls == ["task_write", "select"]
        with pytest.raises(Exception, match="NUL") as info:  # psycopg's refusal, not "a"
            path.run_plain("SELECT %(t)s::text", {"t": "a\x00b"}, fetch="scalar")
        assert libpq_calls == ["task_write", "select"]
        assert type(info.value).__module__.startswith(("statestore", "psycopg"))


def test_the_opt_in_prepares_under_its_own_names_and_again_when_forgotten(
    migrated_url: URL, libpq_calls: list[str]
) -> None:
    with _store(migrated_url, prepare_threshold="0") as store:
        state = store.task_state(TASK)
        state.set("k", 1)
        state.set("k", 2)
        assert state.get("k") == 2
        path = store.backend._connections.sync_hotpath()  # type: ignore[attr-defined]
        connection = path._acquire()  # the one connection the store has used
        try:
            pgconn = connection.dbapi_connection.pgconn
            names = pgconn.exec_(
                b"SELECT name FROM pg_prepared_statements"
                b" WHERE name NOT LIKE '\\_pg3\\_%' ORDER BY name"
            )  # psycopg's own (the schema check's, prepared at once here) left out
            assert [names.get_value(row, 0) for row in range(names.ntuples)] == [
                b"statestore_0", b"statestore_1",
            ]  # fmt: skip
            pgconn.exec_(b"DEALLOCATE ALL")  # as a pooler's reset would
        finally:
            path._idle.release(connection)
        state.set("k", 3)  # its name is gone: prepared again, run once
        assert state.get("k") == 3
        assert state.get_item("k").version == 3  # type: ignore[union-attr]
        connection = path._acquire()
        try:  # one name forgotten, the other kept: the new one must not take its number
            pgconn = connection.dbapi_connection.pgconn
            assert pgconn.exec_(b"DEALLOCATE statestore_3").status == 1  # the select's
        finally:
            path._idle.release(connection)
        assert state.get("k") == 3
        state.set("k", 4)
        assert state.get("k") == 4
    assert libpq_calls == ["prepared insert", "prepared insert", "prepared select",
                           "prepared insert", "prepared select", "prepared select",
                           "prepared insert", "prepared select"]  # fmt: skip
