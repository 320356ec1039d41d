"""One store per process and configuration for integrations whose host never closes them.

The Airflow backend relies on this (tests/integration/orchestrators/test_airflow.py runs
it inside Airflow); these tests pin the cache itself: sharing, keying, fork, exit.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator

import pytest

from statestore import InMemoryStateBackend, StateStoreConfig, TaskScope
from statestore.integrations import _shared_stores

MEMORY = "statestore.backends.memory.InMemoryStateBackend"


def _config(**state_store: object) -> StateStoreConfig:
    return StateStoreConfig(state_store={"backend": MEMORY, **state_store})


@pytest.fixture(autouse=True)
def _no_stores_left() -> Iterator[None]:
    _shared_stores._close_stores()
    yield
    _shared_stores._close_stores()  # what the exit hook does


def test_equal_configurations_share_one_store() -> None:
    first = _shared_stores.shared_store(_config())
    again = _shared_stores.shared_store(_config())
    other = _shared_stores.shared_store(_config(default_retention_days=7))
    assert first is again
    assert other is not first
    assert isinstance(first.backend, InMemoryStateBackend)
    assert other.config.state_store.default_retention_days == 7
    assert first.config.state_store.default_retention_days == 30


def test_exit_hook_closes_the_stores_and_hands_out_new_ones() -> None:
    before = _shared_stores.shared_store(_config())
    generation = _shared_stores.generation()
    _shared_stores._close_stores()
    assert _shared_stores.generation() == generation + 1
    after = _shared_stores.shared_store(_config())
    assert after is not before


def test_a_forked_child_never_gets_the_parents_store() -> None:
    parent = _shared_stores.shared_store(_config())
    scope = TaskScope("dag", "run", "task")
    parent.backend.set(scope, "k", '"parent"')
    generation = _shared_stores.generation()
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python >= 3.12 warns on fork() with threads running; forking is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, reports through the pipe
        try:
            child = _shared_stores.shared_store(_config())
            report = {
                "same": child is parent,
                "generation": _shared_stores.generation(),
                "again": _shared_stores.shared_store(_config()) is child,
                "child_reads": child.backend.get(scope, "k"),
            }
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails
            report = {"error": repr(exc)}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = json.loads(pipe.read())
    assert os.waitpid(pid, 0)[1] == 0
    # A store of its own (in memory: empty), stable within the child; the parent's is
    # untouched and still the parent's.
    assert report == {
        "same": False, "generation": generation + 1, "again": True, "child_reads": None,
    }  # fmt: skip
    assert _shared_stores.generation() == generation
    assert _shared_stores.shared_store(_config()) is parent
    assert parent.backend.get(scope, "k") == '"parent"'
