"""What runs again after a failure, and the watchdog that bounds a stalled statement."""

from __future__ import annotations

import socket
import threading
import time

import psycopg.errors
import pymysql.err
import pytest
from sqlalchemy.exc import OperationalError

from statestore.metastore.deadlines import StatementTimeout, Watchdog
from statestore.metastore.engine import DroppedConnectionError
from statestore.metastore.retries import (
    DEADLOCK_RETRIES,
    DeadlockError,
    Retry,
    deadlock_pause,
    is_deadlock,
    unwrap,
)


@pytest.mark.parametrize(
    "error",
    [
        pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        OperationalError("DELETE …", {}, pymysql.err.OperationalError(1213, "Deadlock")),
    ],
    ids=["pymysql", "psycopg", "sqlalchemy-wrapped"],
)
def test_deadlocks_are_recognised(error: Exception) -> None:
    assert is_deadlock(error)


@pytest.mark.parametrize(
    "error",
    [
        pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"),
        pymysql.err.OperationalError(2013, "Lost connection to MySQL server"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        ValueError("1213"),
    ],
    ids=["lock-wait-timeout", "lost-connection", "serialization", "unrelated"],
)
def test_other_errors_are_not_deadlocks(error: Exception) -> None:
    # A lock wait timeout has already cost the caller the whole wait: not retried.
    assert not is_deadlock(error)


def test_a_dropped_connection_is_retried_once() -> None:
    retry = Retry()
    dropped = DroppedConnectionError(OSError("reset by peer"))
    assert retry.allows(dropped)
    assert not retry.allows(dropped)


def test_deadlocks_are_retried_a_bounded_number_of_times() -> None:
    retry = Retry()
    deadlock = DeadlockError(pymysql.err.OperationalError(1213, "Deadlock"))
    assert [retry.allows(deadlock) for _ in range(DEADLOCK_RETRIES + 2)] == [True] * (
        DEADLOCK_RETRIES
    ) + [False, False]
    assert 0 <= retry.pause() <= 0.002 * 2**DEADLOCK_RETRIES
    assert unwrap(deadlock) is deadlock.error


def test_a_timeout_is_never_retried() -> None:
    assert not Retry().allows(StatementTimeout(1.0))
    assert unwrap(StatementTimeout(1.0)).args[0].startswith("no answer within 1 s")


def test_pauses_grow_and_stay_small() -> None:
    assert max(deadlock_pause(0) for _ in range(100)) <= 0.002
    assert max(deadlock_pause(5) for _ in range(100)) <= 0.064


def test_watchdog_cuts_a_blocked_read_at_its_deadline() -> None:
    watchdog = Watchdog()
    ours, theirs = socket.socketpair()  # "theirs" never answers: a stalled server
    try:
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(ours.recv(10)))
        started = time.monotonic()
        token = watchdog.arm(ours.fileno(), 0.2)
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive()
        assert received == [b""]  # the read returned: the socket was shut down
        assert 0.2 <= time.monotonic() - started < 2
        assert watchdog.disarm(token) is False  # the caller learns it was cut
    finally:
        ours.close()
        theirs.close()


def test_watchdog_leaves_a_finished_statement_alone() -> None:
    watchdog = Watchdog()
    ours, theirs = socket.socketpair()
    try:
        token = watchdog.arm(ours.fileno(), 0.1)
        assert watchdog.disarm(token) is True
        time.sleep(0.3)
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"  # still usable
    finally:
        ours.close()
        theirs.close()
