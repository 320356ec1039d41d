"""Conformance of batches: ``get_many``, ``get_items``, ``set_many``, ``delete_many``.

Every backend has them -- ``BaseStateBackend`` loops over its single-key methods unless
the backend does better -- so these tests run on every backend. They check what a
batch returns and writes key by key, never how many round trips it took (the
metastore's and the state server's counts are measured in statestore's own tests).
``get_items`` needs the optional versions capability and is skipped without it. The
sync and async classes hold the same tests; keep the two in step.
"""

from __future__ import annotations

import pytest

from statestore.backends.base import BaseStateBackend
from statestore.exceptions import (
    BatchTooLargeError,
    UnserializableValueError,
    UnsupportedOperationError,
)
from statestore.scopes import StateScope
from statestore.store import StateStore
from statestore.testing.cases import ConformanceCases, utc_now

__all__ = ["AsyncBatchConformance", "BatchConformance"]

BIG_BATCH = 450
"""Keys in the large batch: past SQLite's 400-term groups and PostgreSQL's usual IN size."""


class BatchConformance(ConformanceCases):
    """Batches through a backend's sync methods (part of ``BackendConformance``)."""

    def test_set_many_then_get_many_round_trips(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            entries = [(f"k{i}", value) for i, value in enumerate(self.stored_values)]
            backend.set_many(scope, entries)
            wanted = [key for key, _ in entries] + ["absent"]
            assert backend.get_many(scope, wanted) == dict(entries)
            for key, value in entries:  # a batch writes what single writes would
                assert backend.get(scope, key) == value

    def test_batches_keep_keys_exact(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            entries = [(key, f'"{i}"') for i, key in enumerate(self.exact_keys)]
            backend.set_many(scope, entries)
            assert backend.get_many(scope, list(self.exact_keys)) == dict(entries)
            backend.delete_many(scope, list(self.exact_keys[::2]))
            left = dict(entries[1::2])
            assert backend.get_many(scope, list(self.exact_keys)) == left

    def test_get_many_leaves_out_absent_and_expired(self, backend: BaseStateBackend) -> None:
        now = utc_now()
        for scope in self.both_kinds():
            backend.set(scope, "live", "1", expires_at=now + self.expires_in)
            backend.set(scope, "expired", "2", expires_at=now - self.expired_ago)
            backend.set(scope, "forever", "3")
            found = backend.get_many(scope, ["live", "expired", "forever", "absent"])
            assert found == {"live": "1", "forever": "3"}

    def test_set_many_applies_one_expiry_to_every_key(self, backend: BaseStateBackend) -> None:
        now = utc_now()
        scope = self.task_scope()
        backend.set_many(scope, [("a", "1"), ("b", "2")], expires_at=now - self.expired_ago)
        assert backend.get_many(scope, ["a", "b"]) == {}
        backend.set_many(scope, [("a", "3"), ("b", "4")], expires_at=now + self.expires_in)
        assert backend.get_many(scope, ["a", "b"]) == {"a": "3", "b": "4"}

    def test_get_items_carry_versions_and_provenance(self, backend: BaseStateBackend) -> None:
        expires_at = utc_now() + self.expires_in
        for scope in self.both_kinds():
            try:
                assert backend.get_items(scope, ["old"]) == {}
            except UnsupportedOperationError:
                pytest.skip("optional capability not offered: versions")
            backend.set_item(scope, "old", '"v1"', updated_by="single")
            backend.set_many(
                scope, [("old", '"v2"'), ("new", '"n1"')], expires_at=expires_at,
                updated_by="batch",
            )  # fmt: skip
            items = backend.get_items(scope, ["old", "new", "absent"])
            assert sorted(items) == ["new", "old"]
            assert (items["old"].value, items["old"].version) == ('"v2"', 2)
            assert (items["new"].value, items["new"].version) == ('"n1"', 1)
            for item in items.values():
                assert item.updated_by == "batch"
                assert item.expires_at == expires_at
                assert item.updated_at.tzinfo is not None
            single = backend.get_item(scope, "old")
            assert single == items["old"]

    def test_delete_many_removes_only_those_keys(self, backend: BaseStateBackend) -> None:
        other = self.task_scope(map_index=0)
        for scope in (*self.both_kinds(), other):
            backend.set_many(scope, [("a", "1"), ("b", "2"), ("c", "3")])
        for scope in self.both_kinds():
            backend.delete_many(scope, ["a", "c", "never-set"])
            assert backend.get_many(scope, ["a", "b", "c"]) == {"b": "2"}
        assert backend.get_many(other, ["a", "b", "c"]) == {"a": "1", "b": "2", "c": "3"}

    def test_batches_stay_in_their_scope(self, backend: BaseStateBackend) -> None:
        base = self.task_scope()
        backend.set_many(base, [("k", "1"), ("j", "2")])
        scopes: list[StateScope] = [*self.neighbour_task_scopes(), self.asset_scope()]
        for scope in scopes:
            assert backend.get_many(scope, ["k", "j"]) == {}
            backend.delete_many(scope, ["k", "j"])
        assert backend.get_many(base, ["k", "j"]) == {"k": "1", "j": "2"}

    def test_large_batches(self, backend: BaseStateBackend) -> None:
        for scope in (self.task_scope(), self.asset_scope("large-batch-asset")):
            entries = [(f"key-{i:04d}", str(i)) for i in range(BIG_BATCH)]
            backend.set_many(scope, entries)
            keys = [key for key, _ in entries]
            assert backend.get_many(scope, keys) == dict(entries)
            backend.delete_many(scope, keys[: BIG_BATCH // 2])
            assert backend.get_many(scope, keys) == dict(entries[BIG_BATCH // 2 :])

    def test_set_many_on_a_new_asset(self, backend: BaseStateBackend) -> None:
        scope = self.asset_scope("asset-first-written-by-a-batch")
        assert backend.get_many(scope, ["a"]) == {}
        backend.set_many(scope, [("a", "1"), ("b", "2")])
        backend.set_many(scope, [("b", "3")])
        assert backend.get_many(scope, ["a", "b"]) == {"a": "1", "b": "3"}
        assert backend.get(scope, "b") == "3"

    def test_accessor_batches_validate_before_any_io(self, backend: BaseStateBackend) -> None:
        store = StateStore(backend=backend)
        task, asset = store.task_state(self.task_scope()), store.asset_state(self.asset_scope())
        for state in (task, asset):
            with pytest.raises(UnserializableValueError, match="'bad'"):
                state.set_many({"fine": 1, "bad": {1, 2}, "also-fine": 3})
            assert state.get_many(["fine", "bad", "also-fine"]) == {}
            too_many = store.config.state_store.max_batch_keys + 1
            with pytest.raises(BatchTooLargeError):
                state.set_many({f"k{i}": i for i in range(too_many)})
            with pytest.raises(BatchTooLargeError):
                state.get_many([f"k{i}" for i in range(too_many)])
            assert state.get_many([f"k{i}" for i in range(10)]) == {}
            state.set_many({"x": [1, {"y": None}], "z": "text"})
            assert state.get_many(["z", "x", "z", "missing"]) == {
                "z": "text",
                "x": [1, {"y": None}],
            }
            assert list(state.get_many(["z", "x"])) == ["z", "x"]  # the order asked for
            assert state.get_many([]) == {}
            state.delete_many(["x"])
            assert state.get_many(["x", "z"]) == {"z": "text"}


class AsyncBatchConformance(ConformanceCases):
    """Batches through a backend's async methods (part of ``AsyncBackendConformance``)."""

    async def test_set_many_then_get_many_round_trips(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            entries = [(f"k{i}", value) for i, value in enumerate(self.stored_values)]
            await backend.aset_many(scope, entries)
            wanted = [key for key, _ in entries] + ["absent"]
            assert await backend.aget_many(scope, wanted) == dict(entries)
            for key, value in entries:
                assert await backend.aget(scope, key) == value

    async def test_batches_keep_keys_exact(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            entries = [(key, f'"{i}"') for i, key in enumerate(self.exact_keys)]
            await backend.aset_many(scope, entries)
            assert await backend.aget_many(scope, list(self.exact_keys)) == dict(entries)
            await backend.adelete_many(scope, list(self.exact_keys[::2]))
            left = dict(entries[1::2])
            assert await backend.aget_many(scope, list(self.exact_keys)) == left

    async def test_get_many_leaves_out_absent_and_expired(self, backend: BaseStateBackend) -> None:
        now = utc_now()
        for scope in self.both_kinds():
            await backend.aset(scope, "live", "1", expires_at=now + self.expires_in)
            await backend.aset(scope, "expired", "2", expires_at=now - self.expired_ago)
            await backend.aset(scope, "forever", "3")
            found = await backend.aget_many(scope, ["live", "expired", "forever", "absent"])
            assert found == {"live": "1", "forever": "3"}

    async def test_set_many_applies_one_expiry_to_every_key(
        self, backend: BaseStateBackend
    ) -> None:
        now = utc_now()
        scope = self.task_scope()
        await backend.aset_many(scope, [("a", "1"), ("b", "2")], expires_at=now - self.expired_ago)
        assert await backend.aget_many(scope, ["a", "b"]) == {}
        await backend.aset_many(scope, [("a", "3"), ("b", "4")], expires_at=now + self.expires_in)
        assert await backend.aget_many(scope, ["a", "b"]) == {"a": "3", "b": "4"}

    async def test_get_items_carry_versions_and_provenance(self, backend: BaseStateBackend) -> None:
        expires_at = utc_now() + self.expires_in
        for scope in self.both_kinds():
            try:
                assert await backend.aget_items(scope, ["old"]) == {}
            except UnsupportedOperationError:
                pytest.skip("optional capability not offered: versions")
            await backend.aset_item(scope, "old", '"v1"', updated_by="single")
            await backend.aset_many(
                scope, [("old", '"v2"'), ("new", '"n1"')], expires_at=expires_at,
                updated_by="batch",
            )  # fmt: skip
            items = await backend.aget_items(scope, ["old", "new", "absent"])
            assert sorted(items) == ["new", "old"]
            assert (items["old"].value, items["old"].version) == ('"v2"', 2)
            assert (items["new"].value, items["new"].version) == ('"n1"', 1)
            for item in items.values():
                assert item.updated_by == "batch"
                assert item.expires_at == expires_at
                assert item.updated_at.tzinfo is not None
            assert await backend.aget_item(scope, "old") == items["old"]

    async def test_delete_many_removes_only_those_keys(self, backend: BaseStateBackend) -> None:
        other = self.task_scope(map_index=0)
        for scope in (*self.both_kinds(), other):
            await backend.aset_many(scope, [("a", "1"), ("b", "2"), ("c", "3")])
        for scope in self.both_kinds():
            await backend.adelete_many(scope, ["a", "c", "never-set"])
            assert await backend.aget_many(scope, ["a", "b", "c"]) == {"b": "2"}
        assert await backend.aget_many(other, ["a", "b", "c"]) == {"a": "1", "b": "2", "c": "3"}

    async def test_batches_stay_in_their_scope(self, backend: BaseStateBackend) -> None:
        base = self.task_scope()
        await backend.aset_many(base, [("k", "1"), ("j", "2")])
        scopes: list[StateScope] = [*self.neighbour_task_scopes(), self.asset_scope()]
        for scope in scopes:
            assert await backend.aget_many(scope, ["k", "j"]) == {}
            await backend.adelete_many(scope, ["k", "j"])
        assert await backend.aget_many(base, ["k", "j"]) == {"k": "1", "j": "2"}

    async def test_large_batches(self, backend: BaseStateBackend) -> None:
        for scope in (self.task_scope(), self.asset_scope("large-batch-asset")):
            entries = [(f"key-{i:04d}", str(i)) for i in range(BIG_BATCH)]
            await backend.aset_many(scope, entries)
            keys = [key for key, _ in entries]
            assert await backend.aget_many(scope, keys) == dict(entries)
            await backend.adelete_many(scope, keys[: BIG_BATCH // 2])
            assert await backend.aget_many(scope, keys) == dict(entries[BIG_BATCH // 2 :])

    async def test_set_many_on_a_new_asset(self, backend: BaseStateBackend) -> None:
        scope = self.asset_scope("asset-first-written-by-a-batch")
        assert await backend.aget_many(scope, ["a"]) == {}
        await backend.aset_many(scope, [("a", "1"), ("b", "2")])
        await backend.aset_many(scope, [("b", "3")])
        assert await backend.aget_many(scope, ["a", "b"]) == {"a": "1", "b": "3"}
        assert await backend.aget(scope, "b") == "3"

    async def test_accessor_batches_validate_before_any_io(self, backend: BaseStateBackend) -> None:
        store = StateStore(backend=backend)
        task, asset = store.task_state(self.task_scope()), store.asset_state(self.asset_scope())
        for state in (task, asset):
            with pytest.raises(UnserializableValueError, match="'bad'"):
                await state.aset_many({"fine": 1, "bad": {1, 2}, "also-fine": 3})
            assert await state.aget_many(["fine", "bad", "also-fine"]) == {}
            too_many = store.config.state_store.max_batch_keys + 1
            with pytest.raises(BatchTooLargeError):
                await state.aset_many({f"k{i}": i for i in range(too_many)})
            with pytest.raises(BatchTooLargeError):
                await state.aget_many([f"k{i}" for i in range(too_many)])
            await state.aset_many({"x": [1, {"y": None}], "z": "text"})
            found = await state.aget_many(["z", "x", "z", "missing"])
            assert found == {"z": "text", "x": [1, {"y": None}]}
            assert list(found) == ["z", "x"]
            assert await state.aget_many([]) == {}
            await state.adelete_many(["x"])
            assert await state.aget_many(["x", "z"]) == {"z": "text"}
