"""The short write chain (``direct_writes``) sends exactly what the general path sends.

For every driver the metastore runs on, sync and async, a scope's :class:`KeyWriter`
must produce the same SQL text and the same driver parameters, in the same order and
form, as planning the set (``plans.set_``), compiling it (on PostgreSQL: the function
call that stands for it) and binding it -- for task scopes by map index and by map key,
asset scopes by name and by uri, with and without an expiry and a writer name, and for
keys other than the probe the writer was built from.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import make_url

from statestore.metastore.compiled import compile_statement
from statestore.metastore.digests import task_row_hasher, task_row_id
from statestore.metastore.direct_writes import KeyWriters
from statestore.metastore.engine import dialect_family
from statestore.metastore.pg_functions import FunctionCalls
from statestore.metastore.statements import build_statements
from statestore.scopes import AssetScope, StateScope, TaskScope
from tests.unit.test_direct_reads import URLS  # every driver, sync and async

SCOPES: list[StateScope] = [
    TaskScope("dag", "run", "task"),
    TaskScope("dag", "run", "task", map_index=7),
    TaskScope("dag", "run", "task", map_key="eu-west"),
    AssetScope(name="orders"),
    AssetScope(uri="s3://bucket/orders"),
]
NOW = datetime(2026, 12, 3, 14, 30, 5, 123456, tzinfo=timezone.utc)
LATER = NOW + timedelta(days=2, microseconds=1)


def _writers(url: str) -> tuple[KeyWriters, object]:
    dialect = make_url(url).get_dialect()()
    family = dialect_family(make_url(url))
    statements = build_statements(family)
    return KeyWriters(statements, FunctionCalls(statements, family), {}), dialect


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("scope", SCOPES, ids=repr)
@pytest.mark.parametrize("updated_by", [None, "etl-job"])
@pytest.mark.parametrize("expires_at", [None, LATER], ids=["no-expiry", "expiry"])
def test_a_writer_sends_what_the_general_path_sends(
    url: str, scope: StateScope, updated_by: str | None, expires_at: datetime | None
) -> None:
    writers, dialect = _writers(url)
    writer = writers.of(scope, updated_by, dialect)  # type: ignore[arg-type]
    for key, text in (("k", '"v"'), ("another/key", '{"n": 1}'), ("ключ", "[1, 2]")):
        plan = writers.probe(scope, updated_by, key, text, expires_at, NOW)
        call = writers._calls.of(plan.statement)
        compiled = compile_statement(call if call is not None else plan.statement, dialect)  # type: ignore[arg-type]
        general = (compiled.sql, compiled.parameters(plan.params))
        assert (writer.sql, writer.parameters(key, text, expires_at, NOW)) == general


@pytest.mark.parametrize("url", URLS)
def test_function_calls_answer_a_scalar_and_asset_writes_are_checked(url: str) -> None:
    writers, dialect = _writers(url)
    task = writers.of(SCOPES[0], None, dialect)  # type: ignore[arg-type]
    asset = writers.of(SCOPES[3], None, dialect)  # type: ignore[arg-type]
    on_postgresql = url.startswith("postgresql")
    assert task.fetch == asset.fetch == ("scalar" if on_postgresql else "rowcount")
    assert task.sql.startswith("SELECT statestore_task_write(") is on_postgresql
    assert (task.checked, asset.checked) == (False, True)


def test_writers_are_kept_per_scope_and_writer_name_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writers, dialect = _writers("sqlite:///x.db")
    first = writers.of(TaskScope("d", "r", "t"), None, dialect)  # type: ignore[arg-type]
    assert writers.of(TaskScope("d", "r", "t"), None, dialect) is first  # type: ignore[arg-type]
    assert writers.of(TaskScope("d", "r", "t"), "me", dialect) is not first  # type: ignore[arg-type]
    monkeypatch.setattr("statestore.metastore.direct_writes._KEPT_WRITERS", 3)
    for index in range(5):
        writers.of(TaskScope("d", "r", f"t{index}"), None, dialect)  # type: ignore[arg-type]
    assert len(writers._kept) <= 3


def test_the_row_hasher_is_task_row_id() -> None:
    scope = TaskScope("dag", "run", "task", map_key="a\x01b")
    row_id = task_row_hasher(scope)
    for key in ("k", "", "ключ", "a" * 500):
        assert row_id(key) == task_row_id(scope, key)


def test_a_steady_set_takes_the_short_chain_and_a_new_asset_the_general_way(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from statestore import StateStore
    from statestore.metastore import plans

    general: list[str] = []
    planned = plans.set_

    def counted(*args: object, **kwargs: object) -> plans.Plan:
        plan = planned(*args, **kwargs)  # type: ignore[arg-type]
        general.append(plan.kind)
        return plan

    with StateStore(f"sqlite:///{tmp_path}/state.db") as store:
        task = store.task_state(TaskScope("dag", "run", "task"))
        task.set("warm", 1)  # the schema is checked on first use
        task.set("warm", 2)  # the scope's writer is built (from a probe plan)
        monkeypatch.setattr(plans, "set_", counted)  # the module both paths plan with
        task.set("k", {"n": 1})
        task.set("k", {"n": 2}, retention=timedelta(days=1))
        assert general == []
        orders = store.asset_state("orders")
        # The asset's writer is built from a probe plan; the asset is not registered
        # yet, so the direct write writes nothing and the general path registers it.
        orders.set("cursor", 5)
        assert general == ["asset_write", "asset_write"]
        orders.set("cursor", 6)
        assert general == ["asset_write", "asset_write"]
        task.set("k", 3, if_version=2)  # a compare-and-set: the general way
        assert general == ["asset_write", "asset_write", "cas"]
        assert task.get_item("k").value == 3  # type: ignore[union-attr]
        assert task.get_item("k").version == 3  # type: ignore[union-attr]
        assert orders.get("cursor") == 6
