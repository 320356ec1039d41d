"""Migrations through PgBouncer in transaction mode, while other clients use the database.

A session-level advisory lock taken through a transaction pooler stays on whichever
server connection took it: the unlock may run on another one, and the lock then
blocks every later migration that lands elsewhere -- ``db upgrade`` waited for ever.
Here a migrator process runs ``downgrade(url, "base")`` / ``upgrade(url)`` cycles
through the pooler while load processes run operations through the same pool.
Required: every step finishes (bounded wait), every upgrade ends at head, every
downgrade at base, no advisory lock is held afterwards, and the load never sees a
wrong value or an untranslated error (a typed ``StateStoreError`` is what a client
gets while the tables are gone).
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from statestore import StateStore, StateStoreConfig, StateStoreError, TaskScope
from statestore.metastore import current_revision, downgrade, head_revision, upgrade
from tests.integration.behind_pgbouncer.conftest import PooledDatabases
from tests.integration.pgbouncer import PgBouncer

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

CYCLES = 4
LOAD_PROCESSES = 3
MIGRATIONS_TIMEOUT_S = 90.0  # all cycles; each step takes well under a second
LOAD_LIMIT_S = 120.0


def _migrate(url: str, direct_url: str) -> list[str]:
    """Downgrade to base and upgrade to head ``CYCLES`` times; problems seen.

    After every step the server is asked for advisory locks: a leaked one shows there
    at once, whether or not a later step happens to wait for it."""
    problems: list[str] = []
    head = head_revision()
    server = create_engine(direct_url, isolation_level="AUTOCOMMIT")
    try:
        for cycle in range(CYCLES):
            downgrade(url, "base")
            if (found := current_revision(url)) is not None:
                problems.append(f"cycle {cycle}: after downgrade base: at {found!r}")
            if locks := _advisory_locks(server):
                problems.append(f"cycle {cycle}: after downgrade base: advisory locks {locks}")
            upgrade(url)
            if (found := current_revision(url)) != head:
                problems.append(f"cycle {cycle}: after upgrade: at {found!r}, head is {head!r}")
            if locks := _advisory_locks(server):
                problems.append(f"cycle {cycle}: after upgrade: advisory locks {locks}")
    finally:
        server.dispose()
    return problems


def _load(url: str, worker: int, stop: str) -> dict[str, Any]:
    """Write and read own keys until ``stop`` exists; a read is either what was written
    last or absent (a downgrade dropped it), never anything else."""
    problems: list[str] = []
    ok = typed = 0
    deadline = time.monotonic() + LOAD_LIMIT_S
    config = StateStoreConfig(database={"url": url, "timeout_seconds": 20})
    with StateStore(config=config) as store:
        state = store.task_state(TaskScope(f"load{worker}", "run", "task"))
        n = 0
        while not Path(stop).exists() and time.monotonic() < deadline:
            n += 1
            value = f"{worker}:{n}"
            try:
                state.set("k", value)
                got = state.get("k")
                if got not in (value, None):
                    problems.append(f"worker {worker}: read {got!r} after writing {value!r}")
                state.delete("k")
                if (got := state.get("k")) is not None:
                    problems.append(f"worker {worker}: read {got!r} after deleting")
                ok += 1
            except StateStoreError:
                typed += 1  # e.g. SchemaOutOfDateError while the tables are gone
                time.sleep(0.01)
            except Exception as exc:  # noqa: BLE001 - every other failure is a finding
                problems.append(f"worker {worker}: {type(exc).__name__}: {exc}")
    return {"ok": ok, "typed": typed, "problems": problems}


def _advisory_locks(server: Engine) -> list[tuple[Any, ...]]:
    """Advisory locks held or awaited in ``server``'s database, seen on the server."""
    with server.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT l.pid, l.granted, l.objid, a.state, left(a.query, 80) FROM pg_locks l "
                "JOIN pg_database d ON d.oid = l.database "
                "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
            )
        )
        return [tuple(row) for row in rows]


def test_migrations_under_load(
    transaction_pooler: PgBouncer,
    pooled_databases: PooledDatabases,
    new_database: Any,
    tmp_path: Path,
) -> None:
    database = new_database(migrated=True)
    url = transaction_pooler.url(database).render_as_string(hide_password=False)
    stop = tmp_path / "stop"
    context = multiprocessing.get_context("spawn")
    with context.Pool(LOAD_PROCESSES + 1) as pool:
        loads = [pool.apply_async(_load, (url, w, str(stop))) for w in range(LOAD_PROCESSES)]
        time.sleep(1.0)  # the load is running before the first migration
        direct = pooled_databases.direct_url(database).render_as_string(hide_password=False)
        migration = pool.apply_async(_migrate, (url, direct))
        try:
            problems = migration.get(timeout=MIGRATIONS_TIMEOUT_S)
        except multiprocessing.TimeoutError:
            locks = _advisory_locks(pooled_databases.direct(database))
            pytest.fail(f"the migrations hung; advisory locks in {database}: {locks}")
        finally:
            stop.touch()
        results = [load.get(timeout=LOAD_LIMIT_S) for load in loads]
    assert problems == [], "\n".join(problems)
    load_problems = [p for r in results for p in r["problems"]]
    assert load_problems == [], "\n".join(load_problems[:20])
    assert all(r["ok"] > 0 for r in results), results
    assert _advisory_locks(pooled_databases.direct(database)) == []
    assert current_revision(url) == head_revision()
    with StateStore(url) as store:  # and the pooled database works afterwards
        state = store.task_state(TaskScope("after", "run", "task"))
        state.set("k", "v")
        assert state.get("k") == "v"
