"""Contention: 8 processes x 4 threads hammer one database while cleanup runs beside them.

Each process builds one ``StateStore`` and shares it between its 4 threads, the way a
worker process does. For a bounded time every thread mixes:

* writes to SHARED hot keys — one task-state key and one asset-state key that every
  thread of every process writes;
* writes, reads and deletes of its OWN keys (task state of its own map index, asset
  state under keys of its own), some written with a 1 µs retention so that they expire
  at once and cleanup has live work all along, then written live again.

Values are ``{"writer": "p3t1", "seq": n}`` with ``seq`` increasing per writer and key,
so the outcome is checkable: every read of an own key returns that thread's latest
write (read-your-writes); afterwards an own key holds exactly its thread's last write
(or nothing after a delete or an expiring write), and a shared key holds the last write
of *some* writer. Meanwhile one more process runs :func:`statestore.cleanup.cleanup`
(expired task state and the orphan sweep) in a loop with varying batch sizes: rows
seeded already expired and the state of a deactivated asset must be gone at the end,
and no live row may ever disappear. Any exception in any worker fails the test — a
deadlock or "database is locked" must be handled by the library, not by the caller.

Runs on every database (SQLite file, PostgreSQL, MariaDB) for ~3 s of hammering each.
``STATESTORE_TEST_LONG=1`` hammers for 60 s per database instead, and
``STATESTORE_TEST_CONTENTION_SECONDS=N`` for N seconds. The figures (processes x
threads x seconds, operations, errors) are printed and attached as the ``contention``
property of the test (``--junitxml``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from multiprocessing.synchronize import Event
from typing import Any

import pytest
import time_machine
from sqlalchemy.engine import URL

from statestore import NEVER_EXPIRE, StateStore, TaskScope
from statestore.accessors import AssetStateAccessor, TaskStateAccessor
from statestore.cleanup import cleanup_task_states, iter_expired_task_states, sweep_asset_states

pytestmark = pytest.mark.slow

PROCESSES = 8
THREADS = 4
SECONDS = 3.0
LONG_SECONDS = 60.0

DAG, RUN, TASK = "contention", "run", "task"
HOT_ASSET = "contention-hot"
HOT_KEY = "hot"
OWN_TASK_KEYS = 6
OWN_ASSET_KEYS = 3

# Seeded before the run: expired rows cleanup must remove, an inactive asset the sweep
# must empty, and live bystander rows nobody touches that must survive unchanged.
DEAD_DAG = "contention-expired"
DEAD_SCOPES = 40
DEAD_KEYS = 5
STALE_KEYS = 10  # expired keys inside the shared hot task scope
RETIRED_ASSET = "contention-retired"
RETIRED_KEYS = 20
BYSTANDER = TaskScope("contention-bystander", RUN, TASK)
BYSTANDER_ASSET = "contention-bystander"
BYSTANDER_KEYS = 10

EXPIRING = timedelta(microseconds=1)
CLEANUP_BATCH_SIZES: tuple[int | None, ...] = (None, 0, 1, 7, 100)
KEPT_TEXTS = 10  # error or violation texts each worker sends back, beyond that a count

Value = dict[str, Any]
Possible = list[Value | None]
"""The values a key may hold: one when every operation succeeded, more after a failure."""


def _hammer_seconds() -> float:
    given = os.environ.get("STATESTORE_TEST_CONTENTION_SECONDS")
    if given:
        return float(given)
    return LONG_SECONDS if os.environ.get("STATESTORE_TEST_LONG") == "1" else SECONDS


def _describe(what: str, exc: BaseException) -> str:
    return f"{what}: {type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}"


@dataclass
class WriterReport:
    """What one thread did and what it expects the database to hold for its keys."""

    name: str
    number: int
    ops: int = 0
    own: dict[str, Possible] = field(default_factory=dict)
    shared: dict[str, Possible] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0


@dataclass
class CleanerReport:
    """What the cleanup process did."""

    passes: int = 0
    deleted: int = 0
    swept: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0


@dataclass
class ProcessReport:
    """Sent back by each worker process when it is done (or failed to start)."""

    process: int
    writers: list[WriterReport] = field(default_factory=list)
    cleaner: CleanerReport | None = None
    errors: list[str] = field(default_factory=list)


def _own_task_scope(number: int) -> TaskScope:
    return TaskScope(DAG, RUN, TASK, number)


def _own_asset_key(name: str, k: int) -> str:
    return f"{name}-own-{k}"


class _Writer:
    """One hammering thread: a fixed random mix of operations until the deadline."""

    def __init__(self, store: StateStore, process: int, thread: int) -> None:
        name = f"p{process}t{thread}"
        self.report = WriterReport(name=name, number=process * THREADS + thread)
        self.rng = random.Random(name)
        self.task = store.task_state(_own_task_scope(self.report.number))
        self.hot_task = store.task_state(TaskScope(DAG, RUN, TASK))
        self.asset = store.asset_state(HOT_ASSET)
        self.seq: dict[str, int] = {}
        self.task_labels = [f"task:own-{k}" for k in range(OWN_TASK_KEYS)]
        self.asset_labels = [f"asset:{_own_asset_key(name, k)}" for k in range(OWN_ASSET_KEYS)]
        for label in (*self.task_labels, *self.asset_labels):
            self.report.own[label] = [None]  # absent, or seeded already expired

    # -- bookkeeping ---------------------------------------------------------------------

    def _next(self, label: str) -> Value:
        self.seq[label] = self.seq.get(label, 0) + 1
        return {"writer": self.report.name, "seq": self.seq[label]}

    def _error(self, what: str, exc: BaseException) -> None:
        self.report.error_count += 1
        if len(self.report.errors) < KEPT_TEXTS:
            self.report.errors.append(_describe(f"{self.report.name} {what}", exc))

    def _violation(self, text: str) -> None:
        self.report.violation_count += 1
        if len(self.report.violations) < KEPT_TEXTS:
            self.report.violations.append(f"{self.report.name} {text}")

    def _own(self, label: str) -> tuple[TaskStateAccessor | AssetStateAccessor, str]:
        kind, key = label.split(":", 1)
        return (self.task, key) if kind == "task" else (self.asset, key)

    # -- operations -----------------------------------------------------------------------

    def _write(
        self, label: str, table: dict[str, Possible], write: Callable[[Value], None]
    ) -> bool:
        value = self._next(label)
        self.report.ops += 1
        try:
            write(value)
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the parent
            self._error(f"set {label} seq={value['seq']}", exc)
            table[label] = [*table.get(label, []), value]  # in doubt: written or not
            return False
        table[label] = [value]
        return True

    def _read_back(self, label: str) -> None:
        accessor, key = self._own(label)
        self.report.ops += 1
        try:
            got = accessor.get(key)
        except Exception as exc:  # noqa: BLE001
            self._error(f"get {label}", exc)
            return
        expected = self.report.own[label]
        if got not in expected:
            self._violation(f"read {label}: got {got!r}, expected one of {expected!r}")

    def set_own(self) -> None:
        label = self.rng.choice([*self.task_labels, *self.asset_labels])
        accessor, key = self._own(label)
        if isinstance(accessor, TaskStateAccessor):
            retention = self.rng.choice([None, NEVER_EXPIRE, timedelta(hours=1)])
            task = accessor
            self._write(label, self.report.own, lambda v: task.set(key, v, retention=retention))
        else:
            asset = accessor
            self._write(label, self.report.own, lambda v: asset.set(key, v))
        self._read_back(label)

    def expire_own(self) -> None:
        """Write an own task key with a 1 µs retention: expired at once, cleanup's prey."""
        label = self.rng.choice(self.task_labels)
        _, key = self._own(label)
        value = self._next(label)
        self.report.ops += 1
        try:
            self.task.set(key, value, retention=EXPIRING)
        except Exception as exc:  # noqa: BLE001
            self._error(f"set {label} seq={value['seq']} (expiring)", exc)
            self.report.own[label] = [*self.report.own[label], None]
            return
        self.report.own[label] = [None]

    def delete_own(self) -> None:
        label = self.rng.choice([*self.task_labels, *self.asset_labels])
        accessor, key = self._own(label)
        self.report.ops += 1
        try:
            accessor.delete(key)
        except Exception as exc:  # noqa: BLE001
            self._error(f"delete {label}", exc)
            self.report.own[label] = [*self.report.own[label], None]
        else:
            self.report.own[label] = [None]
        self._read_back(label)

    def get_own(self) -> None:
        self._read_back(self.rng.choice([*self.task_labels, *self.asset_labels]))

    def set_hot_task(self) -> None:
        self._write("task:hot", self.report.shared, lambda v: self.hot_task.set(HOT_KEY, v))

    def set_hot_asset(self) -> None:
        self._write("asset:hot", self.report.shared, lambda v: self.asset.set(HOT_KEY, v))

    def get_hot(self) -> None:
        label = self.rng.choice(["task:hot", "asset:hot"])
        accessor = self.hot_task if label == "task:hot" else self.asset
        self.report.ops += 1
        try:
            got = accessor.get(HOT_KEY)
        except Exception as exc:  # noqa: BLE001
            self._error(f"get {label}", exc)
            return
        if got is None and self.report.shared.get(label, [None]) != [None]:
            self._violation(f"read {label}: absent after this thread wrote it")
        elif got is not None and set(got) != {"writer", "seq"}:
            self._violation(f"read {label}: got {got!r}")

    def run(self, go_at: float, deadline: float) -> None:
        operations: list[tuple[float, Callable[[], None]]] = [
            (0.20, self.set_hot_task),
            (0.40, self.set_hot_asset),
            (0.65, self.set_own),
            (0.75, self.get_own),
            (0.85, self.delete_own),
            (0.95, self.expire_own),
            (1.00, self.get_hot),
        ]
        time.sleep(max(0.0, go_at - time.monotonic()))
        while time.monotonic() < deadline:
            roll = self.rng.random()
            for upto, operation in operations:
                if roll < upto:
                    operation()
                    break


def _hammer(url: str, process: int, seconds: float, ready: Any, go: Event, results: Any) -> None:
    """One worker process: a StateStore shared by THREADS hammering threads."""
    report = ProcessReport(process)
    try:
        with StateStore(url) as store:
            store.task_state(_own_task_scope(0)).get("warm-up")  # schema checked, connected
            ready.put(process)
            if not go.wait(timeout=300):
                raise TimeoutError("never told to go")
            go_at = time.monotonic()
            deadline = go_at + seconds
            writers = [_Writer(store, process, t) for t in range(THREADS)]
            threads = [
                threading.Thread(target=w.run, args=(go_at, deadline), name=w.report.name)
                for w in writers
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=seconds + 240)
            stuck = [t.name for t in threads if t.is_alive()]
            if stuck:
                report.errors.append(f"p{process}: threads stuck past the deadline: {stuck}")
            report.writers = [w.report for w in writers]
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        report.errors.append(_describe(f"p{process}", exc))
    results.put(report)


def _clean(url: str, ready: Any, go: Event, stop: Event, results: Any) -> None:
    """The cleanup process: expired task state and the orphan sweep, in a loop until told
    to stop, then once more (the two halves of ``cleanup()``, counted apart)."""
    report = ProcessReport(PROCESSES, cleaner=CleanerReport())
    cleaner = report.cleaner
    assert cleaner is not None
    try:
        with StateStore(url) as store:
            store.task_state(_own_task_scope(0)).get("warm-up")
            ready.put(PROCESSES)
            if not go.wait(timeout=300):
                raise TimeoutError("never told to go")
            last = False
            while not last:
                last = stop.is_set()  # a final pass after the writers are done
                size = CLEANUP_BATCH_SIZES[cleaner.passes % len(CLEANUP_BATCH_SIZES)]
                try:
                    cleaner.deleted += cleanup_task_states(store, batch_size=size).deleted
                    cleaner.swept += sweep_asset_states(store).deleted
                except Exception as exc:  # noqa: BLE001
                    cleaner.error_count += 1
                    if len(cleaner.errors) < KEPT_TEXTS:
                        cleaner.errors.append(
                            _describe(f"cleanup pass {cleaner.passes} batch={size}", exc)
                        )
                cleaner.passes += 1
                time.sleep(0.01)
    except Exception as exc:  # noqa: BLE001
        report.errors.append(_describe("cleanup process", exc))
    results.put(report)


def _seed(store: StateStore) -> int:
    """Expired rows, an inactive asset with state, live bystanders; returns how many
    expired rows nobody will rewrite (cleanup must delete at least those)."""
    past = datetime.now(timezone.utc) - timedelta(days=1)
    with time_machine.travel(past, tick=False):
        for number in range(PROCESSES * THREADS):  # the writers' own keys, expired
            own = store.task_state(_own_task_scope(number))
            for k in range(OWN_TASK_KEYS):
                own.set(f"own-{k}", {"seed": number}, retention=timedelta(hours=1))
        for scope in range(DEAD_SCOPES):
            dead = store.task_state(TaskScope(DEAD_DAG, RUN, TASK, scope))
            for k in range(DEAD_KEYS):
                dead.set(f"dead-{k}", {"seed": scope}, retention=timedelta(minutes=5))
        hot = store.task_state(TaskScope(DAG, RUN, TASK))
        for k in range(STALE_KEYS):
            hot.set(f"stale-{k}", {"seed": k}, retention=timedelta(minutes=5))
    bystander = store.task_state(BYSTANDER)
    for k in range(BYSTANDER_KEYS):
        bystander.set(f"k{k}", {"seed": k}, retention=NEVER_EXPIRE if k % 2 else None)
        store.asset_state(BYSTANDER_ASSET).set(f"k{k}", {"seed": k})
    retired = store.asset_state(RETIRED_ASSET)
    for k in range(RETIRED_KEYS):
        retired.set(f"k{k}", {"seed": k})
    assert store.deactivate_assets(RETIRED_ASSET) == 1
    return DEAD_SCOPES * DEAD_KEYS + STALE_KEYS


def _run_workers(url: str, seconds: float) -> tuple[list[ProcessReport], float]:
    """Start the writers and the cleaner, release them together, collect their reports."""
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    results = context.Queue()
    go = context.Event()
    stop = context.Event()
    writers = [
        context.Process(target=_hammer, args=(url, p, seconds, ready, go, results))
        for p in range(PROCESSES)
    ]
    cleaner = context.Process(target=_clean, args=(url, ready, go, stop, results))
    processes = [*writers, cleaner]
    reports: list[ProcessReport] = []
    hammered = 0.0
    try:
        for process in processes:
            process.start()
        for _ in processes:
            try:
                ready.get(timeout=120)
            except queue.Empty:
                break  # a process died while starting; its report says why
        go.set()
        started = time.monotonic()
        for _ in writers:
            try:
                reports.append(results.get(timeout=seconds + 300))
            except queue.Empty:
                break
        hammered = time.monotonic() - started
        stop.set()
        with contextlib.suppress(queue.Empty):
            reports.append(results.get(timeout=120))
        for process in processes:
            process.join(timeout=60)
    finally:
        go.set()
        stop.set()
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
    exits = [p.exitcode for p in processes]
    if exits != [0] * len(processes) or len(reports) != len(processes):
        reports.append(ProcessReport(-1, errors=[f"exit codes {exits}, {len(reports)} reports"]))
    return reports, hammered


def test_contention_with_concurrent_cleanup(
    migrated_url: URL, dialect: str, record_property: Callable[[str, object], None]
) -> None:
    url = migrated_url.render_as_string(hide_password=False)
    seconds = _hammer_seconds()
    began = time.monotonic()
    with StateStore(url) as store:
        must_clean = _seed(store)

    reports, hammered = _run_workers(url, seconds)

    writers = [w for r in reports for w in r.writers]
    cleaners = [r.cleaner for r in reports if r.cleaner is not None]
    errors = [e for r in reports for e in r.errors]
    errors += [e for w in writers for e in w.errors]
    errors += [e for c in cleaners for e in c.errors]
    error_count = len([e for r in reports for e in r.errors])
    error_count += sum(w.error_count for w in writers) + sum(c.error_count for c in cleaners)
    violations = [v for w in writers for v in w.violations]
    violation_count = sum(w.violation_count for w in writers)
    ops = sum(w.ops for w in writers)
    cleaner = cleaners[0] if cleaners else CleanerReport()
    summary = (
        f"{dialect}: {PROCESSES} processes x {THREADS} threads x {seconds:g} s "
        f"(hammered {hammered:.1f} s): {ops} ops ({ops / max(hammered, 1e-9):.0f}/s), "
        f"{error_count} errors, "
        f"{violation_count} read-your-writes violations; cleanup: {cleaner.passes} passes, "
        f"{cleaner.deleted} expired rows deleted, {cleaner.swept} swept, "
        f"{cleaner.error_count} errors"
    )
    print(summary)
    record_property("contention", summary)

    # Everything that went wrong is reported together: errors, then wrong reads, then
    # what the database holds afterwards.
    problems = [*errors, *violations]
    if len(writers) != PROCESSES * THREADS or not all(w.ops for w in writers):
        problems.append(f"{len(writers)} writer threads reported, some maybe idle")
    if cleaner.passes < 2:
        problems.append(f"cleanup ran {cleaner.passes} passes beside the writers")
    with StateStore(url) as store:
        # Own keys: exactly the thread's last write, or absent after a delete/expiry.
        for w in writers:
            own = store.task_state(_own_task_scope(w.number))
            for label, possible in w.own.items():
                kind, key = label.split(":", 1)
                got = own.get(key) if kind == "task" else store.asset_state(HOT_ASSET).get(key)
                if got not in possible:
                    problems.append(f"{w.name} {label}: stored {got!r}, expected {possible!r}")
        # Shared keys: the final write of some writer.
        hot_accessors: dict[str, TaskStateAccessor | AssetStateAccessor] = {
            "task:hot": store.task_state(TaskScope(DAG, RUN, TASK)),
            "asset:hot": store.asset_state(HOT_ASSET),
        }
        for label, accessor in hot_accessors.items():
            finals = [v for w in writers for v in w.shared.get(label, [])]
            got = accessor.get(HOT_KEY)
            if got is None or got not in finals:
                problems.append(f"shared {label}: stored {got!r} is no writer's final write")
        # Live bystanders untouched; expired rows and the retired asset's state gone.
        for k in range(BYSTANDER_KEYS):
            if store.task_state(BYSTANDER).get(f"k{k}") != {"seed": k}:
                problems.append(f"bystander task key k{k} lost")
            if store.asset_state(BYSTANDER_ASSET).get(f"k{k}") != {"seed": k}:
                problems.append(f"bystander asset key k{k} lost")
        left = list(iter_expired_task_states(store))
        if left:
            problems.append(f"{len(left)} expired task-state rows left, e.g. {left[:3]}")
        retired = [a for a in store.list_assets() if a.name == RETIRED_ASSET]
        if [(a.active, a.keys) for a in retired] != [(False, 0)]:
            problems.append(f"retired asset not swept: {retired}")
    if cleaner.deleted < must_clean:
        problems.append(f"cleanup deleted {cleaner.deleted} rows, at least {must_clean} expired")
    if cleaner.swept != RETIRED_KEYS:
        problems.append(f"sweep deleted {cleaner.swept} rows, expected {RETIRED_KEYS}")
    print(f"{dialect}: whole test {time.monotonic() - began:.1f} s")
    assert not problems, f"{summary}\n" + "\n".join(problems)
