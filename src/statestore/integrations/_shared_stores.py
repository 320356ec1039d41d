"""One :class:`StateStore` per process and configuration, for hosts with no close hook.

An orchestrator builds a backend or a resource wherever it needs one (Airflow's API
server per process, a forked worker inheriting the parent's instance...) and never
tells it to close. A store per instance would keep its connections checked out until
garbage collection (one sync, one per event loop), so the integrations share one store
per process and effective configuration instead: built on first use, closed at exit.

A forked child never receives the parent's stores: the cache starts empty in the
child and :func:`generation` changes, so anything bound to a store earlier knows to
ask again. The parent's stores stay referenced in the child (never used, never closed)
so that garbage collection there cannot run their connections' finalizers on sockets
the parent still uses.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading

from statestore.config import StateStoreConfig
from statestore.store import StateStore

__all__ = ["generation", "shared_store"]

_stores: dict[str, StateStore] = {}
_lock = threading.Lock()
_generation = 0
_inherited: list[StateStore] = []  # a forked child's copies of the parent's stores


def generation() -> int:
    """Changes in a forked child (and at exit, once the stores are closed): a store
    obtained under another generation is not one to use now."""
    return _generation


def shared_store(config: StateStoreConfig) -> StateStore:
    """This process's store for ``config``, built on first use.

    Two configurations share a store only when every setting is equal (the database URL
    and the rest), so a store never runs with settings its caller did not ask for.
    """
    key = config.model_dump_json()
    with _lock:
        found = _stores.get(key)
        if found is None:
            found = _stores[key] = StateStore(config=config)
        return found


def _forget_parent_stores() -> None:
    global _generation, _lock  # noqa: PLW0603 - per-process state is the point
    _inherited.extend(_stores.values())
    _stores.clear()
    _generation += 1
    _lock = threading.Lock()  # a parent thread may have held it at fork time


def _close_stores() -> None:
    # Returns the connections before interpreter teardown, where collecting them would
    # warn about connections that were never checked in.
    global _generation  # noqa: PLW0603
    with _lock:
        stores = list(_stores.values())
        _stores.clear()
        _generation += 1  # a late caller (a daemon thread) gets a new store, not a closed one
    for store in stores:
        with contextlib.suppress(Exception):  # exiting: a store that cannot close is gone
            store.close()


os.register_at_fork(after_in_child=_forget_parent_stores)
atexit.register(_close_stores)
