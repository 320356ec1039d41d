"""The short read chain (``direct_reads``) sends exactly what the general path sends.

For every driver the metastore runs on, sync and async, the direct task and asset
readers must produce the same SQL text and the same driver parameters, in the same
order and form, as planning the read (``plans.get``), compiling it and binding it
(``compiled``) -- with the clock frozen so both take the same ``now``. On PostgreSQL a
get's value is read by a function call (``pg_functions``) bound from the same plan's
parameters; ``tests/integration/test_key_functions.py`` checks it reads as the plain
statement does.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
import time_machine
from sqlalchemy.engine import make_url

from statestore.metastore import asset_ids, pg_functions, plans
from statestore.metastore.compiled import compile_statement
from statestore.metastore.digests import key_digest, task_row_id
from statestore.metastore.direct_reads import DirectReads, driver_now
from statestore.metastore.engine import dialect_family
from statestore.metastore.statements import build_statements
from statestore.retention import utcnow
from statestore.scopes import AssetScope, TaskScope

URLS = [
    "sqlite:///x.db",
    "postgresql+psycopg://u@h/db",
    "postgresql+psycopg2://u@h/db",
    "mysql+pymysql://u@h/db",
    "mysql+mysqldb://u@h/db",
    # The async hot path's dialects (aget and aget_item take the chain too).
    "sqlite+aiosqlite:///x.db",
    "postgresql+psycopg_async://u@h/db",
    "postgresql+asyncpg://u@h/db",
    "mysql+asyncmy://u@h/db",
    "mysql+aiomysql://u@h/db",
]
BY_ID = (asset_ids.DIRECT_GET, asset_ids.DIRECT_GET_ITEM)
NOW = datetime(2026, 12, 1, 18, 30, 5, 123456, tzinfo=timezone.utc)


def _dialect(url: str) -> object:
    return make_url(url).get_dialect()()


def _general(plan: plans.Plan, dialect: object, call: object = None) -> tuple[str, object]:
    """What the general path sends for ``plan`` (``call``: on PostgreSQL, the function
    call that stands for its statement, bound from the plan's parameters)."""
    statement = call if call is not None and dialect.name == "postgresql" else plan.statement  # type: ignore[attr-defined]
    compiled = compile_statement(statement, dialect)  # type: ignore[arg-type]
    return compiled.sql, compiled.parameters(plan.params)


@pytest.mark.parametrize("url", URLS)
def test_task_read_sends_what_the_general_path_sends(url: str) -> None:
    dialect = _dialect(url)
    statements = build_statements(dialect_family(make_url(url)))
    reads = DirectReads(statements, BY_ID, dialect)  # type: ignore[arg-type]
    scope = TaskScope("dag", "run", "task", map_index=3)
    with time_machine.travel(NOW, tick=False):
        general = _general(
            plans.get(statements, scope, "k", utcnow()), dialect, pg_functions.TASK_READ
        )
        direct = reads.sent("task", (task_row_id(scope, "k"), driver_now(dialect.name)()))  # type: ignore[attr-defined]
    assert direct == general


@pytest.mark.parametrize("url", URLS)
def test_asset_read_by_id_sends_what_the_general_path_sends(url: str) -> None:
    dialect = _dialect(url)
    statements = build_statements(dialect_family(make_url(url)))
    reads = DirectReads(statements, BY_ID, dialect)  # type: ignore[arg-type]
    scope = AssetScope(name="orders")
    with time_machine.travel(NOW, tick=False):
        plan = plans.get(statements, scope, "k", utcnow(), asset_id=42)
        general = _general(plan, dialect, pg_functions.ASSET_READ)
        direct = reads.sent("asset", (42, key_digest("k"), driver_now(dialect.name)()))  # type: ignore[attr-defined]
    assert direct == general


INSTANTS = [
    NOW,
    NOW.replace(microsecond=0),  # isoformat would drop a zero fraction: the text must not
    NOW.replace(microsecond=999_999),
    datetime(2027, 1, 1, tzinfo=timezone.utc),  # a second, minute, day and year boundary
    datetime(2026, 2, 28, 23, 59, 59, 1, tzinfo=timezone.utc),
]


@pytest.mark.parametrize("url", URLS)
def test_driver_now_is_the_converted_utcnow(url: str) -> None:
    """The one-step ``now`` equals ``utcnow()`` through the statement's converter, at
    instants that cross every boundary of the kept second (one ``now`` reused)."""
    dialect = _dialect(url)
    statements = build_statements(dialect_family(make_url(url)))
    compiled = compile_statement(statements.task_get, dialect)  # type: ignore[arg-type]
    convert = dict(compiled.processors)["now"]
    now = driver_now(dialect.name)  # type: ignore[attr-defined]
    for instant in [*INSTANTS, *reversed(INSTANTS)]:
        with time_machine.travel(instant, tick=False):
            assert now() == convert(utcnow()), instant


def test_sqlite_now_follows_the_real_clock() -> None:
    """Outside time-machine: the kept second's text moves on with the clock."""
    now = driver_now("sqlite")
    for _ in range(3):
        before = datetime.now(timezone.utc).isoformat(" ", "microseconds")[:26]
        text = now()
        after = datetime.now(timezone.utc).isoformat(" ", "microseconds")[:26]
        assert before <= text <= after
        time.sleep(0.6)


@pytest.mark.parametrize("url", URLS)
def test_item_reads_send_what_the_general_path_sends(url: str) -> None:
    """``get_item``'s rows (task, and asset by id) go the same way."""
    dialect = _dialect(url)
    statements = build_statements(dialect_family(make_url(url)))
    reads = DirectReads(statements, BY_ID, dialect)  # type: ignore[arg-type]
    task = TaskScope("dag", "run", "task", map_key="eu")
    with time_machine.travel(NOW, tick=False):
        now = driver_now(dialect.name)()  # type: ignore[attr-defined]
        task_plan = plans.get_item(statements, task, "k", utcnow())
        asset_plan = plans.get_item(statements, AssetScope(name="a"), "k", utcnow(), asset_id=7)
        assert reads.sent("task", (task_row_id(task, "k"), now), whole=True) == _general(
            task_plan, dialect
        )
        assert reads.sent("asset", (7, key_digest("k"), now), whole=True) == _general(
            asset_plan, dialect
        )


class _Recorder:
    """A hot path that records what it is asked to run."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def run(self, sql: str, parameters: object, *, fetch: str) -> None:
        self.sent.append((sql, parameters))

    run_plain = run  # a get's value is plain text on every driver


def test_task_get_sends_each_scope_and_keys_own_row_id() -> None:
    """The row id the reader sends is ``task_row_id`` of that call's scope and key,
    whether the scope object is reused (its part hashed once), built per call, or
    alternates with another -- map keys and map indices included."""
    dialect = _dialect("sqlite:///x.db")
    reads = DirectReads(build_statements("sqlite"), BY_ID, dialect)  # type: ignore[arg-type]
    reused = TaskScope("dag", "run", "task")
    other = TaskScope("dag", "run", "task", map_index=0)
    keyed = TaskScope("dag", "run", "task", map_index=0, map_key="a")
    calls = [(reused, f"k{i}") for i in range(4)]
    calls += [(TaskScope("dag", "run", "task"), "k1") for _ in range(3)]  # equal, new
    calls += [(scope, "k") for _ in range(3) for scope in (reused, other, keyed)]
    calls += [(keyed, "k2"), (keyed, "k2"), (other, "k2"), (reused, "k2")]
    recorder = _Recorder()
    for scope, key in calls:
        reads.task_get(recorder, scope, key)
    sent_ids = [parameters[0] for _, parameters in recorder.sent]  # type: ignore[index]
    assert sent_ids == [task_row_id(scope, key) for scope, key in calls]
    assert len(set(sent_ids[-4:])) == 3  # keyed, keyed, other, reused: three rows
