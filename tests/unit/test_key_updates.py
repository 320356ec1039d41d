"""``update()``'s short steps (``key_updates``) send exactly what the general path sends.

For every driver the metastore runs on, sync and async: the read is ``get_item``'s
direct read, and the replace is ``set(..., if_version=N)``'s statement with the same
driver parameters, in the same order and form -- with the clock frozen so both take the
same ``now``. On PostgreSQL the steps are calls of migration 0007's read and 0009's
replace-or-read functions instead: the replace is checked to carry the general
statement's every value (and an asset's id), and tests/integration/test_update_functions.py
checks that the functions write and refuse as the statements do. What the steps say
about a miss -- and the row a PostgreSQL miss answers -- is checked here too.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from sqlalchemy.engine import make_url

from statestore import VersionConflictError
from statestore.items import _UNREAD_CONFLICTS
from statestore.metastore import plans
from statestore.metastore.compiled import compile_statement
from statestore.metastore.digests import key_digest, task_row_id
from statestore.metastore.direct_reads import DirectReads, driver_now
from statestore.metastore.engine import dialect_family
from statestore.metastore.key_updates import KeyPlans, KeyUpdater
from statestore.metastore.pg_functions import (
    ASSET_READ,
    ASSET_REPLACE_OR_READ,
    TASK_REPLACE_OR_READ,
)
from statestore.metastore.statements import build_statements
from statestore.retention import utcnow
from statestore.scopes import AssetScope, StateScope, TaskScope
from tests.unit.test_direct_reads import BY_ID, NOW, URLS

EXPIRES = NOW + timedelta(days=3)


class _Recorder:
    """A hot path that records what it is asked to run and answers ``answer``."""

    def __init__(self, answer: object = None) -> None:
        self.sent: list[tuple[str, object, str]] = []
        self.answer = answer
        self.typed = 0  # statements sent through run (typed rows), not run_plain

    def run(self, sql: str, parameters: object, *, fetch: str) -> object:
        self.typed += 1
        return self.run_plain(sql, parameters, fetch=fetch)

    def run_plain(self, sql: str, parameters: object, *, fetch: str) -> object:
        self.sent.append((sql, parameters, fetch))
        return self.answer


def _updater(url: str, scope: StateScope, asset_id: int | None, hotpath: object) -> KeyUpdater:
    dialect = make_url(url).get_dialect()()
    statements = build_statements(dialect_family(make_url(url)))
    return KeyUpdater(
        key_plans=KeyPlans(statements, {}), reads=DirectReads(statements, BY_ID, dialect),
        hotpath=hotpath, scope=scope, key="k", asset_id=asset_id, updated_by="w1",
    )  # fmt: skip


SCOPES: list[tuple[StateScope, int | None]] = [
    (TaskScope("dag", "run", "task", map_index=2), None),
    (TaskScope("dag", "run", "task", map_key="eu"), None),
    (AssetScope(name="orders"), 42),
    (AssetScope(uri="s3://bucket/orders"), 42),
    (AssetScope(asset_id=42), 42),
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(("scope", "asset_id"), SCOPES)
def test_the_replace_sends_what_set_if_version_sends(
    url: str, scope: StateScope, asset_id: int | None
) -> None:
    recorder = _Recorder(answer=1)
    updater = _updater(url, scope, asset_id, recorder)
    dialect = updater.dialect
    statements = build_statements(dialect_family(make_url(url)))
    for expires_at in (None, EXPIRES):
        with time_machine.travel(NOW, tick=False):
            updater.write('{"a":1}', expires_at, 7)
            plan = plans.set_(
                statements, scope, "k", '{"a":1}', expires_at, utcnow(), updated_by="w1",
                if_version=7,
            )  # fmt: skip
        if asset_id is not None and dialect.name == "postgresql":
            call = compile_statement(ASSET_REPLACE_OR_READ, dialect)
            values = {name: plan.params[name] for name in _FUNCTION_ARGUMENTS}
            values["w_asset_id"] = asset_id
            assert recorder.sent[-1] == (call.sql, call.parameters(values), "row")
            continue
        if dialect.name == "postgresql":  # a task's: the same parameters, to a function
            call = compile_statement(TASK_REPLACE_OR_READ, dialect)
            assert recorder.sent[-1] == (call.sql, call.parameters(plan.params), "row")
            continue
        compiled = compile_statement(plan.statement, dialect, list(plan.params))
        assert recorder.sent[-1] == (compiled.sql, compiled.parameters(plan.params), "rowcount")
    assert recorder.typed == 0  # plain answers: libpq's way on sync psycopg


_FUNCTION_ARGUMENTS = ("w_key_digest", "if_version", "value", "expires_at", "updated_at",
                       "updated_by", "now")  # fmt: skip
"""The general asset replace's values that ``statestore_asset_replace_or_read`` takes, besides
the asset's id (the general statement finds it by the scope's name, uri or id)."""


def test_postgresqls_replace_call_takes_every_value_it_needs() -> None:
    dialect = make_url("postgresql+psycopg://u@h/db").get_dialect()()
    compiled = compile_statement(ASSET_REPLACE_OR_READ, dialect)
    assert compiled.sql.startswith(
        "SELECT live_value, live_version \nFROM statestore_asset_replace_or_read("
    )
    named = [part.split(")s")[0] for part in compiled.sql.split("%(")[1:]]
    assert named == ["w_asset_id", *_FUNCTION_ARGUMENTS]  # the function's argument order


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(("scope", "asset_id"), SCOPES)
def test_the_read_is_get_items_direct_read(
    url: str, scope: StateScope, asset_id: int | None
) -> None:
    recorder = _Recorder()
    updater = _updater(url, scope, asset_id, recorder)
    statements = build_statements(dialect_family(make_url(url)))
    reads = DirectReads(statements, BY_ID, updater.dialect)
    with time_machine.travel(NOW, tick=False):
        updater.read()
        now = driver_now(updater.dialect.name)()
    if isinstance(scope, TaskScope):
        expected = reads.sent("task", (task_row_id(scope, "k"), now), whole=True)
    elif updater.dialect.name == "postgresql":
        call = compile_statement(ASSET_READ, updater.dialect)
        with time_machine.travel(NOW, tick=False):
            values = {"asset_id": asset_id, "key_digest": key_digest("k"), "now": utcnow()}
            expected = (call.sql, call.parameters(values))
    else:
        expected = reads.sent("asset", (asset_id, key_digest("k"), now), whole=True)
    assert recorder.sent == [(*expected, "row")]
    assert recorder.typed == 0  # only the text and version: plain, not get_item's typed row


def test_rows_read_become_text_and_version() -> None:
    stamp = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert KeyUpdater.current(None) is None
    assert KeyUpdater.current(("[1]", 3, stamp, None, None)) == ("[1]", 3)
    assert KeyUpdater.current(("[1]", "3", stamp, None, None)) == ("[1]", 3)  # a driver's text


def test_a_miss_inside_update_is_a_lost_race_reported_unread() -> None:
    updater = _updater("sqlite:///x.db", AssetScope(name="orders"), 42, _Recorder())
    assert updater.written(1, 4) is True
    assert updater.written(0, 4) is False  # outside update's loop: the general path says why
    token = _UNREAD_CONFLICTS.set(True)
    try:
        with pytest.raises(VersionConflictError) as lost:
            updater.written(0, 4)
    finally:
        _UNREAD_CONFLICTS.reset(token)
    assert lost.value.current_version is None  # unread: update reads after its pause
    assert "no longer at version 4" in str(lost.value)


def _in_update() -> object:
    return _UNREAD_CONFLICTS.set(True)


def test_a_postgresql_miss_keeps_the_row_it_lost_to_for_the_next_attempt() -> None:
    updater = _updater("postgresql+psycopg://u@h/db", AssetScope(name="orders"), 42, _Recorder())
    assert updater.written(None, 4) is True  # no row answered: it wrote
    assert updater.lost_to() is None
    token = _in_update()
    try:
        with pytest.raises(VersionConflictError) as lost:
            updater.written(("[5]", 6), 4)
        assert lost.value.current_version is None  # for update: what it lost to is kept
        assert updater.lost_to() == (("[5]", 6),)
        assert updater.lost_to() is None  # once
        with pytest.raises(VersionConflictError):
            updater.written((None, 0), 6)  # no live key any more
        assert updater.lost_to() == (None,)
    finally:
        _UNREAD_CONFLICTS.reset(token)  # type: ignore[arg-type]
    assert updater.written(("[5]", 6), 4) is False  # outside update: the general path says why
    assert updater.lost_to() is None


def test_after_kept_losses_in_a_row_update_reads_again() -> None:
    from statestore.metastore.key_updates import KEPT_LOSSES

    updater = _updater("postgresql+psycopg://u@h/db", TaskScope("d", "r", "t"), None, _Recorder())
    token = _in_update()
    try:
        for n in range(1, KEPT_LOSSES + 2):
            with pytest.raises(VersionConflictError):
                updater.written((f"[{n}]", n + 1), n)
            kept = updater.lost_to()
            assert kept == (((f"[{n}]", n + 1),) if n <= KEPT_LOSSES else None)
    finally:
        _UNREAD_CONFLICTS.reset(token)  # type: ignore[arg-type]


def test_plans_are_kept_per_scope_key_and_writer_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from statestore.metastore import key_updates

    dialect = make_url("sqlite:///x.db").get_dialect()()
    key_plans = KeyPlans(build_statements("sqlite"), {})
    task, asset = TaskScope("d", "r", "t"), AssetScope(name="orders")
    travel = time_machine.travel(NOW, tick=False)
    travel.start()  # each plan's placeholder instant: one for all, to compare them whole
    first = key_plans.of(task, "k", "w1", dialect, None)
    assert key_plans.of(TaskScope("d", "r", "t"), "k", "w1", dialect, None) is first  # equal scope
    others = [
        key_plans.of(task, "j", "w1", dialect, None),
        key_plans.of(task, "k", None, dialect, None),
        key_plans.of(asset, "k", "w1", dialect, 42),
    ]
    assert [plan[0] for plan in others] == [
        {**first[0], "w_row_id": task_row_id(task, "j")},
        {**first[0], "updated_by": None},
        others[2][0],
    ]
    assert others[2][0]["updated_by"] == "w1"
    assert others[2][0]["w_key_digest"] == key_digest("k")
    monkeypatch.setattr(key_updates, "_KEPT_PLANS", 4)
    key_plans.of(task, "new", "w1", dialect, None)  # the fifth: the kept plans start over
    assert key_plans.of(task, "k", "w1", dialect, None) is not first
    assert key_plans.of(task, "k", "w1", dialect, None) == first
    travel.stop()
