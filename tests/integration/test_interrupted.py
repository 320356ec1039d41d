"""A statement interrupted mid-way on the sync hot path (Ctrl-C, ``SystemExit``).

Its connection must be closed and its pool slot freed, never used again, as the async
hot path does for a cancelled task (``test_async_cancel.py``). Before, the garbage
collector handed it back to the pool as it was, and the next statement ran on it: with
a pure-Python driver (PyMySQL) interrupted while reading, that statement could read
the interrupted one's answer. The store keeps working, and answers right, afterwards.
Simulated by raising ``KeyboardInterrupt`` where the driver's answer is read, on every
database and, on PostgreSQL, on both the cursor's and libpq's way.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import URL

from statestore import StateStore, TaskScope
from statestore.metastore import hotpath

TASK = TaskScope("dag", "run", "task")


def _interrupt_once(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = getattr(hotpath, name)
    calls: list[int] = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(hotpath, name, interrupted)


@pytest.mark.parametrize("way", ["cursor", "libpq"])
def test_an_interrupted_statement_frees_its_connection(
    migrated_url: URL, dialect: str, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if way == "libpq" and dialect != "postgresql":
        pytest.skip("libpq's way is PostgreSQL's (psycopg) only")
    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        state = store.task_state(TASK)
        state.set("n", 1)
        assert state.get("n") == 1
        path = store.backend._connections.sync_hotpath()  # type: ignore[attr-defined]
        pool = store.backend.engine.pool  # type: ignore[attr-defined]
        kept = pool.checkedout()  # the hot path's idle connection
        (interrupted,) = [one.dbapi_connection for one in path._idle._idle]
        if way == "libpq":
            _interrupt_once(monkeypatch, "answered")
            with pytest.raises(KeyboardInterrupt):
                path.run_plain("SELECT 1", {}, fetch="scalar")
        else:
            _interrupt_once(monkeypatch, "shaped")
            with pytest.raises(KeyboardInterrupt):
                path.run("SELECT 1", {}, fetch="rows")
        assert pool.checkedout() == kept - 1  # closed and given back, not left out
        monkeypatch.undo()
        state.set("n", 2)  # a new connection: the store works, and answers right
        assert state.get("n") == 2
        assert path.run("SELECT 1", {}, fetch="rows") == [(1,)]
        assert interrupted not in [one.dbapi_connection for one in path._idle._idle]
