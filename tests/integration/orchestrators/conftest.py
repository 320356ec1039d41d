"""Orchestrator tests: real Airflow, Dagster and Prefect runs on SQLite and PostgreSQL.

Each orchestrator is an optional extra that the main test venv does not install, so its
tests skip there. ``scripts/orchestrator-tests`` runs them in one venv per orchestrator
with ``STATESTORE_TEST_REQUIRE_ORCHESTRATORS=1``, where a missing package fails instead.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """Import an orchestrator package, or skip (fail when the run requires it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is not installed ({exc}); run scripts/orchestrator-tests"
        if os.environ.get("STATESTORE_TEST_REQUIRE_ORCHESTRATORS") == "1":
            pytest.fail(message)
        pytest.skip(message, allow_module_level=True)
        raise AssertionError("unreachable") from exc  # pragma: no cover


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgresql", marks=pytest.mark.postgresql),
    ]
)
def dialect(request: pytest.FixtureRequest) -> str:
    """Orchestrator pipelines run on the embedded default and on one server database."""
    return str(request.param)
