"""PostgreSQL: the steady state's statements as calls of statestore's own functions.

statestore sends no named prepared statements by default (they collide behind a
transaction pooler), so PostgreSQL parses and plans each statement again, and that
planning is a good part of a short statement's server time: a task key's upsert took
299 µs unprepared against 192 µs prepared (docs/performance.md). A PL/pgSQL function
keeps the plans of its statements for as long as its server connection lives, for any
client on it, so behind PgBouncer too; calling it costs a little more than a prepared
statement and much less than planning. Migrations 0007 to 0009 create the functions;
each runs exactly the plain statement it stands for (tests run both side by side), so
the rows written and the refusals are the same.

Here are the calls, as SQLAlchemy statements whose parameters carry the plain
statement's own names: a plan's parameters serve either one unchanged.
:class:`FunctionCalls` says which plain statement runs as which call. A write's call
answers the rows it wrote as its value; a read's, the value (``NULL``: no live key).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, column, func, select

from statestore.metastore.compiled import compiled_plan
from statestore.metastore.tables import asset, asset_state, task_state

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql.expression import Executable

    from statestore.metastore import plans
    from statestore.metastore.compiled import CompiledStatement
    from statestore.metastore.statements import Statements

__all__ = [
    "ASSET_READ", "ASSET_REPLACE", "ASSET_REPLACE_OR_READ", "ASSET_WRITE", "TASK_READ",
    "TASK_REPLACE", "TASK_REPLACE_OR_READ", "TASK_WRITE", "FunctionCalls",
]  # fmt: skip


def _bound(table: Table, name: str, column_name: str | None = None) -> Any:
    """A parameter typed as ``table``'s column (its own name unless ``column_name``)."""
    return bindparam(name, type_=table.c[column_name or name].type)


def _task(name: str, column_name: str | None = None) -> Any:
    return _bound(task_state, name, column_name)


def _asset(name: str, column_name: str | None = None) -> Any:
    return _bound(asset_state, name, column_name)


ASSET_READ: Executable = select(column("value"), column("version")).select_from(
    func.statestore_asset_read(
        _asset("asset_id"), _asset("key_digest"), _asset("now", "updated_at")
    )
)
"""Migration 0007: the live value and version of an asset's key, by the asset's id (a
get takes the value, ``update`` both)."""

ASSET_REPLACE: Executable = select(
    func.statestore_asset_replace(
        _asset("w_asset_id", "asset_id"), _asset("w_key_digest", "key_digest"),
        _asset("if_version", "version"), _asset("value"), _asset("expires_at"),
        _asset("updated_at"), _asset("updated_by"), _asset("now", "updated_at"),
    )
)  # fmt: skip
"""Migration 0007: an active asset's live key replaced at the version read, by the
asset's id (``update``'s compare-and-set)."""

ASSET_REPLACE_OR_READ: Executable = select(
    column("live_value"), column("live_version")
).select_from(
    func.statestore_asset_replace_or_read(
        _asset("w_asset_id", "asset_id"), _asset("w_key_digest", "key_digest"),
        _asset("if_version", "version"), _asset("value"), _asset("expires_at"),
        _asset("updated_at"), _asset("updated_by"), _asset("now", "updated_at"),
    )
)  # fmt: skip
"""Migration 0009: :data:`ASSET_REPLACE`'s write, answering no row when it wrote and
otherwise the live key's text and version (``NULL`` and 0: no live key), so that a
lost race in ``update()`` costs one statement."""

TASK_READ: Executable = select(
    func.statestore_task_read(_task("row_id"), _task("now", "updated_at"))
)
"""Migration 0008: the live value of a task key (``DirectReads``' get)."""

TASK_WRITE: Executable = select(
    func.statestore_task_write(
        _task("row_id"), _task("task_digest"), _task("dag_id"), _task("run_id"),
        _task("task_id"), _task("map_index"), _task("map_key"), _task("key"),
        _task("value"), _task("expires_at"), _task("updated_at"), _task("version"),
        _task("updated_by"),
    )
)  # fmt: skip
"""Migration 0008: ``statements.task_set``, a task key's upsert."""

TASK_REPLACE: Executable = select(
    func.statestore_task_replace(
        _task("w_row_id", "row_id"), _task("if_version", "version"), _task("value"),
        _task("expires_at"), _task("updated_at"), _task("updated_by"),
        _task("now", "updated_at"),
    )
)  # fmt: skip
"""Migration 0008: ``statements.task_replace``, a live task key replaced at a version."""

TASK_REPLACE_OR_READ: Executable = select(
    column("live_value"), column("live_version")
).select_from(
    func.statestore_task_replace_or_read(
        _task("w_row_id", "row_id"), _task("if_version", "version"), _task("value"),
        _task("expires_at"), _task("updated_at"), _task("updated_by"),
        _task("now", "updated_at"),
    )
)  # fmt: skip
"""Migration 0009: :data:`TASK_REPLACE`'s write, answering as
:data:`ASSET_REPLACE_OR_READ` does."""

ASSET_WRITE: Executable = select(
    func.statestore_asset_write(
        _bound(asset, "asset_digest", "name_digest"), _asset("key_digest"), _asset("key"),
        _asset("version"), _asset("value"), _asset("updated_at"), _asset("updated_by"),
        _asset("expires_at"),
    )
)  # fmt: skip
"""Migration 0008: ``statements.asset_set["name"]``, an upsert into an active asset
found by name (no row written: the general path registers it or says why)."""


class FunctionCalls:
    """Which of a backend's plain write statements run as a function call: on
    PostgreSQL the task upsert and compare-and-set and the asset upsert by name;
    elsewhere none, nor where statements are prepared (``prepared``: the
    direct-connection opt-in, under which a plain statement's plan is kept already and
    a call would only add the function's own cost). ``enabled`` says which: the
    backend's reads and ``update()`` follow it too."""

    __slots__ = ("_calls", "enabled")

    def __init__(self, statements: Statements, family: str, *, prepared: bool = False) -> None:
        self._calls: dict[int, Executable] = {}
        self.enabled = family == "postgresql" and not prepared
        if self.enabled:
            self._calls = {
                id(statements.task_set): TASK_WRITE,
                id(statements.task_replace): TASK_REPLACE,
                id(statements.asset_set["name"]): ASSET_WRITE,
            }

    def of(self, statement: Any) -> Executable | None:
        """The call that stands for ``statement``, or ``None``: it runs as it is."""
        return self._calls.get(id(statement))

    def compiled(
        self, plan: plans.Plan, cache: dict[int, CompiledStatement], dialect: Dialect
    ) -> tuple[str, Any] | None:
        """The SQL and driver parameters of ``plan``'s call (``None``: no call stands
        for its statement). The call answers the rows written as its value."""
        call = self._calls.get(id(plan.statement))
        if call is None:
            return None
        compiled = compiled_plan(cache, call, plan.params, dialect)
        return compiled.sql, compiled.parameters(plan.params)
