"""Write receipts on every database: a conditional write that arrives twice is applied once.

``set_item_once`` is what a state server runs for a compare-and-set or create-only
write that names a write id (``Idempotency-Key``). Checked here on SQLite, PostgreSQL and
MariaDB: a copy of an applied write is answered without an error and writes nothing --
also after another writer has written the key in between (the copy must not be applied
on top of it, nor refused); a copy that arrives while the original's transaction is
in flight at the same time as the original is answered as applied, whichever of the two
goes first; a write that lost keeps no
receipt, so its copy loses again; a write id vouches for its own key only; old
receipts are removed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, func, insert, select, update
from sqlalchemy.engine import URL

from statestore import AssetScope, MetastoreStateBackend, TaskScope, VersionConflictError
from statestore.metastore import receipts
from statestore.metastore.digests import task_row_id
from statestore.metastore.retries import deadlock_pause
from statestore.metastore.tables import task_state, write_receipt
from statestore.retention import utcnow
from statestore.write_ids import RECEIPT_TTL, receipt_id

TASK = TaskScope("dag", "run", "task")
ASSET = AssetScope(name="receipts_asset")


@pytest.fixture
def backend(migrated_url: URL) -> Iterator[MetastoreStateBackend]:
    backend = MetastoreStateBackend(migrated_url.render_as_string(hide_password=False))
    yield backend
    backend.close()


def _receipts(backend: MetastoreStateBackend) -> int:
    with backend.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(write_receipt)).scalar_one())


@pytest.mark.parametrize("scope", [TASK, ASSET], ids=["task", "asset"])
def test_a_copy_is_answered_as_applied_and_writes_nothing(
    backend: MetastoreStateBackend, scope: TaskScope | AssetScope
) -> None:
    backend.set_item_once(scope, "k", "1", write_id="create-1", if_version=0)
    backend.set_item_once(scope, "k", "1", write_id="create-1", if_version=0)  # a copy
    backend.set_item_once(scope, "k", "2", write_id="cas-1", if_version=1)
    backend.set_item_once(scope, "k", "2", write_id="cas-1", if_version=1)  # a copy
    item = backend.get_item(scope, "k")
    assert item is not None
    assert (item.value, item.version) == ("2", 2)
    # Another writer in between: a late copy is neither applied on top nor refused.
    backend.set_item(scope, "k", "7", updated_by="someone-else")
    backend.set_item_once(scope, "k", "2", write_id="cas-1", if_version=1)
    item = backend.get_item(scope, "k")
    assert item is not None
    assert (item.value, item.version, item.updated_by) == ("7", 3, "someone-else")
    # Deleted since: a late copy of the create does not bring the key back.
    backend.delete(scope, "k")
    backend.set_item_once(scope, "k", "1", write_id="create-1", if_version=0)
    assert backend.get_item(scope, "k") is None
    assert _receipts(backend) == 2


def test_a_write_that_lost_keeps_no_receipt_and_its_copy_loses_again(
    backend: MetastoreStateBackend,
) -> None:
    backend.set(TASK, "k", "1")
    for _ in range(2):  # the write, then its copy: both a conflict, nothing written
        with pytest.raises(
            VersionConflictError, match="at version 1; the write expected version 5"
        ):
            backend.set_item_once(TASK, "k", "9", write_id="lost-1", if_version=5)
    item = backend.get_item(TASK, "k")
    assert item is not None
    assert (item.value, item.version) == ("1", 1)
    assert _receipts(backend) == 0
    with pytest.raises(VersionConflictError, match="expected to be absent"):
        backend.set_item_once(TASK, "k", "9", write_id="lost-2", if_version=0)
    assert _receipts(backend) == 0


def test_a_write_id_vouches_for_its_own_key_only(backend: MetastoreStateBackend) -> None:
    backend.set_item_once(TASK, "a", "1", write_id="shared", if_version=0)
    backend.set_item_once(TASK, "b", "1", write_id="shared", if_version=0)  # another key
    other = TaskScope("dag", "run", "other-task")
    backend.set_item_once(other, "a", "1", write_id="shared", if_version=0)  # another task
    assert [backend.get(s, k) for s, k in [(TASK, "a"), (TASK, "b"), (other, "a")]] == ["1"] * 3
    with pytest.raises(VersionConflictError):  # the same key again: a new write id loses
        backend.set_item_once(TASK, "a", "2", write_id="fresh", if_version=0)


def _hold_the_row(url: URL, dialect: str) -> tuple[Any, Any]:
    """Another connection's open transaction holding ``k``'s row (SQLite: the write
    lock): the writes started meanwhile wait for it."""
    engine = create_engine(url)
    conn = engine.connect()
    if dialect == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()
        found = conn.execute(
            select(task_state.c.version)
            .where(task_state.c.row_id == task_row_id(TASK, "k"))
            .with_for_update()
        ).scalar_one()
        assert found == 1
    return engine, conn


def test_copies_in_flight_together_are_applied_once(
    backend: MetastoreStateBackend, migrated_url: URL, dialect: str
) -> None:
    """The write and its copy are both in flight at once, on two connections (both wait
    behind a third that holds the row): whichever goes first applies it and commits its
    receipt; the other then finds the version moved and the receipt there -- both answer
    success, the write is applied once."""
    backend.set(TASK, "k", "1")
    text = migrated_url.render_as_string(hide_password=False)
    copy_backend = MetastoreStateBackend(text)
    engine, holder = _hold_the_row(migrated_url, dialect)
    outcomes: list[BaseException | None] = []

    def send(sender: MetastoreStateBackend) -> None:
        try:
            sender.set_item_once(TASK, "k", "2", write_id="in-flight-1", if_version=1)
            outcomes.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            outcomes.append(exc)

    threads = [
        threading.Thread(target=send, args=(b,), daemon=True) for b in (backend, copy_backend)
    ]
    try:
        for thread in threads:
            thread.start()
            time.sleep(0.3)  # the original asks first; both are waiting after this
        assert not outcomes, outcomes  # neither got through the held row
    finally:
        if dialect == "sqlite":
            holder.exec_driver_sql("ROLLBACK")
        else:
            holder.rollback()
        holder.close()
        engine.dispose()
        for thread in threads:
            thread.join(30)
        copy_backend.close()
    assert outcomes == [None, None]
    item = backend.get_item(TASK, "k")
    assert item is not None
    assert (item.value, item.version) == ("2", 2)
    assert _receipts(backend) == 1


def _wait_for_a_lock_wait(engine: Any, timeout: float = 10.0) -> None:
    """Until a transaction on this test's database waits for a row lock."""
    waiting = (
        "SELECT COUNT(*) FROM information_schema.INNODB_TRX t"
        " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
        " WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()"
    )
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while not conn.exec_driver_sql(waiting).scalar():
            assert time.monotonic() < deadline, "no transaction came to wait for a lock"
            time.sleep(0.01)


def test_a_deadlock_victim_runs_again_and_applies_once(
    backend: MetastoreStateBackend,
    migrated_url: URL,
    dialect: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real InnoDB deadlock, built so the receipt transaction is the victim: another
    transaction, heavier (eleven rows changed), holds the key's row; the receipt
    transaction inserts its receipt and waits for that row; the other then inserts the
    same receipt, which waits for the first: a cycle, and InnoDB rolls back the lighter
    one. The write runs again after a pause, once the other has rolled back, and is
    applied once with one receipt -- not answered 503 as before the retry."""
    if dialect != "mysql":
        pytest.skip("MariaDB's receipt transaction only: PostgreSQL's is one statement")
    backend.set(TASK, "k", "1")
    for n in range(10):
        backend.set(TASK, f"filler{n}", "0")
    pauses: list[int] = []

    def counted_pause(attempt: int) -> float:
        pauses.append(attempt)
        return deadlock_pause(attempt)

    monkeypatch.setattr(receipts, "deadlock_pause", counted_pause)
    engine = create_engine(migrated_url)
    other = engine.connect()
    outcomes: list[BaseException | None] = []

    def write() -> None:
        try:
            backend.set_item_once(TASK, "k", "2", write_id="deadlock-1", if_version=1)
            outcomes.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            outcomes.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    try:
        other.begin()
        fillers = task_state.c.key.like("filler%")
        assert other.execute(update(task_state).where(fillers).values(value='"1"')).rowcount == 10
        held = task_state.c.row_id == task_row_id(TASK, "k")
        other.execute(update(task_state).where(held).values(value='"held"'))
        writer.start()
        _wait_for_a_lock_wait(engine)  # its receipt is in, and it waits for the held row
        assert not outcomes, outcomes
        # The same receipt: waits for the writer, which waits for us. InnoDB picks the
        # writer (one row) as the victim, and this insert goes through.
        mine = {"receipt_id": receipt_id(TASK, "k", "deadlock-1"), "created_at": utcnow()}
        other.execute(insert(write_receipt).values(**mine))
        _wait_for_a_lock_wait(engine)  # the writer's retry waits for this receipt
        assert not outcomes, outcomes
        other.rollback()  # neither the held row nor this receipt stays
    finally:
        other.close()
        engine.dispose()
        writer.join(30)
    assert outcomes == [None]
    assert pauses == [0]  # one deadlock, one pause, one retry
    item = backend.get_item(TASK, "k")
    assert item is not None
    assert (item.value, item.version) == ("2", 2)
    assert _receipts(backend) == 1
    assert backend.get(TASK, "filler0") == "0"


def test_async_twin_and_old_receipts_are_removed(backend: MetastoreStateBackend) -> None:
    async def main() -> None:
        await backend.aset_item_once(ASSET, "n", "1", write_id="a-1", if_version=0)
        await backend.aset_item_once(ASSET, "n", "1", write_id="a-1", if_version=0)
        with pytest.raises(VersionConflictError):
            await backend.aset_item_once(ASSET, "n", "5", write_id="a-2", if_version=9)
        await backend.aclose()

    asyncio.run(main())
    item = backend.get_item(ASSET, "n")
    assert item is not None
    assert (item.value, item.version) == ("1", 1)
    assert _receipts(backend) == 1
    with backend.engine.begin() as conn:  # what cleanup and the periodic removal run
        later = utcnow() + RECEIPT_TTL + timedelta(seconds=1)
        conn.execute(receipts.prune_statement(), receipts.prune_before(later))
    assert _receipts(backend) == 0


def test_old_receipts_go_before_a_write_and_in_cleanup(migrated_url: URL) -> None:
    from statestore import StateStore
    from statestore.cleanup import cleanup

    text = migrated_url.render_as_string(hide_password=False)
    with StateStore(text) as store:
        backend = store.primary_backend
        assert isinstance(backend, MetastoreStateBackend)
        old = utcnow() - RECEIPT_TTL - timedelta(minutes=1)
        with backend.engine.begin() as conn:
            conn.execute(
                write_receipt.insert(),
                [{"receipt_id": bytes([i]) * 32, "created_at": old} for i in range(3)],
            )
        backend.set_item_once(TASK, "k", "1", write_id="w-1", if_version=0)  # first: prunes
        assert _receipts(backend) == 1  # only the new one
        backend.set_item_once(TASK, "k", "2", write_id="w-2", if_version=1)
        assert _receipts(backend) == 2  # within the minute: no second removal
        report = cleanup(store, now=utcnow() + RECEIPT_TTL + timedelta(seconds=1))
        assert report.deleted == 0  # receipts are not counted as deleted state
        assert _receipts(backend) == 0
        assert store.task_state(TASK).get("k") == 2
