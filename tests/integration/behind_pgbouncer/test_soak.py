"""A multi-process soak through PgBouncer in transaction mode, every effect checked.

``PROCESSES`` spawned workers, each with its own store, share ``POOL_SIZES["transaction"]``
server connections. Each does a random mix of ``set``/``get``/``delete``/``clear``/
``get_item``/``set(if_version=...)`` on scopes only it writes, checking every result
against what it knows it wrote, and increments one shared asset counter with
``update()``. Required: no error, no wrong result, and the counter ends at exactly the
number of updates that reported success (none lost, none doubled).
"""

from __future__ import annotations

import multiprocessing
import random
import time
from typing import Any

import pytest

from statestore import StateStore, TaskScope, VersionConflictError
from tests.integration.behind_pgbouncer.conftest import PooledDatabases
from tests.integration.pgbouncer import PgBouncer

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

PROCESSES = 6
OPERATIONS = 400  # per process
DEADLINE_S = 60.0  # per process; the whole run takes a few seconds
COUNTER_ASSET, COUNTER_KEY = "soak-counter", "n"
KEYS = ("a", "b", "c", "d")
MAP_INDICES = (0, 1, 2)


def _soak(url: str, worker: int) -> dict[str, Any]:
    """One worker's run; returns its counts and every problem it saw."""
    rng = random.Random(worker)  # a reproducible mix per worker
    problems: list[str] = []
    model: dict[tuple[int, str], str] = {}  # (map index, key) -> value this worker wrote
    asset_model: dict[str, str] = {}
    counts = {"operations": 0, "updates": 0, "gave_up": 0}

    def check(what: str, got: object, expected: object) -> None:
        if got != expected:
            problems.append(f"worker {worker}: {what}: got {got!r}, expected {expected!r}")

    deadline = time.monotonic() + DEADLINE_S
    with StateStore(url, updated_by=f"worker-{worker}") as store:
        scopes = [TaskScope(f"soak{worker}", "run", "task", m) for m in MAP_INDICES]
        own_asset = store.asset_state(f"soak-asset-{worker}")
        counter = store.asset_state(COUNTER_ASSET)
        for n in range(OPERATIONS):
            if time.monotonic() > deadline:
                problems.append(f"worker {worker}: deadline after {n} operations")
                break
            m, key = rng.choice(MAP_INDICES), rng.choice(KEYS)
            state = store.task_state(scopes[m])
            value = f"{worker}:{n}"
            kind = rng.choice(
                ["set", "set", "get", "delete", "clear", "clear_all", "cas", "asset", "update"]
            )
            try:
                if kind == "set":
                    state.set(key, value)
                    model[(m, key)] = value
                    check(f"get after set {m}/{key}", state.get(key), value)
                elif kind == "get":
                    check(f"get {m}/{key}", state.get(key), model.get((m, key)))
                elif kind == "delete":
                    state.delete(key)
                    model.pop((m, key), None)
                    check(f"get after delete {m}/{key}", state.get(key), None)
                elif kind == "clear":
                    state.clear()
                    for item in [i for i in model if i[0] == m]:
                        del model[item]
                    check(f"keys after clear {m}", sorted(state.keys()), [])
                elif kind == "clear_all":
                    state.clear(all_map_indices=True)
                    model.clear()
                    for i in MAP_INDICES:
                        check(
                            f"keys after clear_all {i}",
                            list(store.task_state(scopes[i]).keys()),
                            [],
                        )
                elif kind == "cas":
                    before = state.get_item(key)
                    check(f"get_item {m}/{key}", None if before is None else before.value,
                          model.get((m, key)))  # fmt: skip
                    version = 0 if before is None else before.version
                    state.set(key, value, if_version=version)  # nobody else writes it
                    model[(m, key)] = value
                    after = state.get_item(key)
                    assert after is not None
                    check(f"value after cas {m}/{key}", after.value, value)
                    check(f"version after cas {m}/{key}", after.version, version + 1)
                    check(f"updated_by {m}/{key}", after.updated_by, f"worker-{worker}")
                    try:
                        state.set(key, "stale", if_version=version)
                        problems.append(f"worker {worker}: a stale if_version={version} wrote")
                    except VersionConflictError:
                        pass
                    check(f"value after stale cas {m}/{key}", state.get(key), value)
                elif kind == "asset":
                    own_asset.set(key, value)
                    asset_model[key] = value
                    other = rng.choice(KEYS)
                    check(f"asset get {other}", own_asset.get(other), asset_model.get(other))
                else:
                    try:
                        new = counter.update(COUNTER_KEY, lambda v: v + 1, default=0)
                    except VersionConflictError:
                        counts["gave_up"] += 1  # lost every retry: wrote nothing
                    else:
                        counts["updates"] += 1
                        if not isinstance(new, int) or new < 1:
                            problems.append(f"worker {worker}: update returned {new!r}")
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                problems.append(f"worker {worker}: {kind} #{n}: {type(exc).__name__}: {exc}")
            counts["operations"] += 1
        try:  # everything this worker wrote, read back at the end
            for m in MAP_INDICES:
                state = store.task_state(scopes[m])
                for key in KEYS:
                    check(f"final {m}/{key}", state.get(key), model.get((m, key)))
            for key in KEYS:
                check(f"final asset {key}", own_asset.get(key), asset_model.get(key))
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            problems.append(f"worker {worker}: final read: {type(exc).__name__}: {exc}")
    return {**counts, "problems": problems}


def test_processes_through_transaction_pooling(
    transaction_pooler: PgBouncer, pooled_databases: PooledDatabases, empty_database: str
) -> None:
    url = transaction_pooler.url(empty_database).render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker
    with context.Pool(PROCESSES) as pool:
        results = pool.starmap_async(_soak, [(url, w) for w in range(PROCESSES)]).get(
            timeout=DEADLINE_S * 2
        )
    problems = [p for r in results for p in r["problems"]]
    assert problems == [], f"{len(problems)} problem(s):\n" + "\n".join(problems[:20])
    assert [r["operations"] for r in results] == [OPERATIONS] * PROCESSES
    updates = sum(r["updates"] for r in results)
    assert updates > 0
    direct = pooled_databases.direct_url(empty_database).render_as_string(hide_password=False)
    with StateStore(direct) as store:
        assert store.asset_state(COUNTER_ASSET).get(COUNTER_KEY) == updates
