"""Async get/set: statestore's async twins against the raw async driver."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import make_url

from benchmarks.targets import _SQL, _ids
from statestore import StateStore, StateStoreConfig, TaskScope

__all__ = ["run_async"]


async def _raw_connection(dialect: str, url: str, *, prepared: bool = True) -> Any:
    parsed = make_url(url)
    if dialect == "sqlite":
        import aiosqlite

        conn = await aiosqlite.connect(parsed.database or "", isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        return conn
    if dialect == "postgresql":
        import psycopg

        options = parsed.query.get("options")
        pg: Any = await psycopg.AsyncConnection.connect(
            host=parsed.host, port=parsed.port or 5432, user=parsed.username,
            password=parsed.password, dbname=parsed.database, autocommit=True,
            **({"options": str(options)} if options else {}),  # type: ignore[arg-type]
        )  # fmt: skip
        if not prepared:  # as statestore's default: never prepared on the server
            pg.prepare_threshold = None
        return pg
    import asyncmy

    return await asyncmy.connect(
        host=parsed.host, port=parsed.port or 3306, user=parsed.username,
        password=parsed.password or "", database=parsed.database, autocommit=True,
        charset="utf8mb4",
    )  # fmt: skip


def _now(dialect: str) -> Any:
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    if dialect == "sqlite":
        return now.replace(tzinfo=None).isoformat(sep=" ")
    return now if dialect == "postgresql" else now.replace(tzinfo=None)


async def run_async(
    dialect: str, url: str, n: int, round_no: int, value: Any
) -> dict[tuple[str, str], tuple[float, list[int]]]:
    results: dict[tuple[str, str], tuple[float, list[int]]] = {}
    config = StateStoreConfig(database={"url": url}, state_store={"default_retention_days": 0})
    store = StateStore(config=config)
    state = store.task_state(TaskScope("statestore_async", "run", "task"))
    conn = await _raw_connection(dialect, url)
    # PostgreSQL: also psycopg without server-side preparing, statestore's default mode.
    unprepared = None
    if dialect == "postgresql":
        unprepared = await _raw_connection(dialect, url, prepared=False)
    upsert, select, _ = _SQL[dialect]
    name = "raw_async"

    async def raw_set(key: str, conn: Any = conn) -> None:
        row, task = _ids(name, key)
        params = (row, task, name, "run", "task", -1, key, json.dumps(value), None, _now(dialect))
        if dialect == "sqlite":
            await conn.execute(upsert, params)
        else:
            async with conn.cursor() as cursor:
                await cursor.execute(upsert, params)

    async def raw_get(key: str, conn: Any = conn) -> Any:
        row, _ = _ids(name, key)
        if dialect == "sqlite":
            async with conn.execute(select, (row, _now(dialect))) as cursor:
                found = await cursor.fetchone()
        else:
            async with conn.cursor() as cursor:
                await cursor.execute(select, (row, _now(dialect)))
                found = await cursor.fetchone()
        return None if found is None else json.loads(found[0])

    try:
        for i in range(20):
            await state.aset(f"warm{i}", value)
            await raw_set(f"warm{i}")
        ops: dict[tuple[str, str], Callable[[int], Awaitable[Any]]] = {
            ("async set", "statestore"): lambda i: state.aset(f"r{round_no}k{i}", value),
            ("async set", name): lambda i: raw_set(f"r{round_no}k{i}"),
            ("async get", "statestore"): lambda i: state.aget(f"r{round_no}k{i}"),
            ("async get", name): lambda i: raw_get(f"r{round_no}k{i}"),
        }
        if unprepared is not None:
            ops[("async set", "raw_async_unprepared")] = lambda i: raw_set(
                f"u{round_no}k{i}", unprepared
            )
            ops[("async get", "raw_async_unprepared")] = lambda i: raw_get(
                f"u{round_no}k{i}", unprepared
            )
        for key, op in ops.items():
            latencies = []
            started = time.perf_counter_ns()
            for i in range(n):
                t0 = time.perf_counter_ns()
                await op(i)
                latencies.append(time.perf_counter_ns() - t0)
            results[key] = (n / ((time.perf_counter_ns() - started) / 1e9), latencies)
    finally:
        await conn.close() if dialect != "mysql" else conn.close()
        if unprepared is not None:
            await unprepared.close()
        await store.aclose()
    return results
