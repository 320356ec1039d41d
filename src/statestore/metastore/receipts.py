"""Conditional writes with a receipt: applied once however often the request arrives.

``MetastoreStateBackend.set_item_once`` is what a state server calls for a
compare-and-set or create-only write that names a write id (see
:mod:`statestore.write_ids`). The receipt and the write commit together or not at
all, whoever else writes the key in between:

- **PostgreSQL** (our own engine): one statement on the hot path,
  ``WITH written AS (<the write, only if no receipt yet> RETURNING 1) INSERT INTO
  statestore_write_receipt SELECT … FROM written`` (``statements.ReceiptedWrites``).
  Rowcount 1: applied now. Otherwise one lookup of the receipt tells a copy (answered
  as applied) from a lost race (the conflict, as ``set_item`` raises it) -- or, for
  an asset the registry does not know as writable, the transaction below. One round
  trip in the steady state, as a plain compare-and-set; a hot-path retry after a
  dropped connection is safe, being a copy itself.
- **Elsewhere** (SQLite, MariaDB, a host's engine): one transaction. First insert the
  receipt if it is not there (``ON CONFLICT DO NOTHING`` / ``ON DUPLICATE KEY``); found
  already, a copy was applied and committed before -- roll back, answer as applied. A
  copy still in flight holds the receipt's index entry, so this waits for it to end.
  Then the conditional write exactly as ``set_item`` plans it (the registry's slow
  path included); commit if it matched, else roll back, taking the receipt with it,
  and raise the same ``VersionConflictError``. Four round trips (begin, two
  statements, commit) instead of one. A deadlock victim (InnoDB, when writers of one
  key from two server processes meet on the receipt's and the row's locks) is run
  again after a short random pause, as the hot path does, up to ``DEADLOCK_RETRIES``.

Only conditional writes that name a write id pay this; the direct path writes no
receipts. Receipts older than :data:`~statestore.write_ids.RECEIPT_TTL` are removed
before a write, at most once a minute per backend, and by ``cleanup``. The sync and
async twins differ only by ``await``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Delete, Insert, bindparam, delete, insert
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from statestore.metastore import plans, registry
from statestore.metastore.errors import translate_errors
from statestore.metastore.retries import DEADLOCK_RETRIES, deadlock_pause, is_deadlock
from statestore.metastore.statements import build_receipted_writes
from statestore.metastore.tables import write_receipt
from statestore.retention import utcnow
from statestore.write_ids import PRUNE_EVERY_S, RECEIPT_TTL, receipt_id

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from statestore.metastore.connections import Connections, LoopEngine
    from statestore.metastore.statements import Statements
    from statestore.scopes import StateScope

__all__ = ["WriteReceipts", "prune_before", "prune_statement"]

_BEGIN = {"sqlite": "BEGIN IMMEDIATE", "postgresql": "BEGIN", "mysql": "START TRANSACTION"}
"""On our own autocommit connections a transaction is begun in SQL. SQLite's IMMEDIATE
takes the write lock first, so a copy in flight is waited for (busy timeout), not
raced."""


@cache
def _insert_receipt(family: str, own_engine: bool) -> Insert:
    """Insert a receipt unless it is there; rowcount 0: a copy was applied before
    (SQLAlchemy keeps an INSERT's rowcount only when asked to).

    MySQL/MariaDB: ``ON DUPLICATE KEY UPDATE`` that changes nothing, which our own
    engines (changed rows, not found rows) count as 0 -- not ``INSERT IGNORE``, whose
    duplicate is a warning that asyncmy fetches (one more round trip) and logs. A
    host's engine counts found rows, so there it is ``INSERT IGNORE``.
    """
    values: dict[str, Any] = {
        "receipt_id": bindparam("receipt_id"),
        "created_at": bindparam("created_at"),
    }
    stmt: Insert
    if family == "mysql" and own_engine:
        upsert = mysql.insert(write_receipt).values(values)
        stmt = upsert.on_duplicate_key_update(receipt_id=upsert.inserted.receipt_id)
    elif family == "mysql":
        stmt = insert(write_receipt).values(values).prefix_with("IGNORE")
    else:
        dialect_insert = postgresql.insert if family == "postgresql" else sqlite.insert
        stmt = (
            dialect_insert(write_receipt)
            .values(values)
            .on_conflict_do_nothing(index_elements=[write_receipt.c.receipt_id])
        )
    return stmt.execution_options(preserve_rowcount=True)


_SLOW = ("asset_write", "asset_cas")
"""As in the backend: an asset write that matched no row may need the registry."""


def prune_statement() -> Delete:
    """Remove receipts older than :data:`~statestore.write_ids.RECEIPT_TTL` (``before``)."""
    return delete(write_receipt).where(write_receipt.c.created_at < bindparam("before"))


def prune_before(now: datetime) -> dict[str, datetime]:
    """The parameters of :func:`prune_statement` at ``now``."""
    return {"before": now - RECEIPT_TTL}


class WriteReceipts:
    """``set_item_once`` and its async twin (see the module docstring)."""

    keeps_write_receipts = True
    """Receipts in ``statestore_write_receipt``, committed with each write."""

    _statements: Statements
    _connections: Connections
    _family: str
    _own_engine: bool
    _host_async_engine: AsyncEngine | None
    _auto_register: bool
    _sync_url: URL
    _async_url: URL
    _schema_ready: bool
    _receipts_pruned_at = float("-inf")
    """``time.monotonic()`` of this backend's last removal of old receipts."""
    _receipted_writes: _Receipted | None = None
    """PostgreSQL: each conditional write's one-statement twin, built on first use."""

    if TYPE_CHECKING:

        def ensure_schema(self) -> None: ...
        async def aensure_schema(self) -> None: ...
        def _finish(self, plan: plans.Plan, result: Any) -> Any: ...
        async def _afinish(self, plan: plans.Plan, result: Any) -> Any: ...
        def _run_fast(self, plan: plans.Plan) -> Any: ...
        async def _arun_fast(self, state: LoopEngine, plan: plans.Plan) -> Any: ...
        @property
        def engine(self) -> Engine: ...
        @property
        def async_engine(self) -> AsyncEngine: ...

    def _prune_due(self) -> bool:
        """Whether to remove old receipts now (two threads may both do it: harmless)."""
        moment = time.monotonic()
        if moment - self._receipts_pruned_at < PRUNE_EVERY_S:
            return False
        self._receipts_pruned_at = moment
        return True

    def _postgresql_plans(
        self, plan: plans.Plan, receipt: dict[str, Any]
    ) -> tuple[plans.Plan, plans.Plan]:
        """``plan`` as one statement that commits its receipt too, and the receipt's
        lookup (``statements.ReceiptedWrites``)."""
        receipted = self._receipted_writes
        if receipted is None:
            receipted = self._receipted_writes = _Receipted(self._statements)
        write = plans.Plan(
            plan.kind, receipted.by_statement[id(plan.statement)],
            {**plan.params, **receipt}, plan.scope, plan.if_version, plan.key,
        )  # fmt: skip
        found = plans.Plan(
            "read", receipted.found, {"receipt_id": receipt["receipt_id"]}, plan.scope
        )
        return write, found

    def _receipt_plan(
        self, scope: StateScope, key: str, value: str, write_id: str, expires_at: datetime | None,
        if_version: int, updated_by: str | None, *, own: bool,
    ) -> tuple[plans.Plan, dict[str, Any]]:  # fmt: skip
        """The write's plan and its receipt's parameters (``own``: on our own engine)."""
        now = utcnow()
        plan = plans.set_(
            self._statements, scope, key, value, expires_at, now,
            updated_by=updated_by, if_version=if_version,
        )  # fmt: skip
        if not own:
            plans.check_host_cas(plan, self._family)  # as set_item on a host's engine
        return plan, {"receipt_id": receipt_id(scope, key, write_id), "created_at": now}

    def set_item_once(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        write_id: str,
        if_version: int,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
    ) -> None:
        """``set_item(..., if_version=...)`` that a copy of the same write (the same
        ``write_id``) answers as applied instead of applying or refusing it again."""
        if not self._schema_ready:
            self.ensure_schema()
        own = self._own_engine
        plan, receipt = self._receipt_plan(
            scope, key, value, write_id, expires_at, if_version, updated_by, own=own
        )
        if self._prune_due():  # before the write: a failure here has written nothing
            with translate_errors(self._sync_url), self._connect() as conn, conn.begin():
                conn.execute(prune_statement(), prune_before(receipt["created_at"]))
        if own and self._family == "postgresql":  # one statement, on the hot path
            write, found = self._postgresql_plans(plan, receipt)
            if self._run_fast(write) or self._run_fast(found):
                return  # applied now, or a copy of a write applied before
            if plan.kind == "cas":
                self._finish(plan, 0)  # a task's lost race: the conflict, after a read
            if plan.kind == "asset_cas" and plan.if_version:  # a lost race, most likely
                read = self._writable(plan)
                plans.raise_if_lost(plan, plans.returned(read, self._run_fast(read)))
            # else the registry has a say (unknown or inactive asset): the whole path
        once = self._once_args(plan, receipt, own)
        with translate_errors(self._sync_url):
            for attempt in range(DEADLOCK_RETRIES + 1):
                try:
                    with self._connect() as conn:
                        outcome = _write_once(conn, once)
                    break
                except sa_exc.DBAPIError as exc:
                    if not _retried(exc, attempt):
                        raise
                time.sleep(deadlock_pause(attempt))
        if outcome is False:
            self._finish(plan, 0)  # raises the conflict set_item raises, after a read

    async def aset_item_once(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        write_id: str,
        if_version: int,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
    ) -> None:
        """Async twin of :meth:`set_item_once`."""
        if not self._schema_ready:
            await self.aensure_schema()
        own = self._host_async_engine is None
        if own and self._family == "sqlite":
            # The one exception to "the twins differ by await": through aiosqlite every
            # cursor call is a hop to its thread (24 for this transaction), so the sync
            # transaction runs in a worker thread instead -- 3x faster, measured.
            await asyncio.to_thread(
                self.set_item_once, scope, key, value, write_id=write_id,
                if_version=if_version, expires_at=expires_at, updated_by=updated_by,
            )  # fmt: skip
            return
        plan, receipt = self._receipt_plan(
            scope, key, value, write_id, expires_at, if_version, updated_by, own=own
        )
        if self._prune_due():
            with translate_errors(self._async_url):
                async with self._aconnect() as conn, conn.begin():
                    await conn.execute(prune_statement(), prune_before(receipt["created_at"]))
        if own and self._family == "postgresql":
            write, found = self._postgresql_plans(plan, receipt)
            state = self._connections.loop_engine()
            if await self._arun_fast(state, write) or await self._arun_fast(state, found):
                return
            if plan.kind == "cas":
                await self._afinish(plan, 0)
            if plan.kind == "asset_cas" and plan.if_version:
                read = self._writable(plan)
                row = await self._arun_fast(state, read)
                plans.raise_if_lost(plan, plans.returned(read, row))
        once = self._once_args(plan, receipt, own)
        with translate_errors(self._async_url):
            for attempt in range(DEADLOCK_RETRIES + 1):
                try:
                    async with self._aconnect() as conn:  # one hop into the sync core below
                        outcome = await conn.run_sync(_write_once, once)
                    break
                except sa_exc.DBAPIError as exc:
                    if not _retried(exc, attempt):
                        raise
                await asyncio.sleep(deadlock_pause(attempt))
        if outcome is False:
            await self._afinish(plan, 0)

    def _writable(self, plan: plans.Plan) -> plans.Plan:
        return plans.get_writable_item(self._statements, plan)

    def _once_args(self, plan: plans.Plan, receipt: dict[str, Any], own: bool) -> _Once:
        return _Once(
            plan, receipt, _insert_receipt(self._family, own), self._statements,
            self._auto_register, _BEGIN[self._family] if own else None,
        )  # fmt: skip

    def _connect(self) -> contextlib.AbstractContextManager[Connection]:
        """Our own autocommit connection (the hot path's, handed back), or the host's."""
        return self._connections.connect() if self._own_engine else self.engine.connect()

    def _aconnect(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """Async twin of :meth:`_connect`."""
        host = self._host_async_engine
        return self._connections.aconnect() if host is None else host.connect()


@dataclass(frozen=True, slots=True)
class _Once:
    """What one conditional write with a receipt runs (see :func:`_write_once`)."""

    plan: plans.Plan
    receipt: dict[str, Any]
    insert_receipt: Insert
    statements: Statements
    auto_register: bool
    begin: str | None
    """SQL that begins the transaction on an autocommit connection; ``None``: a host's
    connection, on which SQLAlchemy begins it."""


def _retried(exc: sa_exc.DBAPIError, attempt: int) -> bool:
    """Whether to run the transaction again: the database chose it as a deadlock victim
    and rolled it back whole (InnoDB, when writers of one key meet on the receipt's and
    the row's locks), and attempts are left. Running it again is what a copy does."""
    return is_deadlock(exc) and attempt < DEADLOCK_RETRIES


def _write_once(conn: Connection, once: _Once) -> bool | None:
    """The transaction, whole: ``True`` applied, ``None`` a copy of a write applied
    before, ``False`` lost (rolled back, receipt and all). The sync core of both twins:
    the async one runs it in one ``run_sync`` hop instead of a hop per statement."""
    plan = once.plan
    if once.begin is not None:
        conn.exec_driver_sql(once.begin)
    else:
        conn.begin()
    try:
        if not conn.execute(once.insert_receipt, once.receipt).rowcount:
            outcome: bool | None = None
        else:
            result = plans.result_of(plan, conn.execute(plan.statement, plan.params))
            if plan.kind in _SLOW and not result:
                result = registry.write_after_miss(
                    conn, once.statements, plan, once.auto_register, savepoint=False
                )
            outcome = bool(result)
    except BaseException:
        _end(conn, once, commit=False)
        raise
    _end(conn, once, commit=bool(outcome))
    return outcome


def _end(conn: Connection, once: _Once, *, commit: bool) -> None:
    """Commit or roll back; a connection that cannot roll back is thrown away (the
    database rolls back an open transaction when its connection goes)."""
    if once.begin is None:
        if commit:
            conn.commit()
        else:
            conn.rollback()
        return
    if commit:
        conn.exec_driver_sql("COMMIT")
        return
    try:
        conn.exec_driver_sql("ROLLBACK")
    except Exception:  # noqa: BLE001 - broken: invalidated, and so rolled back
        conn.invalidate()


class _Receipted:
    """:func:`~statestore.metastore.statements.build_receipted_writes` by the statement
    each replaces (a backend's own ``Statements``, kept as long as the backend)."""

    def __init__(self, stmts: Statements) -> None:
        writes = build_receipted_writes()
        self.found = writes.receipt_found
        self.by_statement: dict[int, Insert] = {
            id(stmts.task_replace): writes.task_replace,
            id(stmts.task_create): writes.task_create,
        }
        for lookup, replace in stmts.asset_replace.items():
            self.by_statement[id(replace)] = writes.asset_replace[lookup]
        for lookup, create in stmts.asset_create.items():
            self.by_statement[id(create)] = writes.asset_create[lookup]
