"""A SQLite file that cannot be written: locked by another process, read-only, full.

Each fault gives a typed ``BackendUnavailableError`` naming the file, within the
configured timeout, and nothing is half-written: the value from before the fault is
still there, the file's rows are unchanged, and once the fault is gone the same store
works again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from statestore import BackendUnavailableError, StateStore, TaskScope
from statestore.metastore import MetastoreStateBackend

TASK = TaskScope("dag", "run", "task")


def _rows(path: Path) -> str:
    """A digest of every row of every table, read through a plain connection."""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        digest = hashlib.sha256()
        for table in sorted(tables):
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            for row in sorted(map(repr, rows)):
                digest.update(row.encode())
    conn.close()
    return digest.hexdigest()


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    with StateStore(f"sqlite:///{path}") as store:
        store.task_state(TASK).set("k", "before")
    return path


@pytest.fixture
def locked(db_file: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the file's write lock until the test ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(db_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    yield holder
    holder.kill()
    holder.wait()
    holder.stdout.close()


_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE statestore_task_state SET value = value")
print("locked", flush=True)
time.sleep(120)
"""


def test_locked_file_times_out_typed_and_recovers(
    db_file: Path, locked: subprocess.Popen[str]
) -> None:
    before = _rows(db_file)
    backend = MetastoreStateBackend(f"sqlite:///{db_file}", timeout=0.5)
    try:
        assert backend.get(TASK, "k") == '"before"'  # WAL: readers pass a writer's lock
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match=r"sqlite file .*state\.db.*locked"):
            backend.set(TASK, "k", '"during"')
        assert time.monotonic() - started < 5
        locked.kill()
        locked.wait()
        assert _rows(db_file) == before
        backend.set(TASK, "k", '"after"')  # the same backend, once the lock is gone
        assert backend.get(TASK, "k") == '"after"'
    finally:
        backend.close()


async def test_async_locked_file_times_out_typed(
    db_file: Path, locked: subprocess.Popen[str]
) -> None:
    backend = MetastoreStateBackend(f"sqlite:///{db_file}", timeout=0.5)
    try:
        with pytest.raises(BackendUnavailableError, match="locked"):
            await backend.aset(TASK, "k", '"during"')
        assert await backend.aget(TASK, "k") == '"before"'
    finally:
        await backend.aclose()


def test_full_disk_is_typed_and_writes_nothing(db_file: Path) -> None:
    # SQLite's own "database or disk is full" (SQLITE_FULL), reached by capping the
    # file's size at its current pages: the same error a full filesystem gives.
    before = _rows(db_file)
    backend = MetastoreStateBackend(f"sqlite:///{db_file}")

    @event.listens_for(backend.engine, "connect")
    def _cap_size(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    try:
        big = json.dumps("x" * 60_000)

        def fill() -> None:
            for n in range(50):  # enough new pages to need more than the file has
                backend.set(TASK, f"big{n}", big)

        with pytest.raises(BackendUnavailableError, match="full"):
            fill()
        assert backend.get(TASK, "k") == '"before"'
    finally:
        backend.close()
    written = {f"big{n}" for n in range(50)}
    with StateStore(f"sqlite:///{db_file}") as store:
        state = store.task_state(TASK)
        kept = {key for key in written if state.get(key) is not None}
        assert all(state.get(key) == "x" * 60_000 for key in kept)  # whole rows or none
        for key in kept:
            state.delete(key)
    if not kept:
        assert _rows(db_file) == before


def _read_only_runner() -> list[str]:
    """Run as a process that file permissions apply to, even when the tests run as root."""
    if os.geteuid() != 0:
        return [sys.executable]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and util-linux's setpriv is missing: cannot drop CAP_DAC_*")
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, f"--bounding-set={caps}", sys.executable]


_READ_ONLY = """
import json, sys
from statestore import StateStore, StateStoreError, TaskScope

outcome = {}
with StateStore(f"sqlite:///{sys.argv[1]}") as store:
    state = store.task_state(TaskScope("dag", "run", "task"))
    for name, op in (("set", lambda: state.set("k", "during")), ("get", lambda: state.get("k"))):
        try:
            outcome[name] = ["ok", op()]
        except StateStoreError as exc:
            outcome[name] = [type(exc).__name__, str(exc)]
print(json.dumps(outcome))
"""


def test_read_only_file_is_typed_and_unchanged(db_file: Path) -> None:
    before = _rows(db_file)
    directory = db_file.parent
    for path in directory.iterdir():
        path.chmod(0o444)
    directory.chmod(0o555)
    try:
        result = subprocess.run(
            [*_read_only_runner(), "-c", _READ_ONLY, str(db_file)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        directory.chmod(0o755)
        for path in directory.iterdir():
            path.chmod(0o644)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["set"][0] == "BackendUnavailableError", outcome
    assert "readonly" in outcome["set"][1].replace("-", "").replace(" ", "").lower(), outcome
    # Reading may work or be refused (WAL needs its -shm file), but never lies.
    assert outcome["get"] in (["ok", "before"], ["BackendUnavailableError", outcome["get"][1]])
    assert _rows(db_file) == before
