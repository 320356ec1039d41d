"""Cleanup throughput and peak memory: statestore against a raw batched DELETE.

Each measurement runs in a fresh process (so its peak RSS is its own) on a table filled
with ``rows`` expired keys spread evenly among ``live`` live ones (default: as many).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
from typing import Any

__all__ = ["run"]

_FILL = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta, timezone
    from sqlalchemy import insert, delete
    from statestore.metastore import MetastoreStateBackend
    from statestore.metastore.digests import task_digest, task_row_id
    from statestore.metastore.tables import task_state
    from statestore.scopes import TaskScope

    url, expired, live = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    total = expired + live
    backend = MetastoreStateBackend(url)
    past = datetime(2020, 1, 1, tzinfo=timezone.utc)
    future = datetime.now(timezone.utc) + timedelta(days=365)
    with backend.engine.connect() as conn:
        conn.execute(delete(task_state).where(task_state.c.dag_id == "cleanup"))
        for start in range(0, total, 5000):
            rows = []
            for i in range(start, min(start + 5000, total)):
                gone = i * expired // total != (i + 1) * expired // total
                scope = TaskScope("cleanup", f"run{i // 100}", "task", i % 100)
                rows.append({
                    "row_id": task_row_id(scope, "k"), "task_digest": task_digest(scope),
                    "dag_id": "cleanup", "run_id": scope.run_id, "task_id": "task",
                    "map_index": scope.map_index, "key": "k", "value": '"x"',
                    "expires_at": past if gone else future, "updated_at": past,
                })
            conn.execute(insert(task_state), rows)
    backend.close()
    """
)

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    from datetime import datetime, timezone
    url, mode = sys.argv[1], sys.argv[2]
    from statestore import StateStore
    from statestore.cleanup import cleanup_task_states, iter_expired_task_states
    from sqlalchemy import create_engine, text
    started = time.perf_counter()
    if mode == "statestore":
        with StateStore(url) as store:
            rows = cleanup_task_states(store, batch_size=10_000).deleted
    elif mode == "statestore dry run":
        with StateStore(url) as store:
            rows = sum(1 for _ in iter_expired_task_states(store))
    else:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        raw = engine.raw_connection()
        cursor = raw.cursor()
        dialect = engine.dialect.name
        now = datetime.now(timezone.utc)
        param = "?" if dialect == "sqlite" else "%s"
        if dialect == "sqlite":
            now = now.replace(tzinfo=None).isoformat(sep=" ")
        elif dialect != "postgresql":
            now = now.replace(tzinfo=None)
        if dialect == "mysql":
            sql = f"DELETE FROM statestore_task_state WHERE expires_at < {param} LIMIT 10000"
        else:
            sql = (f"DELETE FROM statestore_task_state WHERE row_id IN (SELECT row_id FROM "
                   f"statestore_task_state WHERE expires_at < {param} LIMIT 10000)")
        rows = 0
        while True:
            cursor.execute(sql, (now,))
            if hasattr(raw, "commit"):
                raw.commit()
            if not cursor.rowcount:
                break
            rows += cursor.rowcount
        raw.close()
        engine.dispose()
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": elapsed, "peak_rss_mib": round(peak, 1)}))
    """
)


def _python(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout


def run(url: str, rows: int, rounds: int, live: int | None = None) -> dict[str, dict[str, Any]]:
    """Median rows/s and peak RSS per mode."""
    figures: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for mode in ("statestore", "raw batched DELETE", "statestore dry run"):
            _python(_FILL, url, str(rows), str(rows if live is None else live))
            result = json.loads(_python(_MEASURE, url, mode))
            figures.setdefault(mode, []).append(result)
    summary: dict[str, dict[str, Any]] = {}
    for mode, results in figures.items():
        name = "raw_delete" if mode.startswith("raw") else mode
        summary[name] = {
            "ops": [r["rows"] / r["seconds"] for r in results],
            "lat": [],
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in results),
        }
    return summary
