"""The conformance suite through a backend's **async** methods: ``aget/aset/adelete/aclear``.

The same tests as :mod:`.conformance`, differing only by ``await``, plus concurrent
writers as asyncio tasks. Each test is marked ``@pytest.mark.asyncio`` explicitly, so
the suite runs whatever ``asyncio_mode`` the project using it has chosen.
"""

from __future__ import annotations

import asyncio

import pytest

from statestore.backends.base import BaseStateBackend
from statestore.scopes import StateScope
from statestore.testing.batch_conformance import AsyncBatchConformance
from statestore.testing.capabilities import AsyncCapabilityConformance
from statestore.testing.cases import distinct, utc_now

__all__ = ["AsyncBackendConformance"]


class AsyncBackendConformance(AsyncCapabilityConformance, AsyncBatchConformance):
    """Every behaviour ``BaseStateBackend`` promises, through its async methods.

    Subclass it as ``class TestMyBackendAsync(AsyncBackendConformance)`` and provide a
    ``backend`` fixture: sync, or async (``@pytest_asyncio.fixture`` in strict mode).
    Only the fixture's value is used. The tests never call a sync method.
    """

    # -- get / set / overwrite -------------------------------------------------------

    @pytest.mark.asyncio
    async def test_get_missing_key_returns_none(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            assert await backend.aget(scope, "absent") is None

    @pytest.mark.asyncio
    async def test_set_then_get_round_trips(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            await backend.aset(scope, "k", '{"rows":3}')
            assert await backend.aget(scope, "k") == '{"rows":3}'

    @pytest.mark.asyncio
    async def test_overwrite_last_writer_wins(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            await backend.aset(scope, "k", '"first"')
            await backend.aset(scope, "k", '"second"')
            await backend.aset(scope, "k", "3")
            assert await backend.aget(scope, "k") == "3"

    # -- delete ------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_delete_removes_only_that_key(self, backend: BaseStateBackend) -> None:
        other_task = self.task_scope(map_index=0)
        other_asset = self.asset_scope("other-asset")
        for scope in (*self.both_kinds(), other_task, other_asset):
            await backend.aset(scope, "a", "1")
            await backend.aset(scope, "b", "2")
        for scope in self.both_kinds():
            await backend.adelete(scope, "a")
            assert await backend.aget(scope, "a") is None
            assert await backend.aget(scope, "b") == "2"
        assert await backend.aget(other_task, "a") == "1"
        assert await backend.aget(other_asset, "a") == "1"

    @pytest.mark.asyncio
    async def test_delete_missing_is_a_noop(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            await backend.adelete(scope, "never-set")  # unknown scope and key
            await backend.aset(scope, "k", "1")
            await backend.adelete(scope, "k")
            await backend.adelete(scope, "k")  # already gone
            await backend.adelete(scope, "never-set")  # known scope, unknown key
            assert await backend.aget(scope, "k") is None

    @pytest.mark.asyncio
    async def test_deleted_key_can_be_set_again(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            await backend.aset(scope, "k", "1")
            await backend.adelete(scope, "k")
            await backend.aset(scope, "k", "2")
            assert await backend.aget(scope, "k") == "2"

    # -- clear -------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_clear_this_map_index_only(self, backend: BaseStateBackend) -> None:
        mapped = [self.task_scope(map_index=i) for i in range(3)]
        unmapped = self.task_scope()
        for scope in [*mapped, unmapped]:
            await backend.aset(scope, "k", "1")
            await backend.aset(scope, "j", "2")
        await backend.aclear(mapped[1])
        assert [await backend.aget(s, "k") for s in mapped] == ["1", None, "1"]
        assert [await backend.aget(s, "j") for s in mapped] == ["2", None, "2"]
        assert await backend.aget(unmapped, "k") == "1"
        await backend.aclear(unmapped)
        assert await backend.aget(unmapped, "k") is None
        assert await backend.aget(mapped[0], "k") == "1"

    @pytest.mark.asyncio
    async def test_clear_all_map_indices(self, backend: BaseStateBackend) -> None:
        mapped = [self.task_scope(map_index=i) for i in (-1, 0, 1, 7)]
        base = self.task_scope()
        others = [
            self.task_scope(task_id=base.task_id + "2", map_index=0),
            self.task_scope(run_id=base.run_id + "2", map_index=0),
            self.task_scope(dag_id=base.dag_id + "2", map_index=0),
        ]
        asset = self.asset_scope(base.task_id)
        everything: list[StateScope] = [*mapped, *others, asset]
        for scope in everything:
            await backend.aset(scope, "k", "1")
        await backend.aclear(self.task_scope(map_index=1), all_map_indices=True)
        assert [await backend.aget(s, "k") for s in mapped] == [None] * len(mapped)
        assert [await backend.aget(s, "k") for s in others] == ["1"] * len(others)
        assert await backend.aget(asset, "k") == "1"

    @pytest.mark.asyncio
    async def test_clear_empty_scope_is_a_noop(self, backend: BaseStateBackend) -> None:
        await backend.aclear(self.task_scope(dag_id="empty"))
        await backend.aclear(self.task_scope(dag_id="empty"), all_map_indices=True)
        await backend.aclear(self.asset_scope("empty"))
        await backend.aset(self.task_scope(), "k", "1")
        await backend.aclear(self.task_scope(map_index=0))  # same task, another (empty) index
        assert await backend.aget(self.task_scope(), "k") == "1"

    @pytest.mark.asyncio
    async def test_clear_asset(self, backend: BaseStateBackend) -> None:
        asset, other = self.asset_scope("cleared"), self.asset_scope("kept")
        task = self.task_scope(dag_id="cleared")
        for scope in (asset, other, task):
            await backend.aset(scope, "k", "1")
            await backend.aset(scope, "j", "2")
        await backend.aclear(asset)
        assert [await backend.aget(asset, "k"), await backend.aget(asset, "j")] == [None, None]
        assert await backend.aget(other, "k") == "1"
        assert await backend.aget(task, "k") == "1"
        await backend.aset(asset, "k", "3")  # a cleared asset can be written again
        assert await backend.aget(asset, "k") == "3"

    # -- isolation and exactness -------------------------------------------------------

    @pytest.mark.asyncio
    async def test_task_scopes_never_collide(self, backend: BaseStateBackend) -> None:
        scopes = distinct([self.task_scope(), *self.neighbour_task_scopes()])
        for i, scope in enumerate(scopes):
            await backend.aset(scope, "key", str(i))
        assert [await backend.aget(s, "key") for s in scopes] == [
            str(i) for i in range(len(scopes))
        ]

    @pytest.mark.asyncio
    async def test_task_and_asset_state_never_collide(self, backend: BaseStateBackend) -> None:
        task = self.task_scope()
        scopes = distinct([task, *self.assets_named_like_ids()])
        for i, scope in enumerate(scopes):
            await backend.aset(scope, "key", str(i))
        assert [await backend.aget(s, "key") for s in scopes] == [
            str(i) for i in range(len(scopes))
        ]
        await backend.aclear(task, all_map_indices=True)
        assert [await backend.aget(s, "key") for s in scopes[1:]] == [
            str(i) for i in range(1, len(scopes))
        ]
        await backend.aset(task, "key", '"t"')
        for asset in scopes[1:]:
            await backend.aclear(asset)
        assert await backend.aget(task, "key") == '"t"'

    @pytest.mark.asyncio
    async def test_keys_are_exact(self, backend: BaseStateBackend) -> None:
        # A dict, so a failure names the keys that collided.
        expected = {key: str(i) for i, key in enumerate(self.exact_keys)}
        for scope in self.both_kinds():
            for key, value in expected.items():
                await backend.aset(scope, key, value)
            assert {key: await backend.aget(scope, key) for key in expected} == expected
            first, second = self.exact_keys[:2]
            await backend.adelete(scope, first)
            assert await backend.aget(scope, first) is None
            assert await backend.aget(scope, second) == expected[second]

    @pytest.mark.asyncio
    async def test_longest_ids_names_and_keys(self, backend: BaseStateBackend) -> None:
        ids = {"dag_id": "d" * 250, "run_id": "r" * 250, "task_id": "t" * 250}
        scopes: list[StateScope] = [
            self.task_scope(**ids),
            self.task_scope(**ids, map_index=2**31 - 1),
            self.asset_scope("n" * 1500, "u" * 1500),
            self.asset_scope("n" * 1499 + "m"),  # differs in the last character only
        ]
        key = "k" * 512
        for i, scope in enumerate(scopes):
            await backend.aset(scope, key, str(i))
        assert [await backend.aget(s, key) for s in scopes] == ["0", "1", "2", "3"]

    @pytest.mark.asyncio
    async def test_values_are_stored_exactly(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            for i, value in enumerate(self.stored_values):
                await backend.aset(scope, f"v{i}", value)
            for i, value in enumerate(self.stored_values):
                assert await backend.aget(scope, f"v{i}") == value, f"value #{i} changed"

    # -- expiry ------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_expired_value_reads_as_absent(self, backend: BaseStateBackend) -> None:
        scope = self.task_scope()
        await backend.aset(scope, "past", "1", expires_at=utc_now() - self.expired_ago)
        assert await backend.aget(scope, "past") is None

    @pytest.mark.asyncio
    async def test_unexpired_and_never_expiring_values_read_back(
        self, backend: BaseStateBackend
    ) -> None:
        scope = self.task_scope()
        await backend.aset(scope, "future", "2", expires_at=utc_now() + self.expires_in)
        await backend.aset(scope, "never", "3", expires_at=None)
        await backend.aset(scope, "default", "4")
        assert await backend.aget(scope, "future") == "2"
        assert await backend.aget(scope, "never") == "3"
        assert await backend.aget(scope, "default") == "4"

    @pytest.mark.asyncio
    async def test_overwrite_resets_expiry(self, backend: BaseStateBackend) -> None:
        scope = self.task_scope()
        await backend.aset(scope, "k", "1", expires_at=utc_now() - self.expired_ago)
        await backend.aset(scope, "k", "2")  # no expires_at: never expires now
        assert await backend.aget(scope, "k") == "2"
        await backend.aset(scope, "k", "3", expires_at=utc_now() - self.expired_ago)
        assert await backend.aget(scope, "k") is None
        await backend.aset(scope, "k", "4", expires_at=utc_now() + self.expires_in)
        assert await backend.aget(scope, "k") == "4"

    @pytest.mark.asyncio
    async def test_expired_key_can_be_deleted_and_cleared(self, backend: BaseStateBackend) -> None:
        scope = self.task_scope()
        await backend.aset(scope, "a", "1", expires_at=utc_now() - self.expired_ago)
        await backend.aset(scope, "b", "1", expires_at=utc_now() - self.expired_ago)
        await backend.adelete(scope, "a")
        await backend.aclear(scope)
        await backend.aset(scope, "b", "2")
        assert await backend.aget(scope, "a") is None
        assert await backend.aget(scope, "b") == "2"

    # -- asset identity --------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_asset_identity_by_name_or_uri(self, backend: BaseStateBackend) -> None:
        full = self.asset_scope("sales", "s3://bucket/sales")
        by_name, by_uri = self.asset_scope("sales"), self.asset_scope(None, "s3://bucket/sales")
        await backend.aset(full, "wm", '"2024"')
        assert await backend.aget(by_name, "wm") == '"2024"'
        assert await backend.aget(by_uri, "wm") == '"2024"'
        await backend.aset(by_name, "wm", '"2025"')
        assert await backend.aget(full, "wm") == '"2025"'
        assert await backend.aget(by_uri, "wm") == '"2025"'

    # -- concurrency -------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_concurrent_writers_as_tasks(self, backend: BaseStateBackend) -> None:
        shared_task, shared_asset = self.both_kinds()

        async def write(w: int) -> None:
            own = self.task_scope(map_index=w)
            for i, value in enumerate(self.concurrent_values(w)):
                await backend.aset(shared_task, "shared", value)
                await backend.aset(shared_asset, "shared", value)
                await backend.aset(shared_task, f"key-{w}-{i}", value)
                await backend.aset(own, "own", value)

        writers = self.concurrent_writers
        await asyncio.gather(*(write(w) for w in range(writers)))
        written = self.all_concurrent_values()
        assert await backend.aget(shared_task, "shared") in written
        assert await backend.aget(shared_asset, "shared") in written
        owns = await asyncio.gather(
            *(backend.aget(self.task_scope(map_index=w), "own") for w in range(writers))
        )
        assert owns == [self.concurrent_values(w)[-1] for w in range(writers)]
        for w in range(writers):
            values = self.concurrent_values(w)
            for i, value in enumerate(values):
                assert await backend.aget(shared_task, f"key-{w}-{i}") == value

    @pytest.mark.asyncio
    async def test_concurrent_readers_and_deleters_as_tasks(
        self, backend: BaseStateBackend
    ) -> None:
        scope = self.task_scope()
        keys = [f"k{i}" for i in range(self.writes_per_writer)]
        await asyncio.gather(*(backend.aset(scope, key, f'"{key}"') for key in keys))
        reads = await asyncio.gather(*(backend.aget(scope, key) for key in keys))
        assert reads == [f'"{key}"' for key in keys]
        await asyncio.gather(*(backend.adelete(scope, key) for key in keys[::2]))
        reads = await asyncio.gather(*(backend.aget(scope, key) for key in keys))
        assert reads == [None if i % 2 == 0 else f'"{key}"' for i, key in enumerate(keys)]
