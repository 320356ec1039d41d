"""PostgreSQL: the event loop's plain statements through libpq (``libpq.exec_params_async``).

On psycopg's async connection, a get of a value, every write and ``update()``'s read
and compare-and-set go through libpq as on the sync hot path, awaited on the
connection's socket. Checked against a real server: that path is the one taken, and
it answers and stores exactly what psycopg's async cursor does (values, versions,
timestamps, expiry, conflicts); a cut connection is run again on a new one; a stalled
server times out and writes nothing; a write the server refuses is typed as the
cursor's; another client encoding, or a text libpq would cut short at a NUL, takes the
cursor. (A task cancelled mid-statement: ``test_async_cancel.py``.)
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy.engine import URL

from statestore import BackendUnavailableError, StateStore, StateStoreConfig, TaskScope
from statestore.metastore import async_hotpath
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.test_update_libpq import (  # read_only: a fixture used below
    T0,
    TASK,
    VALUE,
    _store,
    read_only,  # noqa: F401
)

pytestmark = pytest.mark.parametrize(
    "dialect", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)


def _label(command: bytes) -> str:
    match = re.search(rb"\bstatestore_(\w+)\(", command)
    return match.group(1).decode() if match else command.split(maxsplit=1)[0].decode().lower()


@pytest.fixture
def libpq_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement the event loop's hot path ran through libpq, by its label."""
    calls: list[str] = []
    real = async_hotpath.exec_params_async  # type: ignore[attr-defined]

    async def counted(pgconn: Any, command: bytes, *args: Any) -> Any:
        calls.append(_label(command))
        return await real(pgconn, command, *args)

    monkeypatch.setattr(async_hotpath, "exec_params_async", counted)
    return calls


def _cursor_only(store: StateStore) -> None:
    """Turn libpq off on the running loop's hot path: psycopg's cursor, the reference."""
    path = store.backend._connections.loop_engine().hotpath  # type: ignore[attr-defined]
    path._plain = path._statement


async def _observed(store: StateStore, dag: str, *, cursor: bool = False) -> list[Any]:
    """What a run of async gets and writes answers and leaves, each with its outcome."""
    if cursor:
        _cursor_only(store)
    seen: list[Any] = []

    async def outcome(call: Any) -> Any:
        try:
            return await call
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            return (type(exc).__name__, str(exc).replace(dag, "<dag>"))

    task = store.task_state(TaskScope(dag, "run", "task", map_index=3))
    asset = store.asset_state(f"{dag}-orders")
    with time_machine.travel(T0, tick=False):
        await task.aset("k", VALUE, retention=timedelta(hours=2))
        await task.aset("forever", [1, "ü"], retention=None)
        seen += [await outcome(task.aset("k", 1, if_version=0)),  # create-only: taken
                 await outcome(task.aset("k", 2, if_version=9)),  # another version
                 await outcome(task.aset("new", 3, if_version=0))]  # fmt: skip
        seen += [await task.aget("k"), await task.aget("missing", "absent"),
                 await task.aget_item("k")]  # fmt: skip
        seen += [await task.aupdate("new", lambda n: n + 1), await task.aget_item("new")]
        await asset.aset("position", 5)
        assert await asset.aget("position") == 5  # the asset's id is known from here
        await asset.aset("position", 6, if_version=1)
        seen += [await asset.aupdate("position", lambda n: n * 10),
                 await asset.aget_item("position"),
                 await outcome(asset.aset("position", 0, if_version=1))]  # fmt: skip
        await task.adelete("new")
        await asset.adelete("position")
        seen += [await task.aget("new"), await asset.aget("position")]
    with time_machine.travel(T0 + timedelta(hours=3), tick=False):
        seen += [await task.aget("k"), await task.aget("forever")]  # k expired at T0 + 2 h
    return seen


def test_async_gets_and_writes_answer_and_store_as_the_cursors(
    migrated_url: URL, libpq_calls: list[str]
) -> None:
    with _store(migrated_url) as store:
        via_libpq = asyncio.run(_observed(store, "libpq"))
    assert libpq_calls[:2] == ["task_write", "task_write"]
    for label in ("task_read", "task_replace_or_read", "asset_read", "asset_replace_or_read",
                  "delete"):  # fmt: skip
        assert label in libpq_calls
    libpq_calls.clear()
    with _store(migrated_url) as by_cursor:
        via_cursor = asyncio.run(_observed(by_cursor, "cursor", cursor=True))
    assert libpq_calls == []
    assert via_libpq == via_cursor
    assert via_libpq[0][0] == via_libpq[1][0] == "VersionConflictError"
    assert via_libpq[2] is None  # the create-only write of "new" took
    assert via_libpq[3:5] == [VALUE, "absent"]
    assert via_libpq[6] == 4 and via_libpq[7].version == 2  # noqa: PT018 - one update
    assert via_libpq[8] == 60 and via_libpq[9].version == 3  # noqa: PT018 - 6 * 10
    assert via_libpq[10][0] == "VersionConflictError"
    assert via_libpq[-4:] == [None, None, None, [1, "ü"]]


def test_an_async_cut_connection_is_run_again(
    proxied: tuple[TcpProxy, URL], libpq_calls: list[str]
) -> None:
    proxy, url = proxied

    async def run() -> list[Any]:
        state = _store(url).asset_state("orders")
        await state.aset("n", 1)
        answers = [await state.aget("n")]
        for _ in range(2):
            proxy.cut_all()  # as a server restart: the kept connection is dead
            answers.append(await state.aupdate("n", lambda n: n + 1))
        return [*answers, await state.aget("n")]

    assert asyncio.run(run()) == [1, 2, 3, 3]
    # each update's read cut and run again on a new connection, then its replace
    assert libpq_calls.count("asset_read") == 2 * 2 + 1
    assert libpq_calls.count("asset_replace_or_read") == 2


def test_an_async_stalled_server_times_out_and_writes_nothing(
    proxied: tuple[TcpProxy, URL],
) -> None:
    proxy, url = proxied
    config = StateStoreConfig(database={"url": url.render_as_string(hide_password=False),
                                        "timeout_seconds": 1.0})  # fmt: skip

    async def run(store: StateStore) -> None:
        state = store.task_state(TASK)
        await state.aset("n", 1)
        assert await state.aget("n") == 1
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            await state.aupdate("n", lambda n: n + 1)
        assert time.monotonic() - started < 5.0  # the watchdog's tick and a slow machine
        assert re.search(r"within 1 s|time ?out|timed out", str(info.value), re.IGNORECASE)
        proxy.stall(False)
        assert await state.aget("n") == 1
        assert await state.aupdate("n", lambda n: n + 1) == 2  # and it works again

    with StateStore(config=config) as store:
        asyncio.run(run(store))


def test_an_async_refused_write_is_typed_as_the_cursors(
    read_only: StateStore,  # noqa: F811 - the fixture
    libpq_calls: list[str],
) -> None:
    async def run() -> tuple[BaseException, BaseException]:
        state = read_only.asset_state("orders")
        assert await state.aget("n") == 1
        with pytest.raises(BackendUnavailableError) as via_libpq:
            await state.aupdate("n", lambda n: n + 1)
        _cursor_only(read_only)
        with pytest.raises(BackendUnavailableError) as via_cursor:
            await state.aupdate("n", lambda n: n + 1)
        assert await state.aget("n") == 1
        return via_libpq.value, via_cursor.value

    via_libpq, via_cursor = asyncio.run(run())
    # the get by the id the fixture's get learned, then the update's read and replace
    assert libpq_calls == ["asset_read", "asset_read", "asset_replace_or_read"]
    assert str(via_libpq) == str(via_cursor)
    assert "takes no writes" in str(via_libpq)


def test_another_client_encoding_or_a_nul_takes_the_async_cursor(
    migrated_url: URL, libpq_calls: list[str]
) -> None:
    async def in_latin1() -> list[Any]:
        state = _store(migrated_url, client_encoding="latin1").task_state(TASK)
        await state.aset("k", {"text": "grüße"})
        return [await state.aget("k"), await state.aupdate("k", lambda v: {**v, "n": 1})]

    # libpq.py encodes text as UTF-8: a connection in LATIN1 must not be sent its bytes
    assert asyncio.run(in_latin1()) == [{"text": "grüße"}, {"text": "grüße", "n": 1}]
    assert libpq_calls == []

    async def nul() -> None:
        store = _store(migrated_url)
        await store.task_state(TASK).aset("j", 1)  # connected, schema known
        path = store.backend._connections.loop_engine().hotpath  # type: ignore[attr-defined]
        assert await path.run_plain("SELECT %(t)s::text", {"t": "a"}, fetch="scalar") == "a"
        with pytest.raises(Exception, match="NUL") as info:  # psycopg's refusal, not "a"
            await path.run_plain("SELECT %(t)s::text", {"t": "a\x00b"}, fetch="scalar")
        assert type(info.value).__module__.startswith(("statestore", "psycopg"))

    asyncio.run(nul())
    assert libpq_calls == ["task_write", "select"]  # the NUL's statement: the cursor's
    with _store(migrated_url) as store:  # what LATIN1 stored reads the same in UTF-8
        assert store.task_state(TASK).get("k") == {"text": "grüße", "n": 1}
