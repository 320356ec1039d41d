"""Fixtures every test gets: a clean environment and no process-wide store.

Tests never read the developer's ``STATESTORE*`` variables, ``./statestore.cfg`` or
``./statestore.db``: each runs in its own temporary working directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from statestore.store import set_default_store


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("STATESTORE") and not name.startswith("STATESTORE_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    set_default_store(None)
    yield
    previous = set_default_store(None)
    if previous is not None:
        previous.close()
