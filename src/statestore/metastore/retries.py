"""When a statement runs again, and when its failure goes to the caller.

Every hot-path statement is idempotent -- a read, an upsert, a delete -- so running it
again cannot apply it twice. Two failures are retried:

* a dropped connection (server restart, network cut): once, on a fresh connection,
  after discarding every idle one (they are likely stale too);
* a deadlock (MySQL/MariaDB error 1213, PostgreSQL 40P01): the server rolled the
  statement back whole, so up to ``DEADLOCK_RETRIES`` times after a short random pause
  that grows with each attempt and breaks the lock-step of the two sides.

A statement that outlived ``database.timeout_seconds`` is never retried: the server
that stopped answering would most likely make the caller wait as long again.
"""

from __future__ import annotations

import random

from statestore.metastore.deadlines import StatementTimeout
from statestore.metastore.engine import DroppedConnectionError

__all__ = [
    "DEADLOCK_RETRIES",
    "RETRIED",
    "DeadlockError",
    "Retry",
    "deadlock_pause",
    "is_deadlock",
    "unwrap",
]

DEADLOCK_RETRIES = 5

_DEADLOCK_SQLSTATES = frozenset({"40P01"})
_MYSQL_DEADLOCK = 1213


class DeadlockError(Exception):
    """The server chose this statement as a deadlock victim and rolled it back."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


RETRIED = (DroppedConnectionError, DeadlockError, StatementTimeout)
"""The signals a hot path catches to ask :class:`Retry` whether to run again."""


def is_deadlock(exc: BaseException) -> bool:
    """Whether a driver error (or SQLAlchemy's wrapper of one) is a deadlock."""
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) in _DEADLOCK_SQLSTATES:  # psycopg, asyncpg
        return True
    if getattr(orig, "pgcode", None) in _DEADLOCK_SQLSTATES:  # psycopg2
        return True
    args: tuple[object, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] == _MYSQL_DEADLOCK  # PyMySQL, asyncmy, mysqlclient


def unwrap(exc: Exception) -> Exception:
    """The driver's own error inside one of this module's signals, for translation."""
    error = getattr(exc, "error", None)
    return error if isinstance(error, Exception) else exc


class Retry:
    """The attempts left for one operation (created only after a first failure)."""

    __slots__ = ("deadlocks", "dropped")

    def __init__(self) -> None:
        self.dropped = False
        self.deadlocks = 0

    def allows(self, exc: Exception) -> bool:
        """Count ``exc`` against the budget; ``False`` once the caller must see it."""
        if isinstance(exc, StatementTimeout):
            return False
        if isinstance(exc, DroppedConnectionError):
            if self.dropped:
                return False
            self.dropped = True
            return True
        if isinstance(exc, DeadlockError) and self.deadlocks < DEADLOCK_RETRIES:
            self.deadlocks += 1
            return True
        return False

    def pause(self) -> float:
        """Seconds to wait before the next attempt after a deadlock."""
        return deadlock_pause(self.deadlocks - 1)  # the first pause is at most 2 ms


def deadlock_pause(attempt: int) -> float:
    """A random pause that grows with each attempt (jitter breaks the lock-step)."""
    return random.uniform(0, 0.002 * 2**attempt)  # noqa: S311 - jitter, not crypto
