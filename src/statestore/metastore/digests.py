"""Row identities as SHA-256 digests (pure functions; see ``tables`` for why)."""

from __future__ import annotations

from hashlib import sha256

from statestore.scopes import TaskScope

__all__ = ["key_digest", "ref_digest", "task_digest", "task_row_id"]

# NUL cannot occur in ids or keys (validated), so joining on it is unambiguous.
_SEP = "\x00"


def task_digest(scope: TaskScope) -> bytes:
    """Identity of a task (all map indices) within a run."""
    text = f"{scope.dag_id}{_SEP}{scope.run_id}{_SEP}{scope.task_id}"
    return sha256(text.encode()).digest()


def task_row_id(scope: TaskScope, key: str) -> bytes:
    """Identity of one task-state key of one task instance."""
    text = _SEP.join((scope.dag_id, scope.run_id, scope.task_id, scope.instance, key))
    return sha256(text.encode()).digest()


def key_digest(key: str) -> bytes:
    """Identity of an asset-state key within its asset."""
    return sha256(key.encode()).digest()


def ref_digest(name_or_uri: str) -> bytes:
    """Identity of an asset name or uri in the registry."""
    return sha256(name_or_uri.encode()).digest()
