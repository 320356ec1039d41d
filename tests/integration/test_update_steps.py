"""``update()`` in the metastore's steady state takes the short steps (``KeyUpdater``)
and ends exactly where the general path would: same values, versions, provenance and
expiry, and the same errors for what the short steps hand back to the general path
(an absent or expired key, an inactive asset, the last attempt's lost race).

Every database, sync and async; the steps taken are counted, so a test fails if the
short path quietly stops being used -- or is used where it must not be.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from sqlalchemy.engine import URL

from statestore import InactiveAssetError, StateStore, TaskScope, VersionConflictError
from statestore.metastore.key_updates import KeyUpdater

TASK = TaskScope("dag", "run", "task")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many reads and writes went through a ``KeyUpdater``, and how many of those
    writes replaced the key."""
    counted = {"read": 0, "write": 0, "replaced": 0}
    read, written = KeyUpdater.read, KeyUpdater.written

    def counted_read(self: KeyUpdater) -> Any:
        counted["read"] += 1
        return read(self)

    def counted_written(self: KeyUpdater, rowcount: int, version: int) -> bool:
        counted["write"] += 1
        replaced = written(self, rowcount, version)
        counted["replaced"] += replaced
        return replaced

    monkeypatch.setattr(KeyUpdater, "read", counted_read)
    monkeypatch.setattr(KeyUpdater, "written", counted_written)
    return counted


def _warm(state: Any, steps: dict[str, int], value: Any = 0) -> None:
    """Write ``value`` and read it back: the schema is checked and an asset's id known
    (an asset read learns its id only from a row it finds). Counts start again."""
    state.set("n", value)
    assert state.get("n") == value
    steps.update(read=0, write=0, replaced=0)


@pytest.fixture
def db(migrated_url: URL) -> Iterator[StateStore]:
    with StateStore(migrated_url.render_as_string(hide_password=False), updated_by="w1") as s:
        yield s


def test_steady_updates_take_the_short_steps(db: StateStore, steps: dict[str, int]) -> None:
    task, asset = db.task_state(TASK), db.asset_state("orders")
    assert task.update("n", lambda n: n + 1, default=0) == 1  # a fresh store: general path
    assert asset.update("n", lambda n: n + 1, default=0) == 1
    assert steps == {"read": 0, "write": 0, "replaced": 0}
    assert task.update("n", lambda n: n + 1) == 2  # schema checked: a task takes them now
    assert asset.update("n", lambda n: n + 1) == 2  # its first read found a row: its id
    assert steps == {"read": 1, "write": 1, "replaced": 1}
    for expected in range(3, 6):
        assert task.update("n", lambda n: n + 1) == expected
        assert asset.update("n", lambda n: n + 1) == expected
    assert steps == {"read": 7, "write": 7, "replaced": 7}
    for state in (task, asset):
        item = state.get_item("n")
        assert item is not None
        assert (item.value, item.version, item.updated_by) == (5, 5, "w1")


def test_retention_is_applied_as_set_applies_it(db: StateStore, steps: dict[str, int]) -> None:
    state = db.task_state(TASK)
    _warm(state, steps)
    with time_machine.travel(T0, tick=False):
        state.set("k", {"a": 1}, retention=timedelta(hours=1))
        state.update("k", lambda v: {**v, "b": 2}, retention=timedelta(days=2))
        item = state.get_item("k")
        assert item is not None
        assert item.expires_at == T0 + timedelta(days=2)
        assert (item.value, item.version) == ({"a": 1, "b": 2}, 2)
        state.update("k", lambda v: {**v, "c": 3})  # None: the store's default retention
        item = state.get_item("k")
        assert item is not None
        assert item.expires_at == T0 + timedelta(days=db.config.state_store.default_retention_days)
    assert steps["replaced"] == 2


def test_an_expired_key_updates_from_the_default(db: StateStore, steps: dict[str, int]) -> None:
    state = db.task_state(TASK)
    _warm(state, steps)
    with time_machine.travel(T0, tick=False):
        state.set("k", 41, retention=timedelta(hours=1))
    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        assert state.update("k", lambda n: n + 1, default=0) == 1
        item = state.get_item("k")
        assert item is not None
        assert (item.value, item.version) == (1, 2)  # as set(if_version=0) over it: 1 -> 2
    assert steps == {"read": 1, "write": 0, "replaced": 0}  # read as absent: created anew


def test_an_inactive_asset_is_refused_and_keeps_its_value(
    db: StateStore, steps: dict[str, int]
) -> None:
    state = db.asset_state("orders")
    _warm(state, steps, 1)
    assert state.update("n", lambda n: n + 1) == 2
    assert steps["replaced"] == 1
    db.deactivate_assets("orders")
    with pytest.raises(InactiveAssetError):
        state.update("n", lambda n: n + 1)
    item = state.get_item("n")
    assert item is not None  # as with set(): the row stays, unchanged, until cleanup
    assert (item.value, item.version) == (2, 2)


def test_the_last_lost_race_says_what_the_key_holds(
    db: StateStore, steps: dict[str, int], migrated_url: URL
) -> None:
    # PostgreSQL's lost write answers the row it lost to (migration 0009): one read in all
    reads = 1 if migrated_url.get_backend_name() == "postgresql" else 3
    for state in (db.task_state(TASK), db.asset_state("orders")):
        _warm(state, steps)

        def meddle(n: int, state: Any = state) -> int:
            state.set("n", n + 100)  # someone else writes between the read and the write
            return n + 1

        with pytest.raises(VersionConflictError) as lost:
            state.update("n", meddle, retries=2)
        assert state.get("n") == 300  # three attempts, each beaten; none of ours landed
        item = state.get_item("n")
        assert item is not None
        assert lost.value.current_version == item.version
        # Three misses; the last one handed to the general path, which says what won.
        assert steps == {"read": reads, "write": 3, "replaced": 0}
        assert lost.value.current is not None


async def test_the_async_twin_takes_the_short_steps_too(
    db: StateStore, steps: dict[str, int]
) -> None:
    task, asset = db.task_state(TASK), db.asset_state("orders")
    _warm(task, steps)
    _warm(asset, steps)
    try:
        for expected in range(1, 5):
            assert await task.aupdate("n", lambda n: n + 1, default=0) == expected
            assert await asset.aupdate("n", lambda n: n + 1, default=0) == expected
        assert steps == {"read": 8, "write": 8, "replaced": 8}
        db.deactivate_assets("orders")
        with pytest.raises(InactiveAssetError):
            await asset.aupdate("n", lambda n: n + 1)
        item = await task.aget_item("n")
        assert item is not None
        assert (item.value, item.version, item.updated_by) == (4, 5, "w1")
    finally:
        await db.aclose()


def test_a_subclass_that_overrides_the_item_calls_gets_update_through_them(
    migrated_url: URL, steps: dict[str, int]
) -> None:
    """The short steps are the metastore's own; a subclass that audits ``set_item``
    must see every write ``update`` makes."""
    from statestore import MetastoreStateBackend

    audited: list[tuple[str, int | None]] = []

    class Audited(MetastoreStateBackend):
        def set_item(self, scope: Any, key: str, value: str, **kwargs: Any) -> None:
            audited.append((key, kwargs.get("if_version")))
            super().set_item(scope, key, value, **kwargs)

    with StateStore(backend=Audited(migrated_url)) as store:
        state = store.asset_state("orders")
        _warm(state, steps)
        assert [state.update("n", lambda n: n + 1) for _ in range(3)] == [1, 2, 3]
    assert audited == [("n", None), ("n", 1), ("n", 2), ("n", 3)]
    assert steps == {"read": 0, "write": 0, "replaced": 0}
