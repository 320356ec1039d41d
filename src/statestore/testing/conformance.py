"""The conformance scenarios, written once and run through the sync or the async API.

Each scenario is an ``async`` function over a tiny adapter: the sync suite's adapter
calls ``get/set/delete/clear`` (run to completion inside ``asyncio.run``), the async
suite's adapter awaits ``aget/aset/adelete/aclear``. So both APIs are held to exactly
the same behaviour, with no copy of a scenario to drift.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import pytest

from statestore.backends.base import BaseStateBackend
from statestore.scopes import AssetScope, StateScope, TaskScope
from statestore.testing.scopes import make_task_scope

__all__ = ["AsyncBackendConformance", "BackendConformance"]


class Ops(Protocol):
    """The four operations, uniformly awaitable."""

    async def get(self, scope: StateScope, key: str) -> str | None: ...
    async def set(
        self, scope: StateScope, key: str, value: str, expires_at: datetime | None = None
    ) -> None: ...
    async def delete(self, scope: StateScope, key: str) -> None: ...
    async def clear(self, scope: StateScope, all_map_indices: bool = False) -> None: ...


class SyncOps:
    """Drives the backend's sync methods."""

    def __init__(self, backend: BaseStateBackend) -> None:
        self.backend = backend

    async def get(self, scope: StateScope, key: str) -> str | None:
        return self.backend.get(scope, key)

    async def set(
        self, scope: StateScope, key: str, value: str, expires_at: datetime | None = None
    ) -> None:
        self.backend.set(scope, key, value, expires_at=expires_at)

    async def delete(self, scope: StateScope, key: str) -> None:
        self.backend.delete(scope, key)

    async def clear(self, scope: StateScope, all_map_indices: bool = False) -> None:
        self.backend.clear(scope, all_map_indices=all_map_indices)


class AsyncOps:
    """Drives the backend's async methods."""

    def __init__(self, backend: BaseStateBackend) -> None:
        self.backend = backend

    async def get(self, scope: StateScope, key: str) -> str | None:
        return await self.backend.aget(scope, key)

    async def set(
        self, scope: StateScope, key: str, value: str, expires_at: datetime | None = None
    ) -> None:
        await self.backend.aset(scope, key, value, expires_at=expires_at)

    async def delete(self, scope: StateScope, key: str) -> None:
        await self.backend.adelete(scope, key)

    async def clear(self, scope: StateScope, all_map_indices: bool = False) -> None:
        await self.backend.aclear(scope, all_map_indices=all_map_indices)


TASK = make_task_scope()
ASSET = AssetScope(name="orders", uri="s3://bucket/orders")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- the scenarios ---------------------------------------------------------------------------


async def missing_key_reads_none(ops: Ops) -> None:
    assert await ops.get(TASK, "absent") is None
    assert await ops.get(ASSET, "absent") is None


async def round_trip_and_overwrite(ops: Ops) -> None:
    for scope in (TASK, ASSET):
        await ops.set(scope, "k", '"first"')
        assert await ops.get(scope, "k") == '"first"'
        await ops.set(scope, "k", '{"second":[1,2]}')
        assert await ops.get(scope, "k") == '{"second":[1,2]}'


async def delete_is_exact_and_idempotent(ops: Ops) -> None:
    for scope in (TASK, ASSET):
        await ops.set(scope, "a", "1")
        await ops.set(scope, "b", "2")
        await ops.delete(scope, "a")
        await ops.delete(scope, "a")  # missing: a no-op
        await ops.delete(scope, "never-set")
        assert await ops.get(scope, "a") is None
        assert await ops.get(scope, "b") == "2"


async def clear_one_map_index_or_all(ops: Ops) -> None:
    mapped = [make_task_scope(map_index=i) for i in range(3)]
    unmapped = make_task_scope()
    neighbours = [
        make_task_scope(task_id="other"),
        make_task_scope(run_id="other"),
        make_task_scope(dag_id="other"),
    ]
    for scope in [*mapped, unmapped, *neighbours]:
        await ops.set(scope, "k", "1")
        await ops.set(scope, "j", "2")
    await ops.clear(mapped[1])
    assert [await ops.get(s, "k") for s in mapped] == ["1", None, "1"]
    assert await ops.get(unmapped, "k") == "1"
    await ops.clear(mapped[0], all_map_indices=True)
    assert [await ops.get(s, "k") for s in [*mapped, unmapped]] == [None] * 4
    assert [await ops.get(s, "j") for s in neighbours] == ["2"] * 3


async def clear_asset_and_empty_scopes(ops: Ops) -> None:
    other = AssetScope(name="other")
    await ops.clear(make_task_scope(dag_id="empty"))
    await ops.clear(AssetScope(name="empty"))
    await ops.set(ASSET, "k", "1")
    await ops.set(other, "k", "2")
    await ops.clear(ASSET)
    assert await ops.get(ASSET, "k") is None
    assert await ops.get(other, "k") == "2"
    await ops.set(ASSET, "k", "3")  # a cleared asset can be written again
    assert await ops.get(ASSET, "k") == "3"


async def scopes_never_collide(ops: Ops) -> None:
    scopes: list[StateScope] = [
        make_task_scope(),
        make_task_scope(map_index=0),
        make_task_scope(map_index=1),
        make_task_scope(task_id="task2"),
        make_task_scope(run_id="run2"),
        make_task_scope(dag_id="dag2"),
        # Separator tricks: ids that would collide if joined naively.
        make_task_scope(dag_id="dag/run", run_id="task", task_id="x"),
        make_task_scope(dag_id="dag", run_id="run/task", task_id="x"),
        AssetScope(name="dag"),  # an asset named like a dag id is still asset state
        AssetScope(name="task"),
        AssetScope(name="orders2"),
    ]
    for i, scope in enumerate(scopes):
        await ops.set(scope, "key", str(i))
    assert [await ops.get(s, "key") for s in scopes] == [str(i) for i in range(len(scopes))]


async def keys_are_exact(ops: Ops) -> None:
    keys = [
        "Key", "key", "KEY", "k", "k ", " k", "k\t", "😀", "😁",
        "é", "e\u0301",  # NFC and NFD spellings are different keys
        "ß", "ss", "k" * 512, "k" * 511, "%", "_", "'; DROP TABLE x; --",
    ]  # fmt: skip
    for scope in (TASK, ASSET):
        for i, key in enumerate(keys):
            await ops.set(scope, key, str(i))
        assert [await ops.get(scope, k) for k in keys] == [str(i) for i in range(len(keys))]


async def long_ids_and_names(ops: Ops) -> None:
    scope = TaskScope("d" * 250, "r" * 250, "t" * 250, 2**31 - 1)
    asset = AssetScope(name="n" * 1500, uri="u" * 1500)
    await ops.set(scope, "k" * 512, "1")
    await ops.set(asset, "k" * 512, "2")
    assert await ops.get(scope, "k" * 512) == "1"
    assert await ops.get(asset, "k" * 512) == "2"


async def values_are_stored_exactly(ops: Ops) -> None:
    values = [
        '"😀 ünïcode \\u0000 \\n \\" \' %s {}"',
        '{"a":[1,2.5,true,null,{"b":-0.0}],"big":123456789012345678901234567890}',
        "[" + ",".join(f'"{i:05}"' for i in range(6000)) + "]",  # ~50 KB
    ]
    for i, value in enumerate(values):
        await ops.set(TASK, f"v{i}", value)
        await ops.set(ASSET, f"v{i}", value)
    for i, value in enumerate(values):
        assert await ops.get(TASK, f"v{i}") == value
        assert await ops.get(ASSET, f"v{i}") == value


async def expiry_is_honoured_on_read(ops: Ops) -> None:
    now = _now()
    await ops.set(TASK, "past", "1", now - timedelta(seconds=1))
    await ops.set(TASK, "future", "2", now + timedelta(hours=1))
    await ops.set(TASK, "never", "3", None)
    assert await ops.get(TASK, "past") is None
    assert await ops.get(TASK, "future") == "2"
    assert await ops.get(TASK, "never") == "3"
    await ops.set(TASK, "past", "4")  # overwriting resets the expiry
    assert await ops.get(TASK, "past") == "4"
    await ops.set(TASK, "future", "5", now - timedelta(microseconds=1))
    assert await ops.get(TASK, "future") is None


async def asset_identity_by_name_or_uri(ops: Ops) -> None:
    await ops.set(AssetScope(name="sales", uri="s3://bucket/sales"), "wm", '"2024"')
    assert await ops.get(AssetScope(name="sales"), "wm") == '"2024"'
    assert await ops.get(AssetScope(uri="s3://bucket/sales"), "wm") == '"2024"'
    await ops.set(AssetScope(uri="s3://bucket/sales"), "wm", '"2025"')
    assert await ops.get(AssetScope(name="sales"), "wm") == '"2025"'


SCENARIOS: list[Callable[[Ops], Awaitable[None]]] = [
    missing_key_reads_none,
    round_trip_and_overwrite,
    delete_is_exact_and_idempotent,
    clear_one_map_index_or_all,
    clear_asset_and_empty_scopes,
    scopes_never_collide,
    keys_are_exact,
    long_ids_and_names,
    values_are_stored_exactly,
    expiry_is_honoured_on_read,
    asset_identity_by_name_or_uri,
]


def _check_concurrent_result(read: Callable[[StateScope, str], Any], writers: int) -> None:
    hot = read(TASK, "hot")
    assert hot in {f"{w}:{i}" for w in range(writers) for i in range(_WRITES)}
    for w in range(writers):
        assert read(make_task_scope(map_index=w), "own") == f"{w}:{_WRITES - 1}"


_WRITES = 40


class BackendConformance:
    """Every behaviour of the contract, through the backend's **sync** methods.

    Subclass it as ``TestSomething`` and provide a ``backend`` fixture.
    """

    def _run(self, backend: BaseStateBackend, scenario: Callable[[Ops], Awaitable[None]]) -> None:
        async def main() -> None:
            await scenario(SyncOps(backend))

        asyncio.run(main())

    @pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
    def test_scenario(
        self, backend: BaseStateBackend, scenario: Callable[[Ops], Awaitable[None]]
    ) -> None:
        self._run(backend, scenario)

    def test_concurrent_writers_from_threads(self, backend: BaseStateBackend) -> None:
        errors: list[BaseException] = []

        def writer(w: int) -> None:
            try:
                for i in range(_WRITES):
                    backend.set(TASK, "hot", f"{w}:{i}")
                    backend.set(make_task_scope(map_index=w), "own", f"{w}:{i}")
                    backend.set(ASSET, "hot", f"{w}:{i}")
            except BaseException as exc:  # noqa: BLE001 - asserted empty below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        _check_concurrent_result(backend.get, 8)


class AsyncBackendConformance:
    """Every behaviour of the contract, through the backend's **async** methods.

    Subclass it as ``TestSomething`` and provide a ``backend`` fixture (sync or async).
    """

    @pytest.mark.asyncio
    @pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
    async def test_scenario(
        self, backend: BaseStateBackend, scenario: Callable[[Ops], Awaitable[None]]
    ) -> None:
        await scenario(AsyncOps(backend))

    @pytest.mark.asyncio
    async def test_concurrent_tasks(self, backend: BaseStateBackend) -> None:
        async def writer(w: int) -> None:
            for i in range(_WRITES):
                await backend.aset(TASK, "hot", f"{w}:{i}")
                await backend.aset(make_task_scope(map_index=w), "own", f"{w}:{i}")
                await backend.aset(ASSET, "hot", f"{w}:{i}")

        await asyncio.gather(*(writer(w) for w in range(8)))
        results: dict[tuple[StateScope, str], str | None] = {}
        for scope, key in [(TASK, "hot")] + [
            (make_task_scope(map_index=w), "own") for w in range(8)
        ]:
            results[(scope, key)] = await backend.aget(scope, key)
        _check_concurrent_result(lambda scope, key: results[(scope, key)], 8)
