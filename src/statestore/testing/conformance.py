"""The conformance suite through a backend's **sync** methods: ``get/set/delete/clear``.

Every test calls the backend directly, from plain (non-async) test functions, with JSON
text as the accessors would send it after validation. :mod:`.async_conformance` holds
the same tests through ``aget/aset/adelete/aclear``; keep the two in step.
"""

from __future__ import annotations

import threading

from statestore.backends.base import BaseStateBackend
from statestore.scopes import StateScope
from statestore.testing.batch_conformance import BatchConformance
from statestore.testing.capabilities import CapabilityConformance
from statestore.testing.cases import distinct, utc_now
from statestore.testing.mapping import MappingConformance

__all__ = ["BackendConformance"]


class BackendConformance(CapabilityConformance, MappingConformance, BatchConformance):
    """Every behaviour ``BaseStateBackend`` promises, through its sync methods, and the
    mapping protocol of accessors over it (:mod:`statestore.testing.mapping`) and
    batches (:mod:`statestore.testing.batch_conformance`).

    Subclass it as ``class TestMyBackend(BackendConformance)`` and provide a ``backend``
    fixture returning (or yielding) a fresh, empty backend; your fixture owns teardown.
    The base class has no ``Test`` prefix, so pytest only collects your subclass.
    """

    # -- get / set / overwrite -------------------------------------------------------

    def test_get_missing_key_returns_none(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            assert backend.get(scope, "absent") is None

    def test_set_then_get_round_trips(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            backend.set(scope, "k", '{"rows":3}')
            assert backend.get(scope, "k") == '{"rows":3}'

    def test_overwrite_last_writer_wins(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            backend.set(scope, "k", '"first"')
            backend.set(scope, "k", '"second"')
            backend.set(scope, "k", "3")
            assert backend.get(scope, "k") == "3"

    # -- delete ------------------------------------------------------------------------

    def test_delete_removes_only_that_key(self, backend: BaseStateBackend) -> None:
        other_task = self.task_scope(map_index=0)
        other_asset = self.asset_scope("other-asset")
        for scope in (*self.both_kinds(), other_task, other_asset):
            backend.set(scope, "a", "1")
            backend.set(scope, "b", "2")
        for scope in self.both_kinds():
            backend.delete(scope, "a")
            assert backend.get(scope, "a") is None
            assert backend.get(scope, "b") == "2"
        assert backend.get(other_task, "a") == "1"
        assert backend.get(other_asset, "a") == "1"

    def test_delete_missing_is_a_noop(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            backend.delete(scope, "never-set")  # unknown scope and key
            backend.set(scope, "k", "1")
            backend.delete(scope, "k")
            backend.delete(scope, "k")  # already gone
            backend.delete(scope, "never-set")  # known scope, unknown key
            assert backend.get(scope, "k") is None

    def test_deleted_key_can_be_set_again(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            backend.set(scope, "k", "1")
            backend.delete(scope, "k")
            backend.set(scope, "k", "2")
            assert backend.get(scope, "k") == "2"

    # -- clear -------------------------------------------------------------------------

    def test_clear_this_map_index_only(self, backend: BaseStateBackend) -> None:
        mapped = [self.task_scope(map_index=i) for i in range(3)]
        unmapped = self.task_scope()
        for scope in [*mapped, unmapped]:
            backend.set(scope, "k", "1")
            backend.set(scope, "j", "2")
        backend.clear(mapped[1])
        assert [backend.get(s, "k") for s in mapped] == ["1", None, "1"]
        assert [backend.get(s, "j") for s in mapped] == ["2", None, "2"]
        assert backend.get(unmapped, "k") == "1"
        backend.clear(unmapped)
        assert backend.get(unmapped, "k") is None
        assert backend.get(mapped[0], "k") == "1"

    def test_clear_all_map_indices(self, backend: BaseStateBackend) -> None:
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
            backend.set(scope, "k", "1")
        backend.clear(self.task_scope(map_index=1), all_map_indices=True)
        assert [backend.get(s, "k") for s in mapped] == [None] * len(mapped)
        assert [backend.get(s, "k") for s in others] == ["1"] * len(others)
        assert backend.get(asset, "k") == "1"

    def test_clear_empty_scope_is_a_noop(self, backend: BaseStateBackend) -> None:
        backend.clear(self.task_scope(dag_id="empty"))
        backend.clear(self.task_scope(dag_id="empty"), all_map_indices=True)
        backend.clear(self.asset_scope("empty"))
        backend.set(self.task_scope(), "k", "1")
        backend.clear(self.task_scope(map_index=0))  # same task, another (empty) index
        assert backend.get(self.task_scope(), "k") == "1"

    def test_clear_asset(self, backend: BaseStateBackend) -> None:
        asset, other = self.asset_scope("cleared"), self.asset_scope("kept")
        task = self.task_scope(dag_id="cleared")
        for scope in (asset, other, task):
            backend.set(scope, "k", "1")
            backend.set(scope, "j", "2")
        backend.clear(asset)
        assert [backend.get(asset, "k"), backend.get(asset, "j")] == [None, None]
        assert backend.get(other, "k") == "1"
        assert backend.get(task, "k") == "1"
        backend.set(asset, "k", "3")  # a cleared asset can be written again
        assert backend.get(asset, "k") == "3"

    # -- isolation and exactness -------------------------------------------------------

    def test_task_scopes_never_collide(self, backend: BaseStateBackend) -> None:
        scopes = distinct([self.task_scope(), *self.neighbour_task_scopes()])
        for i, scope in enumerate(scopes):
            backend.set(scope, "key", str(i))
        assert [backend.get(s, "key") for s in scopes] == [str(i) for i in range(len(scopes))]

    def test_task_and_asset_state_never_collide(self, backend: BaseStateBackend) -> None:
        task = self.task_scope()
        scopes = distinct([task, *self.assets_named_like_ids()])
        for i, scope in enumerate(scopes):
            backend.set(scope, "key", str(i))
        assert [backend.get(s, "key") for s in scopes] == [str(i) for i in range(len(scopes))]
        backend.clear(task, all_map_indices=True)
        assert [backend.get(s, "key") for s in scopes[1:]] == [
            str(i) for i in range(1, len(scopes))
        ]
        backend.set(task, "key", '"t"')
        for asset in scopes[1:]:
            backend.clear(asset)
        assert backend.get(task, "key") == '"t"'

    def test_keys_are_exact(self, backend: BaseStateBackend) -> None:
        # A dict, so a failure names the keys that collided.
        expected = {key: str(i) for i, key in enumerate(self.exact_keys)}
        for scope in self.both_kinds():
            for key, value in expected.items():
                backend.set(scope, key, value)
            assert {key: backend.get(scope, key) for key in expected} == expected
            first, second = self.exact_keys[:2]
            backend.delete(scope, first)
            assert backend.get(scope, first) is None
            assert backend.get(scope, second) == expected[second]

    def test_longest_ids_names_and_keys(self, backend: BaseStateBackend) -> None:
        ids = {"dag_id": "d" * 250, "run_id": "r" * 250, "task_id": "t" * 250}
        scopes: list[StateScope] = [
            self.task_scope(**ids),
            self.task_scope(**ids, map_index=2**31 - 1),
            self.asset_scope("n" * 1500, "u" * 1500),
            self.asset_scope("n" * 1499 + "m"),  # differs in the last character only
        ]
        key = "k" * 512
        for i, scope in enumerate(scopes):
            backend.set(scope, key, str(i))
        assert [backend.get(s, key) for s in scopes] == ["0", "1", "2", "3"]

    def test_values_are_stored_exactly(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            for i, value in enumerate(self.stored_values):
                backend.set(scope, f"v{i}", value)
            for i, value in enumerate(self.stored_values):
                assert backend.get(scope, f"v{i}") == value, f"value #{i} changed"

    # -- expiry ------------------------------------------------------------------------

    def test_expired_value_reads_as_absent(self, backend: BaseStateBackend) -> None:
        scope = self.task_scope()
        backend.set(scope, "past", "1", expires_at=utc_now() - self.expired_ago)
        assert backend.get(scope, "past") is None

    def test_unexpired_and_never_expiring_values_read_back(self, backend: BaseStateBackend) -> None:
        scope = self.task_scope()
        backend.set(scope, "future", "2", expires_at=utc_now() + self.expires_in)
        backend.set(scope, "never", "3", expires_at=None)
        backend.set(scope, "default", "4")
        assert backend.get(scope, "future") == "2"
        assert backend.get(scope, "never") == "3"
        assert backend.get(scope, "default") == "4"

    def test_overwrite_resets_expiry(self, backend: BaseStateBackend) -> None:
        scope = self.task_scope()
        backend.set(scope, "k", "1", expires_at=utc_now() - self.expired_ago)
        backend.set(scope, "k", "2")  # no expires_at: never expires now
        assert backend.get(scope, "k") == "2"
        backend.set(scope, "k", "3", expires_at=utc_now() - self.expired_ago)
        assert backend.get(scope, "k") is None
        backend.set(scope, "k", "4", expires_at=utc_now() + self.expires_in)
        assert backend.get(scope, "k") == "4"

    def test_expired_key_can_be_deleted_and_cleared(self, backend: BaseStateBackend) -> None:
        scope = self.task_scope()
        backend.set(scope, "a", "1", expires_at=utc_now() - self.expired_ago)
        backend.set(scope, "b", "1", expires_at=utc_now() - self.expired_ago)
        backend.delete(scope, "a")
        backend.clear(scope)
        backend.set(scope, "b", "2")
        assert backend.get(scope, "a") is None
        assert backend.get(scope, "b") == "2"

    # -- asset identity --------------------------------------------------------------------

    def test_asset_identity_by_name_or_uri(self, backend: BaseStateBackend) -> None:
        full = self.asset_scope("sales", "s3://bucket/sales")
        by_name, by_uri = self.asset_scope("sales"), self.asset_scope(None, "s3://bucket/sales")
        backend.set(full, "wm", '"2024"')
        assert backend.get(by_name, "wm") == '"2024"'
        assert backend.get(by_uri, "wm") == '"2024"'
        backend.set(by_name, "wm", '"2025"')
        assert backend.get(full, "wm") == '"2025"'
        assert backend.get(by_uri, "wm") == '"2025"'

    # -- concurrency -------------------------------------------------------------------

    def test_concurrent_writers_from_threads(self, backend: BaseStateBackend) -> None:
        shared_task, shared_asset = self.both_kinds()
        writers = self.concurrent_writers
        barrier = threading.Barrier(writers)
        errors: list[BaseException] = []

        def write(w: int) -> None:
            try:
                barrier.wait(timeout=30)
                own = self.task_scope(map_index=w)
                for i, value in enumerate(self.concurrent_values(w)):
                    backend.set(shared_task, "shared", value)
                    backend.set(shared_asset, "shared", value)
                    backend.set(shared_task, f"key-{w}-{i}", value)
                    backend.set(own, "own", value)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a writer is stuck (deadlock?)"
        if errors:
            raise AssertionError(f"{len(errors)} writer thread(s) raised") from errors[0]
        written = self.all_concurrent_values()
        assert backend.get(shared_task, "shared") in written
        assert backend.get(shared_asset, "shared") in written
        for w in range(writers):
            values = self.concurrent_values(w)
            assert backend.get(self.task_scope(map_index=w), "own") == values[-1]
            for i, value in enumerate(values):
                assert backend.get(shared_task, f"key-{w}-{i}") == value
