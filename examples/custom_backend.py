"""A custom backend over a plain dict, used through a StateStore and proven conformant.

``DictStateBackend`` implements the eight abstract methods of ``BaseStateBackend``: the
store validates and encodes values first, so a backend keeps JSON text and an expiry,
and keeps scopes apart. The script then runs ``statestore.testing``'s conformance suites
(sync and async) against it with pytest, as a real backend's test module would.

Run it (no database involved; needs ``pip install "statestore[testing]"``)::

    python examples/custom_backend.py
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timezone

import pytest

from statestore import BaseStateBackend, StateScope, StateStore, TaskScope, UnknownAssetError
from statestore.testing import AsyncBackendConformance, BackendConformance

Slot = tuple[object, ...]  # a tuple of the ids, never a joined string: no separator clashes


class DictStateBackend(BaseStateBackend):
    """State in ``{slot: {key: (json_text, expires_at)}}``; ``session`` is ignored."""

    def __init__(self) -> None:
        self._slots: dict[Slot, dict[str, tuple[str, datetime | None]]] = {}
        self._names_by_uri: dict[str, str] = {}
        self._lock = threading.Lock()  # one store is shared by threads and asyncio tasks

    def _slot(self, scope: StateScope, *, writing: bool = False) -> Slot:
        if isinstance(scope, TaskScope):
            return ("task", scope.dag_id, scope.run_id, scope.task_id, scope.map_index)
        # An asset is its name; a uri-only scope means the asset holding that uri.
        name = scope.name or (scope.uri and self._names_by_uri.get(scope.uri, scope.uri))
        if name is None:
            raise UnknownAssetError("this backend knows assets by name or uri, not by id")
        if writing and scope.uri is not None:
            self._names_by_uri.setdefault(scope.uri, name)
        return ("asset", name)

    def get(self, scope: StateScope, key: str, *, session: object = None) -> str | None:
        with self._lock:
            value, expires_at = self._slots.get(self._slot(scope), {}).get(key, (None, None))
        if expires_at is not None and expires_at < datetime.now(timezone.utc):
            return None  # expired reads as absent, whether or not a cleanup ran
        return value

    def set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: object = None,
    ) -> None:
        with self._lock:
            self._slots.setdefault(self._slot(scope, writing=True), {})[key] = (value, expires_at)

    def delete(self, scope: StateScope, key: str, *, session: object = None) -> None:
        with self._lock:
            self._slots.get(self._slot(scope), {}).pop(key, None)

    def clear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: object = None
    ) -> None:
        with self._lock:
            slot = self._slot(scope)
            # Compare the whole slot, or ("task", dag, run, task) for every map index.
            size = 4 if all_map_indices else len(slot)
            for doomed in [s for s in self._slots if s[:size] == slot[:size]]:
                del self._slots[doomed]

    # Nothing to await in a dict; a network backend would await its async client here.
    async def aget(self, scope: StateScope, key: str, *, session: object = None) -> str | None:
        return self.get(scope, key)

    async def aset(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: object = None,
    ) -> None:
        self.set(scope, key, value, expires_at=expires_at)

    async def adelete(self, scope: StateScope, key: str, *, session: object = None) -> None:
        self.delete(scope, key)

    async def aclear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: object = None
    ) -> None:
        self.clear(scope, all_map_indices=all_map_indices)


# The conformance suites, collected by pytest from this file (see main).
@pytest.fixture
def backend() -> DictStateBackend:
    return DictStateBackend()  # a fresh, empty backend for every test


class TestDictBackend(BackendConformance):
    """Every promise of the contract, through get/set/delete/clear and threads."""


class TestDictBackendAsync(AsyncBackendConformance):
    """The same through aget/aset/adelete/aclear and concurrent asyncio tasks."""


def main() -> None:
    with StateStore(backend=DictStateBackend()) as store:
        scope = TaskScope("etl", "run-1", "load")
        store.task_state(scope).set("progress", {"rows": 1200, "status": "running"})
        store.asset_state("orders").set("watermark", "2026-11-24")
        print(f"through the store: {store.task_state(scope).get('progress')}")
        print(f"what the backend keeps: {store.backend.get(scope, 'progress')}")
        print(f"asset state: watermark = {store.asset_state('orders').get('watermark')}")
    print("running the statestore.testing conformance suites against DictStateBackend:")
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))


if __name__ == "__main__":
    main()
