"""Fixtures for every test in the repository.

Tests never read the developer's ``STATESTORE*`` variables, ``./statestore.cfg`` or
``./statestore.db``: each runs in its own temporary working directory with no
process-wide default store.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from statestore.store import set_default_store
from tests import hypothesis_profiles  # noqa: F401 - registers "ci"/"long" before --hypothesis-profile is read

# -- generic fixtures (autouse, no database) ---------------------------------------------
#
# Database fixtures go below in their own section; keep this one free of I/O.

# Test-server settings (STATESTORE_TEST_POSTGRES_URL, ...) configure the test run, not
# the library, so they survive the scrub.
_KEPT_PREFIX = "STATESTORE_TEST_"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("STATESTORE") and not name.upper().startswith(_KEPT_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    set_default_store(None)
    yield
    previous = set_default_store(None)
    if previous is not None:
        previous.close()  # a default store built by the test: release its engine


# -- database fixtures ------------------------------------------------------------------
