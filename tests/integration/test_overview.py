"""The overview's aggregates on every dialect, checked against what was written."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL

from statestore import NEVER_EXPIRE, StateStore, TaskScope
from statestore.codec import encode_value
from statestore.metastore import upgrade
from statestore.metastore.backend import MetastoreStateBackend
from statestore.metastore.overview import (
    DayCount,
    Overview,
    OverviewScope,
    afetch_overview,
    fetch_overview,
    read_overview,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(hours=1)
EVERYTHING = OverviewScope(everything=True)
A = TaskScope("dag_a", "run1", "load", -1)
B0 = TaskScope("dag_b", "run1", "map", 0)
B1 = TaskScope("dag_b", "run1", "map", 1)
BIG = {"rows": list(range(300)), "note": "é" * 50}  # multi-byte: bytes > characters


def size(value: Any) -> int:
    return len(encode_value(value, max_bytes=0).encode())


@pytest.fixture
def store(migrated_url: URL) -> Iterator[StateStore]:
    with StateStore(migrated_url.render_as_string(hide_password=False)) as store:
        with time_machine.travel(T0 - timedelta(days=2), tick=False):
            a = store.task_state(A)
            a.set("x", 1, retention=NEVER_EXPIRE)
            a.set("y", "two", retention=timedelta(hours=1))  # expired by NOW
            a.set("big", BIG, retention=timedelta(days=5))  # T0 + 3 days
        with time_machine.travel(T0, tick=False):
            store.task_state(B0).set("k", [1, 2, 3], retention=timedelta(hours=6))  # today
            store.task_state(B1).set("k", {"a": None}, retention=timedelta(days=1))  # tomorrow
            store.asset_state("orders").set("wm", "2026-11-19")
            store.asset_state("orders").set("cursor", 42)
            store.asset_state("events").set("seen", [True])
        yield store


def _backend(store: StateStore) -> MetastoreStateBackend:
    backend = store.primary_backend
    assert isinstance(backend, MetastoreStateBackend)
    return backend


def _days(overview: Overview) -> dict[date, int]:
    return {d.day: d.keys for d in overview.expiry.days if d.keys}


def test_admin_overview_counts_every_key(store: StateStore) -> None:
    o = fetch_overview(_backend(store), EVERYTHING, NOW, days=7)
    sizes_a = size(1) + size("two") + size(BIG)
    sizes_b = size([1, 2, 3]) + size({"a": None})
    assert (o.task_keys, o.task_bytes) == (5, sizes_a + sizes_b)
    assert [(g.name, g.keys, g.bytes) for g in o.dags] == [
        ("dag_a", 3, sizes_a), ("dag_b", 2, sizes_b),
    ]  # fmt: skip
    orders = size("2026-11-19") + size(42)
    assert [(g.name, g.keys, g.bytes) for g in o.assets] == sorted(
        [("orders", 2, orders), ("events", 1, size([True]))], key=lambda g: -g[2]
    )
    assert (o.asset_keys, o.keys, o.bytes) == (3, 8, o.task_bytes + orders + size([True]))
    # Expiry: asset state never expires (no retention); "y" expired at T0 - 2d + 1h.
    assert (o.expiry.expired, o.expiry.never, o.expiry.later) == (1, 1 + 3, 0)
    today = NOW.date()
    assert _days(o) == {today: 1, today + timedelta(days=1): 1, today + timedelta(days=3): 1}
    assert len(o.expiry.days) == 7
    assert o.expiry.days[0].day == today
    # Writes: 3 keys two days ago, 5 today; the window ends today.
    assert o.writes[-1] == DayCount(today, 5)
    assert o.writes[-3] == DayCount(today - timedelta(days=2), 3)
    assert sum(d.keys for d in o.writes) == 8
    assert o.older_writes == 0
    assert o.largest[0].key == "big"
    assert o.largest[0].bytes == size(BIG)
    assert (o.largest[0].dag_id, o.largest[0].map_index) == ("dag_a", -1)
    assert [v.bytes for v in o.largest] == sorted((v.bytes for v in o.largest), reverse=True)
    assert len(o.largest) == 8
    assert {v.asset for v in o.largest if v.kind == "asset"} == {"orders", "events"}


def test_short_window_counts_older_writes_and_later_expiry(store: StateStore) -> None:
    o = fetch_overview(_backend(store), EVERYTHING, NOW, days=2, largest=2, groups=1)
    assert o.older_writes == 3
    assert sum(d.keys for d in o.writes) == 5
    assert o.expiry.later == 1  # "big" expires on the 4th day
    assert [g.name for g in o.dags] == ["dag_a"]
    assert len(o.largest) == 2
    assert o.task_keys == 5  # totals are not cut by ``groups``


def test_task_scope_sees_only_its_instance_and_assets(store: StateStore) -> None:
    mine = OverviewScope(task=B0, assets=frozenset({"orders"}))
    o = fetch_overview(_backend(store), mine, NOW)
    assert (o.task_keys, o.task_bytes) == (1, size([1, 2, 3]))
    assert [g.name for g in o.dags] == ["dag_b"]
    assert [(g.name, g.keys) for g in o.assets] == [("orders", 2)]
    assert {v.scope for v in o.largest} == {"dag_b/run1/map[0]", "orders"}
    assert (o.expiry.expired, o.expiry.never) == (0, 2)
    every = fetch_overview(_backend(store), OverviewScope(task=B0, all_map_indices=True), NOW)
    assert (every.task_keys, every.asset_keys) == (2, 0)
    nothing = fetch_overview(_backend(store), OverviewScope(), NOW)
    assert (nothing.keys, nothing.dags, nothing.assets, nothing.largest) == (0, (), (), ())
    unknown = OverviewScope(task=TaskScope("no", "such", "task"), assets=frozenset({"nope"}))
    assert fetch_overview(_backend(store), unknown, NOW).keys == 0


def test_async_overview_is_the_same(store: StateStore) -> None:
    backend = _backend(store)
    sync = fetch_overview(backend, EVERYTHING, NOW)

    async def run() -> Overview:
        try:
            return await afetch_overview(backend, EVERYTHING, NOW)
        finally:
            await backend.aclose()

    assert asyncio.run(run()) == sync


def test_index_only_overview_has_counts_and_expiry_but_no_sizes(store: StateStore) -> None:
    full = fetch_overview(_backend(store), EVERYTHING, NOW)
    quick = fetch_overview(_backend(store), EVERYTHING, NOW, complete=False)
    assert full.complete
    assert not quick.complete
    assert (quick.task_keys, quick.asset_keys) == (full.task_keys, full.asset_keys)
    assert sorted((g.name, g.keys) for g in quick.dags) == [("dag_a", 3), ("dag_b", 2)]
    assert sorted((g.name, g.keys) for g in quick.assets) == [("events", 1), ("orders", 2)]
    assert quick.expiry == full.expiry
    assert (quick.bytes, quick.largest, quick.writes, quick.older_writes) == (0, (), (), 0)


def test_index_only_overview_reads_no_table_row_on_sqlite(tmp_path: Path) -> None:
    """Every statement of the index-only answer is answered by an index alone (SQLite's
    plan says so): nothing reads the state tables' rows on a request."""
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    engine = create_engine(url)
    seen: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, sql: str, params: Any, *_: Any) -> None:
        if not sql.startswith("EXPLAIN"):
            seen.append((sql, params))

    try:
        with engine.connect() as conn:
            read_overview(conn, EVERYTHING, NOW, complete=False)
            plans = [
                " | ".join(
                    str(row[3]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
                )
                for sql, params in seen
                if "statestore_task_state" in sql or "statestore_asset_state" in sql
            ]
    finally:
        engine.dispose()
    assert len(plans) == 4  # keys per dag, keys per asset, two expiry histograms
    for plan in plans:
        steps = plan.split(" | ")
        for step in steps:
            if "statestore_task_state" in step or "statestore_asset_state" in step:
                assert "USING COVERING INDEX" in step, plan


def test_the_twins_take_the_same_parameters() -> None:
    import inspect

    def shape(function: Any) -> list[tuple[str, Any, Any]]:
        return [
            (p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()
        ]

    assert shape(fetch_overview) == shape(afetch_overview)
    assert inspect.iscoroutinefunction(afetch_overview)
