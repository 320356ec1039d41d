"""Two clients' different statements with the same parameters, on each other's server
connection, through PgBouncer in transaction mode.

psycopg names the statements it prepares on the server ``_pg3_0, _pg3_1, ...`` in
every connection alike. Behind a transaction pooler a client's next transaction may run
on a server connection where another client prepared *its* ``_pg3_0``; when both take
the same parameters -- a task ``delete()`` and a ``clear(all_map_indices=True)`` each
take one bytea digest -- the server runs the other client's statement and reports
success: the delete deletes nothing, with no error anywhere.

This test builds exactly that, deterministically. The database's pool has two server
connections, A and B, and two "holder" connections keep a transaction open on each,
so that whenever one is released it is the *only* server connection a client can get:

1. release B: a deleter warms up (its delete reaches psycopg's threshold first, so if
   it prepares, its ``_pg3_0`` is the delete, on B); hold B again;
2. release A: a clearer warms up the same way (its ``_pg3_0``: clear, on A); hold A;
3. rounds alternate A and B, both clients on the same server connection each round,
   and every operation's effect is checked: the deleted key is gone, the cleared
   scope is empty, the neighbours are intact.

The library's default must never prepare a statement; the opt-in
(``?prepare_threshold=5``, psycopg's own default) must be caught by these same checks,
which proves that they can fail.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from sqlalchemy.engine import URL

from statestore import StateStore, TaskScope
from tests.integration.behind_pgbouncer.conftest import POOL_SIZES
from tests.integration.pgbouncer import PgBouncer

pytestmark = pytest.mark.postgresql

WARM_UP = 8  # more runs than psycopg's prepare_threshold (5): prepared if ever
ROUNDS = 12
MAP_INDICES = (0, 1, 2)


@dataclass
class Findings:
    """Everything that went wrong: errors and wrong results alike, by client and round."""

    problems: list[str] = field(default_factory=list)
    wrong_results: int = 0
    errors: int = 0
    operations: int = 0

    def check(self, what: str, read: Callable[[], object], expected: object) -> None:
        """Read, and compare with what this client knows it wrote."""
        got = self.run(what, read)
        if got != expected:
            self.wrong_results += 1
            self.problems.append(f"{what}: got {got!r}, expected {expected!r}")

    def run(self, what: str, operation: Callable[[], object]) -> object:
        """Run one operation; an exception is a finding, and ends that client's round."""
        self.operations += 1
        try:
            return operation()
        except Exception as exc:
            self.errors += 1
            self.problems.append(f"{what}: {type(exc).__name__}: {exc}")
            raise _RoundAbandonedError from exc

    def summary(self) -> str:
        shown = "\n".join(self.problems[:12])
        return (
            f"{self.errors} error(s) and {self.wrong_results} wrong result(s) in "
            f"{self.operations} operations:\n{shown}"
        )


class _RoundAbandonedError(Exception):
    """A client's operation failed: skip the rest of its round (its state is unknown)."""


class Holders:
    """One open transaction per server connection of the pool, so that releasing one
    leaves clients exactly that server connection."""

    def __init__(self, pooler: PgBouncer, database: str) -> None:
        self.connections = [
            psycopg.connect(
                host="127.0.0.1",
                port=pooler.port,
                dbname=database,
                user=pooler.server.username or "postgres",
                connect_timeout=10,
                prepare_threshold=None,  # the holders must not collide themselves
            )
            for _ in range(POOL_SIZES["transaction"])
        ]
        self.pids = [self._hold(n) for n in range(len(self.connections))]
        assert len(set(self.pids)) == len(self.pids), "two holders share a server connection"

    def _hold(self, n: int) -> int:
        # psycopg opens a transaction with the first statement (autocommit is off).
        row = self.connections[n].execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return int(row[0])

    def release(self, n: int) -> None:
        self.connections[n].commit()

    def hold(self, n: int) -> None:
        pid = self._hold(n)
        assert pid == self.pids[n], "the pool's server connections changed under the test"

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


@pytest.fixture
def holders(transaction_pooler: PgBouncer, empty_database: str) -> Iterator[Holders]:
    holders = Holders(transaction_pooler, empty_database)
    yield holders
    holders.close()


def deleter_round(store: StateStore, findings: Findings, round_: int) -> None:
    """Write a key, read it, delete it: it must be gone, and its neighbour still there."""
    state = store.task_state(TaskScope("dag", "run", "deleter", 0))
    key, value = f"k{round_}", f"deleter:{round_}"
    findings.run("deleter set", lambda: state.set("keep", "deleter-keep"))
    findings.run("deleter set", lambda: state.set(key, value))
    findings.check(f"deleter round {round_}: get after set", lambda: state.get(key), value)
    findings.run("deleter delete", lambda: state.delete(key))
    findings.check(f"deleter round {round_}: get after delete", lambda: state.get(key), None)
    findings.check(f"deleter round {round_}: neighbour", lambda: state.get("keep"), "deleter-keep")


def clearer_round(store: StateStore, findings: Findings, round_: int) -> None:
    """Write every map index, clear them all: all empty, the other task untouched."""
    scopes = [TaskScope("dag", "run", "clearer", m) for m in MAP_INDICES]
    other = store.task_state(TaskScope("dag", "run", "other", 0))
    value = f"clearer:{round_}"
    findings.run("clearer set", lambda: other.set("keep", "other-keep"))
    for scope in scopes:
        writer = store.task_state(scope)
        findings.run("clearer set", functools.partial(writer.set, "k", value))
    findings.run("clearer clear", lambda: store.task_state(scopes[0]).clear(all_map_indices=True))
    for scope in scopes:
        read = functools.partial(store.task_state(scope).get, "k")
        findings.check(f"clearer round {round_}: {scope} after clear", read, None)
    findings.check(f"clearer round {round_}: other task", lambda: other.get("keep"), "other-keep")


def warm_up(findings: Findings, what: str, operation: Callable[[], object]) -> None:
    for _ in range(WARM_UP):
        with contextlib.suppress(_RoundAbandonedError):
            findings.run(what, operation)


def run_pinned(url: URL, holders: Holders) -> Findings:
    findings = Findings()
    text = url.render_as_string(hide_password=False)
    with StateStore(text) as deleter, StateStore(text) as clearer:
        scope = TaskScope("dag", "run", "clearer", 0)
        holders.release(1)  # the deleter's statements: on B
        warm_up(findings, "deleter warm-up", lambda: deleter.task_state(scope).delete("absent"))
        holders.hold(1)
        holders.release(0)  # the clearer's statements: on A
        warm_up(
            findings,
            "clearer warm-up",
            lambda: clearer.task_state(scope).clear(all_map_indices=True),
        )
        holders.hold(0)
        for round_ in range(ROUNDS):
            server = round_ % 2  # A, B, A, ...: each client on the other's server in turn
            holders.release(server)
            for client, run_round in ((deleter, deleter_round), (clearer, clearer_round)):
                with contextlib.suppress(_RoundAbandonedError):
                    run_round(client, findings, round_)
            holders.hold(server)
    return findings


def test_default_configuration_runs_only_its_own_statements(
    transaction_pooler: PgBouncer, empty_database: str, holders: Holders
) -> None:
    findings = run_pinned(transaction_pooler.url(empty_database), holders)
    assert findings.problems == [], findings.summary()
    assert findings.operations == 2 * WARM_UP + ROUNDS * (6 + 3 + 2 * len(MAP_INDICES))


def test_opted_in_prepared_statements_are_caught(
    transaction_pooler: PgBouncer, empty_database: str, holders: Holders
) -> None:
    """The checks above can fail: with psycopg's own default (prepare on the 6th run),
    the deleter's very first checked delete runs the clearer's clear and deletes
    nothing, silently -- and later the reverse. Why opting in is for direct
    connections only."""
    url = transaction_pooler.url(empty_database, {"prepare_threshold": "5"})
    findings = run_pinned(url, holders)
    assert "deleter round 0: get after delete: got 'deleter:0', expected None" in (
        findings.problems
    ), findings.summary()
    assert any("after clear: got 'clearer:" in p for p in findings.problems), findings.summary()
