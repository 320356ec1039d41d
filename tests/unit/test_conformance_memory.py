"""The in-memory backend passes the shipped conformance suite, sync and async.

The last tests check the suite itself: a backend with a classic bug must fail it.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from statestore import InMemoryStateBackend
from statestore.scopes import StateScope, TaskScope
from statestore.testing import AsyncBackendConformance, BackendConformance
from statestore.testing.mapping import MappingConformance


class TestInMemorySync(BackendConformance):
    @pytest.fixture
    def backend(self) -> InMemoryStateBackend:
        return InMemoryStateBackend()


class TestInMemoryAsync(AsyncBackendConformance):
    @pytest.fixture
    def backend(self) -> InMemoryStateBackend:
        return InMemoryStateBackend()


# -- the suite catches broken backends -----------------------------------------------------


class CaseFoldingBackend(InMemoryStateBackend):
    """Compares keys like a MySQL default collation: case- and trailing-space-blind."""

    def _get(self, scope: StateScope, key: str) -> str | None:
        return super()._get(scope, key.lower().rstrip())

    def _set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        expires_at: datetime | None,
        if_version: int | None = None,
        updated_by: str | None = None,
        write_id: str | None = None,
    ) -> None:
        folded = key.lower().rstrip()
        super()._set(scope, folded, value, expires_at, if_version, updated_by, write_id)


class NeverExpiringBackend(InMemoryStateBackend):
    """Forgets ``expires_at``: expiry is left to a cleanup that has not run."""

    def _set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        expires_at: datetime | None,
        if_version: int | None = None,
        updated_by: str | None = None,
        write_id: str | None = None,
    ) -> None:
        super()._set(scope, key, value, None, if_version, updated_by, write_id)


class MapIndexBlindBackend(InMemoryStateBackend):
    """Stores every map index of a task together."""

    def _fold(self, scope: StateScope) -> StateScope:
        if isinstance(scope, TaskScope):
            return TaskScope(scope.dag_id, scope.run_id, scope.task_id)
        return scope

    def _get(self, scope: StateScope, key: str) -> str | None:
        return super()._get(self._fold(scope), key)

    def _set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        expires_at: datetime | None,
        if_version: int | None = None,
        updated_by: str | None = None,
        write_id: str | None = None,
    ) -> None:
        folded = self._fold(scope)
        super()._set(folded, key, value, expires_at, if_version, updated_by, write_id)


@pytest.mark.parametrize(
    ("broken", "test_name"),
    [
        (CaseFoldingBackend, "test_keys_are_exact"),
        (NeverExpiringBackend, "test_expired_value_reads_as_absent"),
        (NeverExpiringBackend, "test_overwrite_resets_expiry"),
        (MapIndexBlindBackend, "test_task_scopes_never_collide"),
        (MapIndexBlindBackend, "test_clear_this_map_index_only"),
    ],
)
async def test_the_suite_fails_broken_backends(
    broken: type[InMemoryStateBackend], test_name: str
) -> None:
    with pytest.raises(AssertionError):
        getattr(BackendConformance(), test_name)(broken())
    with pytest.raises(AssertionError):
        await getattr(AsyncBackendConformance(), test_name)(broken())


def test_both_suites_hold_the_same_tests() -> None:
    sync = {name for name in dir(BackendConformance) if name.startswith("test_")}
    # The mapping protocol (state[k], len, iter) is sync only: async code has aget/akeys.
    sync -= {name for name in dir(MappingConformance) if name.startswith("test_")}
    async_ = {name for name in dir(AsyncBackendConformance) if name.startswith("test_")}
    assert sync - {"test_concurrent_writers_from_threads"} == async_ - {
        "test_concurrent_writers_as_tasks",
        "test_concurrent_readers_and_deleters_as_tasks",
    }
