"""A model-based test: random operations through the public API against a plain dict.

A hypothesis ``RuleBasedStateMachine`` sets, reads, deletes and clears task state (with
every kind of retention) and asset state across several scopes, moves the clock, runs
cleanup, deactivates, re-activates and sweeps assets — and checks every read, every
report and every count against a model that knows only the documented rules:

* a task-state key is expired iff ``expires_at < now``; ``expires_at`` is fixed at
  write time (``now + retention``; the default retention as configured *then*;
  ``NEVER_EXPIRE`` and a default of 0 days mean never); an expired key reads as absent;
* cleanup deletes exactly the expired task-state keys (metastore only: any other
  backend is "explicitly not cleaned up"), never asset state;
* asset state never expires; an inactive asset can be read, deleted and cleared but not
  written, and the sweep deletes the state of inactive assets (metastore only).

The clock is Python's: the accessor computes ``expires_at`` from ``utcnow()``, and the
backends compare against a ``now`` taken from ``utcnow()`` (bound into the SQL on the
metastore), never the database's clock. So time-machine, frozen (``tick=False``) and
shifted by the machine, is the one clock of the library and of the model.

It runs against the in-memory backend and the metastore on every dialect. Hypothesis
settings come from ``tests/hypothesis_profiles.py`` (``ci`` unless
``--hypothesis-profile`` chose another).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import time_machine
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete
from sqlalchemy.engine import URL

from statestore import (
    NEVER_EXPIRE,
    InactiveAssetError,
    InMemoryStateBackend,
    MetastoreStateBackend,
    StateStore,
    StateStoreConfig,
    TaskScope,
    UnsupportedOperationError,
)
from statestore.cleanup import (
    CleanupReport,
    cleanup,
    cleanup_task_states,
    iter_expired_task_states,
    sweep_asset_states,
)
from statestore.metastore.tables import asset, asset_state, task_state
from statestore.retention import utcnow
from tests.hypothesis_profiles import stateful_settings

T0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
DEFAULT_DAYS = 3
"""``default_retention_days`` of the main store: short enough for the clock to reach."""

TASKS = (
    TaskScope("dag", "run", "task"),  # map_index -1
    TaskScope("dag", "run", "task", 0),
    TaskScope("dag", "run", "task", 1),
    TaskScope("dag", "run", "other", 0),
    TaskScope("dag", "run2", "task", 0),
)
ASSETS = ("orders", "Orders", "users")
KEYS = ("k", "K", "k ")  # exact keys: case and trailing space matter on every database

DEFAULT = "default"
"""Retention ``None`` through the store whose default is ``DEFAULT_DAYS`` days."""
DEFAULT_OFF = "default-off"
"""Retention ``None`` through the store whose default is 0 days (never expires)."""

Retention = str | timedelta

_MISSING = object()

task_scopes = st.sampled_from(TASKS)
asset_names = st.sampled_from(ASSETS)
keys = st.sampled_from(KEYS)
json_values: st.SearchStrategy[object] = st.recursive(
    st.booleans()
    | st.integers(min_value=-(10**18), max_value=10**18)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=5,
)
retentions: st.SearchStrategy[Retention] = st.one_of(
    st.sampled_from([DEFAULT, DEFAULT_OFF]),
    st.just(NEVER_EXPIRE),
    st.sampled_from([timedelta(microseconds=1), timedelta(hours=1)]),
    st.integers(min_value=1, max_value=4).map(lambda days: timedelta(days=days)),
)
# Whole days and hours land exactly on expiry instants (still readable); a microsecond
# steps just past them (expired).
time_steps: st.SearchStrategy[timedelta] = st.one_of(
    st.sampled_from(
        [
            timedelta(microseconds=1),
            timedelta(hours=1),
            timedelta(days=1),
            timedelta(days=DEFAULT_DAYS),
        ]
    ),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5)),
)
TaskWrite = tuple[TaskScope, str, object, Retention]
AssetWrite = tuple[str, str, object]
task_writes: st.SearchStrategy[TaskWrite] = st.tuples(task_scopes, keys, json_values, retentions)
asset_writes: st.SearchStrategy[AssetWrite] = st.tuples(asset_names, keys, json_values)
batch_sizes = st.sampled_from([None, 0, 1, 2, 1000])


def canonical(value: object) -> str:
    """JSON text that tells ``True`` from ``1`` and ignores dict order."""
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class Stores:
    """What one example runs against: two stores on one backend."""

    store: StateStore
    """``default_retention_days = DEFAULT_DAYS``; every maintenance call goes through it."""
    store_no_default: StateStore
    """``default_retention_days = 0`` on the same backend."""
    metastore: bool


@dataclass(frozen=True)
class TaskEntry:
    value: object
    expires_at: datetime | None


class StateStoreMachine(RuleBasedStateMachine):
    """Drives a store through its public API and checks it against a dict model."""

    def __init__(self, fresh: Callable[[], Stores]) -> None:
        super().__init__()
        self.target = fresh()
        self.tasks: dict[tuple[TaskScope, str], TaskEntry] = {}
        self.assets: dict[tuple[str, str], object] = {}
        self.registry: dict[str, bool] = {}  # name -> active; metastore only
        self.now = T0
        self.travel = time_machine.travel(T0, tick=False)
        self.clock = self.travel.start()

    def teardown(self) -> None:
        self.travel.stop()

    # -- the model ---------------------------------------------------------------------

    def expired(self, entry: TaskEntry) -> bool:
        return entry.expires_at is not None and entry.expires_at < self.now

    def expired_keys(self) -> list[tuple[TaskScope, str]]:
        return [item for item, entry in self.tasks.items() if self.expired(entry)]

    def sweepable_keys(self) -> list[tuple[str, str]]:
        return [item for item in self.assets if self.registry.get(item[0]) is False]

    def expected_task(self, scope: TaskScope, key: str) -> object:
        entry = self.tasks.get((scope, key))
        return _MISSING if entry is None or self.expired(entry) else entry.value

    def check_task(self, scope: TaskScope, key: str) -> None:
        got = self.target.store.task_state(scope).get(key, _MISSING)
        expected = self.expected_task(scope, key)
        if expected is _MISSING:
            assert got is _MISSING, f"{scope} {key!r}: read {got!r}, model says absent"
        else:
            assert got is not _MISSING, f"{scope} {key!r}: absent, model says {expected!r}"
            assert canonical(got) == canonical(expected), f"{scope} {key!r}"

    def check_asset(self, name: str, key: str) -> None:
        got = self.target.store.asset_state(name).get(key, _MISSING)
        expected = self.assets.get((name, key), _MISSING)
        if expected is _MISSING:
            assert got is _MISSING, f"asset {name!r} {key!r}: read {got!r}, model says absent"
        else:
            assert got is not _MISSING, f"asset {name!r} {key!r}: absent, model {expected!r}"
            assert canonical(got) == canonical(expected), f"asset {name!r} {key!r}"

    def check_skipped(self, report: CleanupReport) -> None:
        assert report.deleted == 0
        assert report.skipped_reason is not None
        assert "explicitly not cleaned up" in report.skipped_reason

    # -- the clock -----------------------------------------------------------------------

    @initialize(
        offset=st.integers(min_value=0, max_value=999_999),
        tasks=st.lists(task_writes, max_size=6),
        assets=st.lists(asset_writes, max_size=4),
    )
    def start(self, offset: int, tasks: list[TaskWrite], assets: list[AssetWrite]) -> None:
        """Start at a random microsecond (DATETIME(6) and friends must keep it), with
        some state already written so that most steps have something to act on."""
        self.now = T0 + timedelta(microseconds=offset)
        self.clock.move_to(self.now)
        self.write_tasks(tasks)
        self.write_assets(assets)

    @invariant()
    def one_clock(self) -> None:
        assert utcnow() == self.now

    @rule(step=time_steps)
    def advance_time(self, step: timedelta) -> None:
        self.clock.shift(step)
        self.now += step

    @rule(pick=st.integers(min_value=0, max_value=63), past=st.booleans())
    def jump_to_expiry(self, pick: int, past: bool) -> None:
        """Move exactly onto a stored expiry instant (still readable), or 1 µs past it."""
        future = sorted(
            {e.expires_at for e in self.tasks.values() if e.expires_at and e.expires_at > self.now}
        )
        if not future:
            return
        self.now = future[pick % len(future)] + timedelta(microseconds=1 if past else 0)
        self.clock.move_to(self.now)

    # -- task state ------------------------------------------------------------------

    def write_tasks(self, writes: list[TaskWrite]) -> None:
        for scope, key, value, retention in writes:
            expires_at: datetime | None
            if retention == DEFAULT:
                self.target.store.task_state(scope).set(key, value)
                expires_at = self.now + timedelta(days=DEFAULT_DAYS)
            elif retention == DEFAULT_OFF:
                self.target.store_no_default.task_state(scope).set(key, value)
                expires_at = None
            else:
                assert isinstance(retention, timedelta)
                self.target.store.task_state(scope).set(key, value, retention=retention)
                expires_at = None if retention == NEVER_EXPIRE else self.now + retention
            self.tasks[(scope, key)] = TaskEntry(value, expires_at)

    @rule(writes=st.lists(task_writes, min_size=1, max_size=3))
    def set_task(self, writes: list[TaskWrite]) -> None:
        self.write_tasks(writes)

    @rule(scope=task_scopes, key=keys)
    def get_task(self, scope: TaskScope, key: str) -> None:
        self.check_task(scope, key)

    @rule(scope=task_scopes, key=keys)
    def delete_task(self, scope: TaskScope, key: str) -> None:
        self.target.store.task_state(scope).delete(key)
        self.tasks.pop((scope, key), None)

    @rule(scope=task_scopes)
    def clear_task_instance(self, scope: TaskScope) -> None:
        self.target.store.task_state(scope).clear()
        for item in [item for item in self.tasks if item[0] == scope]:
            del self.tasks[item]

    @rule(scope=task_scopes)
    def clear_all_map_indices(self, scope: TaskScope) -> None:
        self.target.store.task_state(scope).clear(all_map_indices=True)
        task = (scope.dag_id, scope.run_id, scope.task_id)
        for item in [i for i in self.tasks if (i[0].dag_id, i[0].run_id, i[0].task_id) == task]:
            del self.tasks[item]

    # -- asset state -----------------------------------------------------------------

    def write_assets(self, writes: list[AssetWrite]) -> None:
        for name, key, value in writes:
            accessor = self.target.store.asset_state(name)
            if self.target.metastore and self.registry.get(name) is False:
                with pytest.raises(InactiveAssetError):
                    accessor.set(key, value)
                continue
            accessor.set(key, value)
            self.assets[(name, key)] = value
            if self.target.metastore:
                self.registry[name] = True  # registered on first write

    @rule(writes=st.lists(asset_writes, min_size=1, max_size=3))
    def set_asset(self, writes: list[AssetWrite]) -> None:
        self.write_assets(writes)

    @rule(name=asset_names, key=keys)
    def get_asset(self, name: str, key: str) -> None:
        self.check_asset(name, key)

    @rule(name=asset_names, key=keys)
    def delete_asset_key(self, name: str, key: str) -> None:
        self.target.store.asset_state(name).delete(key)  # allowed when inactive too
        self.assets.pop((name, key), None)

    @rule(name=asset_names)
    def clear_asset(self, name: str) -> None:
        self.target.store.asset_state(name).clear()  # allowed when inactive too
        for item in [item for item in self.assets if item[0] == name]:
            del self.assets[item]

    @rule(names=st.lists(asset_names, min_size=1, max_size=3))
    def deactivate_assets(self, names: list[str]) -> None:
        if not self.target.metastore:
            with pytest.raises(UnsupportedOperationError):
                self.target.store.deactivate_assets(*names)
            return
        changed = {n for n in names if self.registry.get(n) is True}  # unknown: ignored
        assert self.target.store.deactivate_assets(*names) == len(changed)
        for name in changed:
            self.registry[name] = False

    @precondition(lambda self: self.target.metastore)
    @rule(names=st.lists(asset_names, min_size=1, max_size=3))
    def activate_assets(self, names: list[str]) -> None:
        changed = {n for n in names if self.registry.get(n) is False}
        assert self.target.store.activate_assets(*names) == len(changed)
        for name in changed:
            self.registry[name] = True  # unswept state is still there; swept state is not

    # -- maintenance -----------------------------------------------------------------

    @rule(batch_size=batch_sizes)
    def run_cleanup_task_states(self, batch_size: int | None) -> None:
        expired = self.expired_keys()
        report = cleanup_task_states(self.target.store, batch_size=batch_size)
        if not self.target.metastore:
            self.check_skipped(report)
            return
        assert report.skipped_reason is None
        assert report.deleted == len(expired), f"expected to delete {sorted(expired)}"
        for item in expired:
            del self.tasks[item]

    @rule()
    def run_sweep_asset_states(self) -> None:
        swept = self.sweepable_keys()
        report = sweep_asset_states(self.target.store)
        if not self.target.metastore:
            self.check_skipped(report)
            return
        assert report.skipped_reason is None
        assert report.deleted == len(swept), f"expected to sweep {sorted(swept)}"
        for item in swept:
            del self.assets[item]

    @rule(batch_size=batch_sizes)
    def run_cleanup(self, batch_size: int | None) -> None:
        expired, swept = self.expired_keys(), self.sweepable_keys()
        report = cleanup(self.target.store, batch_size=batch_size)
        if not self.target.metastore:
            self.check_skipped(report)
            return
        assert report.skipped_reason is None
        assert report.deleted == len(expired) + len(swept)
        for item in expired:
            del self.tasks[item]
        for asset_item in swept:
            del self.assets[asset_item]

    @precondition(lambda self: not self.target.metastore)
    @rule()
    def memory_backend_cleanup(self) -> None:
        """The in-memory backend's own ``cleanup()`` hook (the library never calls it)."""
        expired = self.expired_keys()
        assert self.target.store.backend.cleanup() == len(expired)
        for item in expired:
            del self.tasks[item]

    # -- everything at once ------------------------------------------------------------

    @rule()
    def check_everything(self) -> None:
        for scope in TASKS:
            for key in KEYS:
                self.check_task(scope, key)
        for name in ASSETS:
            for key in KEYS:
                self.check_asset(name, key)
        store = self.target.store
        if not self.target.metastore:
            assert list(iter_expired_task_states(store)) == []
            return
        expired = sorted(
            (s.dag_id, s.run_id, s.task_id, s.map_index, k, self.tasks[(s, k)].expires_at)
            for s, k in self.expired_keys()
        )
        listed = sorted(
            (r.dag_id, r.run_id, r.task_id, r.map_index, r.key, r.expires_at)
            for r in iter_expired_task_states(store)
        )
        assert listed == expired
        assert cleanup_task_states(store, dry_run=True).would_delete == len(expired)
        swept = self.sweepable_keys()
        assert sweep_asset_states(store, dry_run=True).would_delete == len(swept)
        registry = {
            a.name: (a.active, a.keys) for a in store.list_assets() if a.name in self.registry
        }
        assert {a.name for a in store.list_assets()} == set(self.registry)
        model = {
            name: (active, sum(1 for n, _ in self.assets if n == name))
            for name, active in self.registry.items()
        }
        assert registry == model


def run_machine(fresh: Callable[[], Stores]) -> None:
    def machine() -> StateStoreMachine:
        return StateStoreMachine(fresh)

    # run_state_machine_as_test has no annotations.
    run_state_machine_as_test(machine, settings=stateful_settings())  # type: ignore[no-untyped-call]


def config(default_days: int, url: URL | None = None) -> StateStoreConfig:
    state_store = {"default_retention_days": default_days}
    if url is None:
        return StateStoreConfig(state_store=state_store)
    database = {"url": url.render_as_string(hide_password=False)}
    return StateStoreConfig(database=database, state_store=state_store)


def test_model_in_memory() -> None:
    def fresh() -> Stores:
        backend = InMemoryStateBackend()
        return Stores(
            StateStore(backend=backend, config=config(DEFAULT_DAYS)),
            StateStore(backend=backend, config=config(0)),
            metastore=False,
        )

    run_machine(fresh)


@pytest.fixture
def metastore_stores(migrated_url: URL) -> Iterator[Stores]:
    with StateStore(config=config(DEFAULT_DAYS, migrated_url)) as store:
        assert isinstance(store.backend, MetastoreStateBackend)
        # Same backend, other default retention: closing `store` closes both.
        other = StateStore(backend=store.backend, config=config(0))
        yield Stores(store, other, metastore=True)


def test_model_on_the_metastore(metastore_stores: Stores) -> None:
    backend = metastore_stores.store.backend
    assert isinstance(backend, MetastoreStateBackend)

    def fresh() -> Stores:
        # One database per test; each hypothesis example starts from empty tables.
        with backend.engine.connect() as conn:
            for table in (asset_state, task_state, asset):
                conn.execute(delete(table))
            conn.commit()
        return metastore_stores

    run_machine(fresh)
