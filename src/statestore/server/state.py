"""What one app holds: the store, the backend its routes call, and its limits."""

from __future__ import annotations

from dataclasses import dataclass

from statestore.backends.base import BaseStateBackend
from statestore.store import StateStore

__all__ = ["ServerState"]


@dataclass(frozen=True)
class ServerState:
    """Attached to the app as ``app.state.statestore`` when it is built (not in the
    lifespan: a host that mounts the app may not run a sub-app's lifespan)."""

    store: StateStore
    backend: BaseStateBackend
    """The store's row backend (``primary_backend``): values, and any worker-side
    references clients stored, pass through verbatim -- the server never follows a
    reference, so a token cannot make it read an object on a task's behalf."""
    max_value_bytes: int
    body_limit: int
    close_store: bool
    read_only: bool = False
    """Refuse every write, delete, clear, cleanup and asset change, API and UI alike
    (``ReadOnlyServerError``, 403); reads and dry runs still work."""
