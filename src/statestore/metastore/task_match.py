"""The rows of one task instance (or of every map index of a task) as ``WHERE`` terms,
for the queries that are built without knowing the dialect (web UI, overview, CLI).

PostgreSQL and MariaDB index a task's rows by its digest (with the map index and key);
SQLite, since migration 0006, by its ids (``dag_id, run_id, task_id, map_index, key``)
and not by the digest. So the term compiles to whichever the dialect indexes: naming
both lets PostgreSQL's planner pick its browse index and sort an instance's keys, which
reads every key of the instance for one page. The backend's own statements, built per
dialect, do the same (``statements._task_is``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ColumnElement, and_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from statestore.metastore.digests import task_digest
from statestore.metastore.tables import task_rows_by_ids, task_state
from statestore.scopes import TaskScope

__all__ = ["task_match"]

_ts = task_state.c


class _TaskIs(ColumnElement[bool]):
    """One task's rows: by its ids on SQLite, by its digest elsewhere."""

    type = Boolean()
    inherit_cache = False  # UI and CLI queries; the hot path compiles its own once

    def __init__(self, scope: TaskScope) -> None:
        self.by_ids = and_(
            _ts.dag_id == scope.dag_id, _ts.run_id == scope.run_id, _ts.task_id == scope.task_id
        )
        self.by_digest = _ts.task_digest == task_digest(scope)


@compiles(_TaskIs)
def _compile_task_is(element: _TaskIs, compiler: SQLCompiler, **kw: Any) -> str:
    chosen = element.by_ids if task_rows_by_ids(compiler.dialect.name) else element.by_digest
    return str(compiler.process(chosen, **kw))


def task_match(scope: TaskScope, *, all_map_indices: bool = False) -> list[ColumnElement[bool]]:
    """``WHERE`` terms for ``scope``'s instance (a map key is the identity when given),
    or for every map index of its task."""
    task: ColumnElement[bool] = _TaskIs(scope)
    if all_map_indices:
        return [task]
    if scope.map_key is not None:
        return [task, _ts.map_key == scope.map_key]
    return [task, _ts.map_index == scope.map_index, _ts.map_key.is_(None)]
