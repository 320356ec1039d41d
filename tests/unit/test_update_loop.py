"""The loop behind ``update()`` (items.run_update / arun_update), without a database.

What a lost race costs there: one read and one write. A conflict that carries the row
the backend read is re-applied to without reading; one reported unread (inside
``update``, see ``unread_conflicts_allowed``) is followed by one read after the pause.
The last attempt, and one after a write that failed with no other write seen, ask the
backend for the exact reason.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from statestore import VersionConflictError, items
from statestore.access_core import to_item
from statestore.items import (
    StateItem,
    StoredItem,
    arun_update,
    conflict,
    known_current,
    run_update,
    unread_conflict,
    unread_conflicts_allowed,
    update_pause,
)
from statestore.scopes import AssetScope

SCOPE = AssetScope(name="orders")
T = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _stored(value: int, version: int) -> StoredItem:
    return StoredItem(str(value), version, T, None, None)


class Rival:
    """A key that others keep writing: ``wins`` lost races, then the write lands."""

    def __init__(self, wins: int, *, carry: bool) -> None:
        self.value, self.version, self.wins, self.carry = 0, 1, wins, carry
        self.reads = 0
        self.writes: list[tuple[Any, int, bool]] = []

    def read(self) -> StateItem | None:
        self.reads += 1
        return to_item(_stored(self.value, self.version))

    def write(self, new: Any, expected: int) -> None:
        self.writes.append((new, expected, unread_conflicts_allowed()))
        if self.wins:
            self.wins -= 1
            self.value, self.version = self.value + 10, self.version + 1  # someone else won
            if self.carry or not unread_conflicts_allowed():
                live = _stored(self.value, self.version)
                raise conflict(SCOPE, "n", expected, self.version, live)
            raise unread_conflict(SCOPE, "n", expected)
        assert expected == self.version
        self.value, self.version = new, self.version + 1


@pytest.fixture(autouse=True)
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The update loop's pauses, recorded and not slept. Only the loop's own pause is
    replaced: patching time.sleep or asyncio.sleep would also catch every other thread
    or task that sleeps meanwhile (the statement watchdog does)."""
    pauses: list[float] = []
    chosen = items.update_pause

    def recorded(attempt: int) -> float:
        pauses.append(chosen(attempt))
        return 0.0

    monkeypatch.setattr(items, "update_pause", recorded)
    return pauses


def _inc(n: int) -> int:
    return n + 1


@pytest.mark.parametrize("carry", [True, False])
def test_each_lost_race_costs_one_read_and_one_write(carry: bool, pauses: list[float]) -> None:
    key = Rival(wins=3, carry=carry)
    assert run_update(key.read, key.write, _inc, 0, 10, to_item) == 31
    assert (key.value, key.version) == (31, 5)
    assert len(key.writes) == 4
    assert key.reads == (1 if carry else 4)  # carried rows need no read; unread ones do
    assert [w[1] for w in key.writes] == [1, 2, 3, 4]  # each at the version just seen
    assert len(pauses) == 3
    assert all(0 <= p <= 0.001 * 2**i for i, p in enumerate(pauses))  # jittered, growing


async def test_the_async_twin_counts_the_same(pauses: list[float]) -> None:
    key = Rival(wins=3, carry=False)

    async def read() -> StateItem | None:
        return key.read()

    async def write(new: Any, expected: int) -> None:
        key.write(new, expected)

    assert await arun_update(read, write, _inc, 0, 10, to_item) == 31
    assert (key.reads, len(key.writes), len(pauses)) == (4, 4, 3)


def test_the_last_attempt_asks_for_the_exact_conflict() -> None:
    key = Rival(wins=5, carry=False)
    with pytest.raises(VersionConflictError) as lost:
        run_update(key.read, key.write, _inc, 0, 2, to_item)
    assert [w[2] for w in key.writes] == [True, True, False]
    assert lost.value.current_version == key.version  # a real answer, not None
    assert key.value == 30  # only the rival's writes landed


def test_no_retries_means_an_exact_conflict_at_once() -> None:
    key = Rival(wins=1, carry=False)
    with pytest.raises(VersionConflictError) as lost:
        run_update(key.read, key.write, _inc, 0, 0, to_item)
    assert key.writes == [(1, 1, False)]
    assert lost.value.current_version == 2


def test_a_write_that_lost_to_nobody_asks_why_next_time() -> None:
    reads: list[int] = []
    writes: list[bool] = []

    def read() -> StateItem | None:
        reads.append(1)
        return to_item(_stored(7, 3))  # nobody else writes: the version stays

    def write(new: Any, expected: int) -> None:
        writes.append(unread_conflicts_allowed())
        if unread_conflicts_allowed():
            raise unread_conflict(SCOPE, "n", expected)
        raise LookupError("the asset is inactive")  # the exact reason, on request

    with pytest.raises(LookupError):
        run_update(read, write, _inc, 0, 10, to_item)
    assert writes == [True, False]
    assert len(reads) == 2


def test_known_current_trusts_only_a_consistent_answer() -> None:
    assert known_current(conflict(SCOPE, "n", 1, 0))  # absent
    assert known_current(conflict(SCOPE, "n", 1, 4, _stored(1, 4)))
    assert not known_current(conflict(SCOPE, "n", 1, 4))  # a version but no row
    assert not known_current(unread_conflict(SCOPE, "n", 1))
    assert not known_current(VersionConflictError("x", current_version=4, current=_stored(1, 3)))
    assert unread_conflict(SCOPE, "n", 3).current_version is None
    assert not unread_conflicts_allowed()  # only while update's own write runs


def test_pauses_grow_and_stay_bounded() -> None:
    for attempt in range(20):
        drawn = [update_pause(attempt) for _ in range(50)]
        assert all(0 <= p <= 0.001 * 2 ** min(attempt, 6) for p in drawn)
        assert len(set(drawn)) > 1  # jittered
