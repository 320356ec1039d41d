"""Row identities as SHA-256 digests (pure functions; see ``tables`` for why)."""

from __future__ import annotations

from collections.abc import Callable
from hashlib import sha256

from statestore.scopes import TaskScope

__all__ = [
    "TaskRowIds", "key_digest", "ref_digest", "task_digest", "task_row_hasher", "task_row_id",
]  # fmt: skip

# NUL cannot occur in ids or keys (validated), so joining on it is unambiguous.
_SEP = "\x00"


def task_digest(scope: TaskScope) -> bytes:
    """Identity of a task (all map indices) within a run."""
    text = f"{scope.dag_id}{_SEP}{scope.run_id}{_SEP}{scope.task_id}"
    return sha256(text.encode()).digest()


def _row_prefix(scope: TaskScope) -> str:
    """The scope's part of a task row id's text, ending with the separator."""
    return _SEP.join((scope.dag_id, scope.run_id, scope.task_id, scope.instance, ""))


def task_row_id(scope: TaskScope, key: str) -> bytes:
    """Identity of one task-state key of one task instance."""
    return sha256((_row_prefix(scope) + key).encode()).digest()


def task_row_hasher(scope: TaskScope) -> Callable[[str], bytes]:
    """:func:`task_row_id` of ``scope``'s keys, the scope's part hashed once (for a
    caller that keeps it: a key then costs a copy of that hash and one update)."""
    prefix = sha256(_row_prefix(scope).encode())

    def row_id(key: str) -> bytes:
        digest = prefix.copy()
        digest.update(key.encode())
        return digest.digest()

    return row_id


class TaskRowIds:
    """:func:`task_row_id` for a caller that reads one scope's keys over and over.

    Joining the scope's four parts and hashing them is two thirds of a row id's cost
    (~0.6 µs, a tenth of a whole SQLite read). The scope seen twice in a row (the same
    object: an accessor reused) gets its part hashed once and kept; each key then costs
    a copy of that hash and one update. A scope seen once (an accessor built per call)
    costs what :func:`task_row_id` does, plus remembering it. The remembered pair is
    replaced whole, so threads sharing one instance at worst hash a prefix again.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[TaskScope | None, Callable[[str], bytes] | None] = (None, None)

    def __call__(self, scope: TaskScope, key: str) -> bytes:
        last, row_id = self._last
        if last is not scope:
            self._last = (scope, None)  # a second call with it builds the prefix
            return task_row_id(scope, key)
        if row_id is None:
            row_id = task_row_hasher(scope)
            self._last = (scope, row_id)
        return row_id(key)


def key_digest(key: str) -> bytes:
    """Identity of an asset-state key within its asset."""
    return sha256(key.encode()).digest()


def ref_digest(name_or_uri: str) -> bytes:
    """Identity of an asset name or uri in the registry."""
    return sha256(name_or_uri.encode()).digest()
