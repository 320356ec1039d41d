"""Conformance of the optional capabilities: versions, compare-and-set, listing.

A backend need not offer them (``BaseStateBackend`` raises
``UnsupportedOperationError`` by default); each test here is skipped, naming the
capability, when the backend does not. The sync and async classes hold the same tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import TypeVar

import pytest

from statestore.backends.base import BaseStateBackend
from statestore.exceptions import UnsupportedOperationError, VersionConflictError
from statestore.testing.cases import ConformanceCases, utc_now

__all__ = ["AsyncCapabilityConformance", "CapabilityConformance"]

T = TypeVar("T")
KEYS = ["b", "a/2", "a/10", "a/1", "B", "é", "a"]


def _or_skip(capability: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except UnsupportedOperationError:
        pytest.skip(f"optional capability not offered: {capability}")


async def _aor_skip(capability: str, call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except UnsupportedOperationError:
        pytest.skip(f"optional capability not offered: {capability}")


class CapabilityConformance(ConformanceCases):
    """The optional capabilities through a backend's sync methods."""

    def test_versions_count_writes_and_keep_provenance(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            assert _or_skip("versions", partial(backend.get_item, scope, "k")) is None
            backend.set_item(scope, "k", '"a"', updated_by="writer-1")
            backend.set(scope, "k", '"b"')
            item = backend.get_item(scope, "k")
            assert item is not None
            assert (item.value, item.version) == ('"b"', 2)
            backend.set_item(scope, "k", '"c"', updated_by="writer-2")
            item = backend.get_item(scope, "k")
            assert item is not None
            assert (item.value, item.version, item.updated_by) == ('"c"', 3, "writer-2")

    def test_compare_and_set_writes_only_at_its_version(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            _or_skip("versions", partial(backend.set_item, scope, "k", '"1"', if_version=0))
            with pytest.raises(VersionConflictError) as lost:
                backend.set_item(scope, "k", '"x"', if_version=0)
            assert lost.value.current_version == 1
            backend.set_item(scope, "k", '"2"', if_version=1)
            with pytest.raises(VersionConflictError):
                backend.set_item(scope, "k", '"x"', if_version=1)
            assert backend.get(scope, "k") == '"2"'
            past = utc_now() - timedelta(seconds=1)
            backend.set(scope, "gone", '"old"', expires_at=past)
            backend.set_item(scope, "gone", '"new"', if_version=0)  # expired = absent
            assert backend.get(scope, "gone") == '"new"'

    def test_listing_in_key_order_by_pages(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            for key in KEYS:
                backend.set(scope, key, f'"{key}"')
            backend.set(scope, "zz-expired", '"x"', expires_at=utc_now() - timedelta(seconds=1))
            listed = _or_skip("listing", partial(backend.list_items, scope))
            assert listed == [(key, f'"{key}"') for key in sorted(KEYS)]
            page = backend.list_items(scope, prefix="a/", after="a/1", limit=1)
            assert page == [("a/10", '"a/10"')]
            assert [k for k, _ in backend.list_items(scope, values=False)] == sorted(KEYS)


class AsyncCapabilityConformance(ConformanceCases):
    """The optional capabilities through a backend's async methods."""

    async def test_versions_count_writes_and_keep_provenance(
        self, backend: BaseStateBackend
    ) -> None:
        for scope in self.both_kinds():
            assert await _aor_skip("versions", partial(backend.aget_item, scope, "k")) is None
            await backend.aset_item(scope, "k", '"a"', updated_by="writer-1")
            await backend.aset(scope, "k", '"b"')
            item = await backend.aget_item(scope, "k")
            assert item is not None
            assert (item.value, item.version) == ('"b"', 2)
            await backend.aset_item(scope, "k", '"c"', updated_by="writer-2")
            item = await backend.aget_item(scope, "k")
            assert item is not None
            assert (item.value, item.version, item.updated_by) == ('"c"', 3, "writer-2")

    async def test_compare_and_set_writes_only_at_its_version(
        self, backend: BaseStateBackend
    ) -> None:
        for scope in self.both_kinds():
            await _aor_skip("versions", partial(backend.aset_item, scope, "k", '"1"', if_version=0))
            with pytest.raises(VersionConflictError) as lost:
                await backend.aset_item(scope, "k", '"x"', if_version=0)
            assert lost.value.current_version == 1
            await backend.aset_item(scope, "k", '"2"', if_version=1)
            with pytest.raises(VersionConflictError):
                await backend.aset_item(scope, "k", '"x"', if_version=1)
            assert await backend.aget(scope, "k") == '"2"'
            past = utc_now() - timedelta(seconds=1)
            await backend.aset(scope, "gone", '"old"', expires_at=past)
            await backend.aset_item(scope, "gone", '"new"', if_version=0)
            assert await backend.aget(scope, "gone") == '"new"'

    async def test_listing_in_key_order_by_pages(self, backend: BaseStateBackend) -> None:
        for scope in self.both_kinds():
            for key in KEYS:
                await backend.aset(scope, key, f'"{key}"')
            expired = utc_now() - timedelta(seconds=1)
            await backend.aset(scope, "zz-expired", '"x"', expires_at=expired)
            listed = await _aor_skip("listing", partial(backend.alist_items, scope))
            assert listed == [(key, f'"{key}"') for key in sorted(KEYS)]
            page = await backend.alist_items(scope, prefix="a/", after="a/1", limit=1)
            assert page == [("a/10", '"a/10"')]
            keys = [k for k, _ in await backend.alist_items(scope, values=False)]
            assert keys == sorted(KEYS)
