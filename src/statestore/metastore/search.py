"""The web UI's search across scopes: task ids and keys by prefix in every dag (and
asset), then where an exact one is. Plans for :func:`statestore.metastore.browse.fetch`.

============================  ===============================================
query                         index (migration 0003)
============================  ===============================================
:func:`task_ids`              ``ix_statestore_task_state_task_id``: one seek per id
:func:`key_names`             ``ix_statestore_task_state_key`` (asset state:
                              ``ix_statestore_asset_state_key``): one seek per key
:func:`task_runs`             the task-id index, reading the rows of that one id
:func:`key_holders`,          the key indexes, reading the rows of that one key:
:func:`asset_holders`         a search narrows to one exact id before it lists
                              where it is, so it never reads the whole table
============================  ===============================================

SQLite has neither search index since migration 0006: there each search reads the
table (one pass per page, not one per value; see :meth:`.browse.SkipScan.scan`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, tuple_

from statestore.metastore.browse import Page, Plan, _as, _distinct, _fields, _ts
from statestore.metastore.tables import asset, asset_state
from statestore.scopes import TaskScope

__all__ = ["Holder", "asset_holders", "key_holders", "key_names", "task_ids", "task_runs"]


def task_ids(*, prefix: str = "", after: str = "", limit: int = 50) -> Plan[Page[str]]:
    """Task ids (in any dag and run) that start with ``prefix``: one seek each."""
    return _distinct(_ts.task_id, [], prefix, after, limit)


def task_runs(
    task_id: str, *, after: tuple[str, str] | None = None, limit: int = 50
) -> Plan[Page[tuple[str, str]]]:
    """``(dag_id, run_id)`` pairs that have task state of ``task_id``: reads the rows of
    that task id (its index), not the table."""
    where = [_ts.task_id == task_id]
    if after is not None:
        where.append(tuple_(_ts.dag_id, _ts.run_id) > tuple_(*after))
    rows = yield (
        select(_ts.dag_id, _ts.run_id)
        .where(*where)
        .distinct()
        .order_by(_ts.dag_id, _ts.run_id)
        .limit(limit + 1)
    )
    pairs = tuple((f[0], f[1]) for f in map(_fields, rows[:limit]))
    return Page(pairs, len(rows) > limit)


def key_names(
    *, asset_state: bool = False, prefix: str = "", after: str = "", limit: int = 50
) -> Plan[Page[str]]:
    """Keys that start with ``prefix``, in any task instance (or any asset): one seek
    each on the key index."""
    return _distinct(_as.key if asset_state else _ts.key, [], prefix, after, limit)


@dataclass(frozen=True)
class Holder:
    """A task instance that has a given key (``row_id``: the cursor of the next page)."""

    scope: TaskScope
    row_id: bytes


def key_holders(
    key: str, *, after: tuple[str, str, str, int, bytes] | None = None, limit: int = 50
) -> Plan[Page[Holder]]:
    """The task instances that have ``key``: reads the rows of that key (its index)."""
    order = (_ts.dag_id, _ts.run_id, _ts.task_id, _ts.map_index, _ts.row_id)
    where = [_ts.key == key]
    if after is not None:
        where.append(tuple_(*order) > tuple_(*after))
    rows = yield (select(*order, _ts.map_key).where(*where).order_by(*order).limit(limit + 1))
    holders = tuple(
        Holder(TaskScope(dag, run, task, index, map_key=map_key), row_id)
        for dag, run, task, index, row_id, map_key in (_fields(row) for row in rows[:limit])
    )
    return Page(holders, len(rows) > limit)


def asset_holders(key: str, *, after: str = "", limit: int = 50) -> Plan[Page[str]]:
    """The names of the assets that have ``key``."""
    rows = yield (
        select(asset.c.name)
        .join(asset_state, asset_state.c.asset_id == asset.c.id)
        .where(_as.key == key, asset.c.name > after)
        .order_by(asset.c.name)
        .limit(limit + 1)
    )
    return Page(tuple(row[0] for row in rows[:limit]), len(rows) > limit)
