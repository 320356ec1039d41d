"""Write receipts on every database: a conditional write that arrives twice is applied once.

``set_item_once`` is what a state server runs for a compare-and-set or create-only
write that names a write id (``Idempotency-Key``). Checked here on SQLite, PostgreSQL and
MariaDB: a copy of an applied write is answered without an error and writes nothing --
also after another writer has written the key in between (the copy must not be applied
on top of it, nor refused); a copy that arrives while the original's transaction is
still open waits for it and is then answered as applied; a write that lost keeps no
receipt, so its copy loses again; a write id vouches for its own key only; old
receipts are removed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import URL

from statestore import AssetScope, MetastoreStateBackend, TaskScope, VersionConflictError
from statestore.metastore import receipts
from statestore.metastore.tables import write_receipt
from statestore.retention import utcnow
from statestore.write_ids import RECEIPT_TTL

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


def test_a_copy_in_flight_waits_for_the_original_then_is_answered(
    backend: MetastoreStateBackend, migrated_url: URL
) -> None:
    """The original holds its transaction open (its receipt and row written, not yet
    committed) while its copy arrives on another connection: the copy waits, then finds
    the committed receipt -- applied once, no conflict."""
    backend.set(TASK, "k", "1")
    copy_backend = MetastoreStateBackend(migrated_url.render_as_string(hide_password=False))
    wrote, release = threading.Event(), threading.Event()
    outcome: list[BaseException | None] = []

    def hold_after_the_write(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            wrote.set()
            release.wait(30)

    def original() -> None:
        event.listen(backend.engine, "after_cursor_execute", hold_after_the_write)
        try:
            backend.set_item_once(TASK, "k", "2", write_id="slow-1", if_version=1)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            outcome.append(exc)
        finally:
            event.remove(backend.engine, "after_cursor_execute", hold_after_the_write)

    thread = threading.Thread(target=original, daemon=True)
    thread.start()
    assert wrote.wait(30), "the original never reached its write"
    timer = threading.Timer(0.5, release.set)  # the copy is waiting by then
    timer.start()
    try:
        copy_backend.set_item_once(TASK, "k", "2", write_id="slow-1", if_version=1)
    finally:
        release.set()
        timer.cancel()
        thread.join(30)
        copy_backend.close()
    assert outcome == [None]
    item = backend.get_item(TASK, "k")
    assert item is not None
    assert (item.value, item.version) == ("2", 2)
    assert _receipts(backend) == 1


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
