"""The in-memory backend passes the shipped conformance suite, sync and async."""

from __future__ import annotations

import pytest

from statestore import InMemoryStateBackend
from statestore.testing import AsyncBackendConformance, BackendConformance


class TestInMemorySync(BackendConformance):
    @pytest.fixture
    def backend(self) -> InMemoryStateBackend:
        return InMemoryStateBackend()


class TestInMemoryAsync(AsyncBackendConformance):
    @pytest.fixture
    def backend(self) -> InMemoryStateBackend:
        return InMemoryStateBackend()
