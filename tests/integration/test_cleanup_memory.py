"""Cleanup and its dry run keep memory flat in the number of expired rows.

Each phase runs in a fresh process so that its peak RSS is its own: one process fills
the table, another streams the dry run and deletes, and reports its peak. 200k expired
rows must cost within a few MB of 20k.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy.engine import URL

pytestmark = pytest.mark.slow

FILL = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timezone
    from sqlalchemy import create_engine, insert
    from statestore.metastore import MetastoreStateBackend
    from statestore.metastore.digests import task_digest, task_row_id
    from statestore.metastore.tables import task_state
    from statestore.scopes import TaskScope

    url, count = sys.argv[1], int(sys.argv[2])
    backend = MetastoreStateBackend(url)
    backend.ensure_schema()
    past = datetime(2020, 1, 1, tzinfo=timezone.utc)
    # One transaction: statestore's own engine autocommits, which on SQLite would make
    # every one of the 200k rows its own commit (a minute of fsyncs).
    with create_engine(backend.engine.url).begin() as conn:
        for start in range(0, count, 5000):
            rows = []
            for i in range(start, min(start + 5000, count)):
                scope = TaskScope("dag", f"run{i // 100}", "task", i % 100)
                rows.append({
                    "row_id": task_row_id(scope, "k"), "task_digest": task_digest(scope),
                    "dag_id": scope.dag_id, "run_id": scope.run_id, "task_id": scope.task_id,
                    "map_index": scope.map_index, "key": "k", "value": '"x"' * 40,
                    "expires_at": past, "updated_at": past,
                })
            conn.execute(insert(task_state), rows)
    backend.close()
    """
)

CLEAN = textwrap.dedent(
    """
    import json, resource, sys
    from statestore import StateStore
    from statestore.cleanup import cleanup_task_states, iter_expired_task_states

    with StateStore(sys.argv[1]) as store:
        listed = sum(1 for _ in iter_expired_task_states(store))
        report = cleanup_task_states(store, batch_size=10_000)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"listed": listed, "deleted": report.deleted, "peak_kib": peak_kib}))
    """
)


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _peak(url: str, rows: int) -> int:
    _run(FILL, url, str(rows))
    result = json.loads(_run(CLEAN, url))
    assert result["listed"] == result["deleted"] == rows
    return int(result["peak_kib"])


def test_memory_is_flat_in_expired_rows(migrated_url: URL) -> None:
    url = migrated_url.render_as_string(hide_password=False)
    small = _peak(url, 20_000)
    large = _peak(url, 200_000)
    assert large - small < 8 * 1024, f"20k rows: {small} KiB, 200k rows: {large} KiB"
