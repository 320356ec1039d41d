"""Shortcuts for plain Python: state accessors over the default store, and run ids.

A script with no orchestrator still has runs: each cron firing is one. ``run_id_for``
names the run a moment belongs to -- the start of its schedule interval -- so a script
that crashes and is started again within the same interval resumes the same run's task
state, and the next interval starts a fresh one.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from statestore.accessors import AssetStateAccessor, TaskStateAccessor
from statestore.exceptions import InvalidTypeError, InvalidValueError
from statestore.retention import utcnow
from statestore.scopes import TaskScope
from statestore.store import StateStore, default_store

__all__ = ["asset_state", "run_id_for", "task_state"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def task_state(
    scope: TaskScope | str,
    run_id: str | None = None,
    task_id: str | None = None,
    map_index: int = -1,
    *,
    map_key: str | None = None,
    store: StateStore | None = None,
    updated_by: object = None,
) -> TaskStateAccessor:
    """The task state of one task instance, on ``store`` or :func:`default_store`.

    The same arguments as :meth:`StateStore.task_state`: a ``TaskScope``, or
    ``dag_id, run_id, task_id`` with optional ``map_index``/``map_key``::

        task_state("etl", run_id, "load")  # == task_state(TaskScope("etl", run_id, "load"))
    """
    return (store or default_store()).task_state(
        scope, run_id, task_id, map_index, map_key=map_key, updated_by=updated_by
    )


def asset_state(
    asset: object, *, store: StateStore | None = None, updated_by: object = None
) -> AssetStateAccessor:
    """The state of one asset (a name, an ``AssetScope`` or an object with .name/.uri)."""
    return (store or default_store()).asset_state(asset, updated_by=updated_by)


def run_id_for(every: timedelta, at: datetime | None = None) -> str:
    """The run a moment belongs to for a job run ``every`` interval: the interval's start
    in UTC, e.g. ``"2026-11-29T06:00:00+00:00"`` for an hourly job at 06:42.

    Intervals are counted from the Unix epoch, so every process agrees on them.
    """
    if not isinstance(every, timedelta):
        raise InvalidTypeError(f"every must be a timedelta, not {type(every).__name__}")
    if every <= timedelta(0):
        raise InvalidValueError(f"every must be positive, not {every}")
    moment = utcnow() if at is None else at
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidTypeError("at must be an aware datetime (naive times have no zone)")
    start = _EPOCH + ((moment - _EPOCH) // every) * every
    return start.isoformat()
