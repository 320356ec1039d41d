"""Which index each web-UI browse and search query chooses, on a real database.

    python scripts/ui_query_plans.py URL     # an empty scratch database: it is filled

Fills the database with 5,000 task-state keys (5 dags x 20 runs x 5 tasks x 10 keys) and
50 asset keys, runs ``ANALYZE``, then runs every plan of ``statestore.metastore.browse``
and ``statestore.metastore.search`` through the backend, capturing each statement, and
prints the indexes its ``EXPLAIN`` names (SQLite: ``EXPLAIN QUERY PLAN``; MariaDB: the
chosen ``key`` column, not ``possible_keys``). This is how revision 0004 found that no
query chose the ``run_id`` index. It deletes every state row of the database first.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from sqlalchemy import event, text

from statestore import StateStore, TaskScope
from statestore.metastore import MetastoreStateBackend, browse, search

_INDEX = re.compile(r"(ix_\w+|pk_\w+|uq_\w+|PRIMARY|sqlite_autoindex\w+)")


def _fill(store: StateStore) -> None:
    backend = store.backend
    assert isinstance(backend, MetastoreStateBackend)
    backend.ensure_schema()
    with backend.engine.begin() as conn:
        for table in ("statestore_asset_state", "statestore_task_state"):
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
    for dag in range(5):
        for run in range(20):
            for task in range(5):
                scope = TaskScope(f"dag{dag}", f"run{run:03d}", f"task{task}")
                store.task_state(scope).set_many({f"key{k}": k for k in range(10)})
    for number in range(5):
        store.asset_state(f"asset{number}").set_many({f"key{k}": k for k in range(10)})
    analyze = {"mysql": "ANALYZE TABLE statestore_task_state, statestore_asset_state"}
    with backend.engine.begin() as conn:
        conn.execute(text(analyze.get(backend.dialect, "ANALYZE")))


def _plans() -> dict[str, browse.Plan[Any]]:
    return {
        "dags": browse.dags(),
        "runs": browse.runs("dag1", prefix="run01"),
        "tasks": browse.tasks("dag1", "run001"),
        "run_search": browse.run_search("run01"),
        "instances": browse.instances("dag1", "run001", "task1"),
        "task_keys": browse.task_keys(TaskScope("dag1", "run001", "task1")),
        "asset_keys": browse.asset_keys(1),
        "search.task_ids": search.task_ids(prefix="task"),
        "search.task_runs": search.task_runs("task1"),
        "search.key_names": search.key_names(prefix="key"),
        "search.asset_key_names": search.key_names(asset_state=True, prefix="key"),
        "search.key_holders": search.key_holders("key1"),
        "search.asset_holders": search.asset_holders("key1"),
    }


def main(url: str) -> int:
    with StateStore(url) as store:
        _fill(store)
        backend = store.backend
        assert isinstance(backend, MetastoreStateBackend)
        dialect = backend.dialect
        captured: list[tuple[str, Any]] = []

        @event.listens_for(backend.engine, "before_cursor_execute")
        def _capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
            if not statement.lstrip().upper().startswith("EXPLAIN"):
                captured.append((statement, params))

        explain = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN "
        for name, plan in _plans().items():
            captured.clear()
            browse.fetch(backend, plan)
            chosen: set[str] = set()
            for statement, params in list(captured):
                with backend.engine.connect() as conn:
                    rows = conn.exec_driver_sql(explain + statement, params).all()
                for row in rows:
                    cells = [str(row[5])] if dialect == "mysql" else [str(c) for c in row]
                    chosen |= set(_INDEX.findall(" ".join(cells)))
            print(f"{name:<26} {', '.join(sorted(chosen)) or '(no index: a scan)'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(sys.argv[1]))
