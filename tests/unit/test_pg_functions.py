"""Which plain statements run as function calls (``pg_functions``): on PostgreSQL only,
and only those migration 0008 has functions for; the calls take the plain statements'
parameter names (``tests/integration/test_key_functions.py`` runs them side by side)."""

from __future__ import annotations

from statestore.metastore.pg_functions import TASK_REPLACE, TASK_WRITE, FunctionCalls
from statestore.metastore.statements import build_statements

STATEMENTS = build_statements("postgresql")


def test_only_postgresql_takes_calls() -> None:
    for family in ("sqlite", "mysql"):
        calls = FunctionCalls(build_statements(family), family)
        assert calls.of(build_statements(family).task_set) is None
    postgresql = FunctionCalls(STATEMENTS, "postgresql")
    assert postgresql.of(STATEMENTS.task_set) is TASK_WRITE
    assert postgresql.of(STATEMENTS.task_create) is None  # create-only stays a statement
    assert postgresql.of(STATEMENTS.asset_set["uri"]) is None
    assert postgresql.of(STATEMENTS.task_replace) is TASK_REPLACE
