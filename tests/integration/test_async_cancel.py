"""A task cancelled while its statement waits on the server (issue 16: nothing leaks).

An async write that waits on a row another session has locked is cancelled. Its
connection must go back to the pool closed -- not stay checked out, which would drain
the pool one cancellation at a time, nor be reused while its answer may still come --
and the store must work at once. On PostgreSQL the server is also asked to stop the
statement, so the write does not land once the lock goes; MariaDB notices a closed
connection only when it answers, so there the write may still land: either way the
key holds one whole write, at a version that counts it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from statestore import StateStore, TaskScope
from tests.integration.conftest import SERVERS

TASK = TaskScope("dag", "run", "task")


@pytest.mark.parametrize("dialect", SERVERS, indirect=True)
def test_a_cancelled_async_write_gives_its_connection_back(migrated_url: URL) -> None:
    engine = create_engine(migrated_url, isolation_level="AUTOCOMMIT")
    locker = engine.connect().execution_options(isolation_level="READ COMMITTED")
    watcher = engine.connect()
    postgres = migrated_url.get_backend_name() == "postgresql"
    waits = text(_LOCK_WAITS["postgresql" if postgres else "mysql"])

    async def run(store: StateStore) -> Any:
        state = store.task_state(TASK)
        await state.aset("n", 1)
        assert await state.aget("n") == 1
        pool = store.backend._connections.loop_engine().engine.pool  # type: ignore[attr-defined]
        kept = pool.checkedout()  # the hot path's idle connection
        locker.execute(text("UPDATE statestore_task_state SET value = '7' WHERE task_id = 'task'"))
        writing = asyncio.ensure_future(state.aset("n", 2))
        assert await _eventually(lambda: watcher.execute(waits).scalar() == 1)
        assert not writing.done()
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        assert pool.checkedout() == kept - 1  # given back closed: not left checked out
        if postgres:  # the server stopped it: nothing waits on the lock any more
            assert await _eventually(lambda: watcher.execute(waits).scalar() == 0)
        locker.commit()
        assert await _eventually(lambda: watcher.execute(waits).scalar() == 0)
        item = await state.aget_item("n")
        assert item is not None
        # the locker's write (version unchanged), and on MariaDB perhaps ours after it
        assert (item.value, item.version) in ([(7, 1)] if postgres else [(7, 1), (2, 2)])
        assert await state.aupdate("n", lambda n: n + 1) == item.value + 1  # works at once
        return item

    try:
        with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
            asyncio.run(run(store))
    finally:
        locker.close()
        watcher.close()
        engine.dispose()


_LOCK_WAITS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    "mysql": "SELECT count(*) FROM information_schema.innodb_trx AS t"
    " JOIN information_schema.processlist AS p ON p.id = t.trx_mysql_thread_id"
    " WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE()",
}
"""Sessions of this test's database waiting on a lock (others run beside it)."""


async def _eventually(check: Any, seconds: float = 5.0) -> bool:
    """Whether ``check()`` holds within ``seconds`` (polled; the loop runs meanwhile).
    Every 0.15 s: InnoDB refreshes ``innodb_trx`` only when it was not read for 0.1 s,
    so quicker polls would read the same stale rows for ever."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.15)
    return False
