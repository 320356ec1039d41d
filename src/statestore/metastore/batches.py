"""Batches on the metastore: one statement per batch, run like every other operation.

``MetastoreBatches`` is mixed into ``MetastoreStateBackend``. Each batch is planned here
(pure: statement from :mod:`statestore.metastore.batch_statements`, parameters from the
scope and keys) and run on the backend's own autocommit hot path -- one statement, one
round trip on PostgreSQL and MySQL, one implicit transaction on SQLite, so it is
atomic: every key is written or none is. Through a host's session or engine, the same
statement runs in the host's transaction. An asset batch for an asset that is not
registered yet goes through the same slow path as a single write: registered once,
then the batch runs again.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from datetime import datetime
from hashlib import sha256
from typing import TYPE_CHECKING, Any

from statestore.items import StoredItem
from statestore.metastore import plans, registry
from statestore.metastore.batch_statements import (
    ARRAYS,
    CACHED_SIZES,
    TASK_SHARED,
    BatchKind,
    batch_statement,
)
from statestore.metastore.compiled import CompiledStatement, compile_statement
from statestore.metastore.digests import task_digest, task_row_id
from statestore.metastore.errors import translate_errors
from statestore.retention import utcnow
from statestore.scopes import StateScope, TaskScope

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
    from sqlalchemy.orm import Session

    from statestore.metastore.compiled import ItemRows
    from statestore.metastore.connections import Connections
    from statestore.metastore.statements import Statements

__all__ = ["MetastoreBatches", "plan_batch"]


@functools.lru_cache(maxsize=4 * CACHED_SIZES)
def _names(column: str, n: int) -> tuple[str, ...]:
    """The bind names of one column of a batch of ``n`` (``row_id_0``, ``row_id_1``, ...)."""
    return tuple(f"{column}_{i}" for i in range(n))


def _row_ids(scope: TaskScope, keys: Sequence[str]) -> list[bytes]:
    """``digests.task_row_id`` of every key, the scope's part joined once."""
    probe = task_row_id(scope, keys[0])
    prefix = "\x00".join((scope.dag_id, scope.run_id, scope.task_id, scope.instance, ""))
    ids = [sha256((prefix + key).encode()).digest() for key in keys]
    assert ids[0] == probe  # the same identity as a single-key write, or nothing is found
    return ids


def plan_batch(
    family: str,
    kind: BatchKind,
    scope: StateScope,
    keys: Sequence[str],
    *,
    values: Sequence[str] = (),
    expires_at: datetime | None = None,
    updated_by: str | None = None,
    now: datetime | None = None,
) -> plans.Plan:
    """The statement and parameters of one batch (``values`` line up with ``keys``)."""
    arrays = family == "postgresql"  # one statement for every size: see batch_statements
    n = 0 if arrays else len(keys)
    params: dict[str, Any]
    if isinstance(scope, TaskScope):
        lookup = None
        ids = _row_ids(scope, keys)
        params = {"row_ids": ids} if arrays else dict(zip(_names("row_id", n), ids, strict=True))
    else:
        lookup, params = plans._asset_lookup(scope)
        digests = [sha256(key.encode()).digest() for key in keys]  # digests.key_digest
        if arrays:
            params["key_digests"] = digests
        else:
            params.update(zip(_names("key_digest", n), digests, strict=True))
    statement = batch_statement(family, kind, lookup, n)
    if kind in ("get", "get_items"):
        params["now"] = now
        return plans.Plan("read_rows", statement, params, scope)
    if kind == "delete":
        return plans.Plan("write", statement, params, scope)
    params.update(updated_at=now, updated_by=updated_by, expires_at=expires_at)
    if arrays:
        params.update(keys=list(keys), values=list(values))
    else:
        params.update(zip(_names("key", n), keys, strict=True))
        params.update(zip(_names("value", n), values, strict=True))
    if lookup is None:
        assert isinstance(scope, TaskScope)
        shared = (task_digest(scope), scope.dag_id, scope.run_id, scope.task_id,
                  scope.map_index, scope.map_key)  # fmt: skip
        params.update(zip(TASK_SHARED, shared, strict=True))
        return plans.Plan("write", statement, params, scope)
    return plans.Plan("asset_write", statement, params, scope)


def _found(kind: BatchKind, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """``{key: JSON text}`` or ``{key: StoredItem}`` from processed rows."""
    if kind == "get":
        return {row[0]: row[1] for row in rows}
    return {row[0]: StoredItem(row[1], int(row[2]), *row[3:]) for row in rows}


class MetastoreBatches:
    """The eight batch methods of ``MetastoreStateBackend`` (see the module docstring)."""

    _family: str
    _statements: Statements
    _connections: Connections
    _own_engine: bool
    _host_async_engine: AsyncEngine | None
    _auto_register: bool
    _schema_ready: bool
    _sync_url: URL
    _async_url: URL
    _rows: ItemRows

    if TYPE_CHECKING:

        @property
        def engine(self) -> Engine: ...
        @property
        def async_engine(self) -> AsyncEngine: ...
        def ensure_schema(self) -> None: ...
        async def aensure_schema(self) -> None: ...
        def _savepoints(self, host: bool) -> bool: ...

    def _batch_sql(self, plan: plans.Plan, dialect: Any, side: str) -> CompiledStatement:
        caches: dict[str, dict[int, tuple[Any, CompiledStatement]]] = self.__dict__.setdefault(
            "_batch_compiled", {"sync": {}, "async": {}}
        )
        cache = caches[side]
        # Keyed by the statement's id, and the entry holds the statement itself: while
        # it is cached, its id cannot be reused by another statement.
        entry = cache.get(id(plan.statement))
        if entry is None or entry[0] is not plan.statement:
            if len(cache) >= CACHED_SIZES:
                cache.clear()
            compiled = compile_statement(plan.statement, dialect)
            kept = tuple(p for p in compiled.processors if p[0] not in ARRAYS)
            compiled = dataclasses.replace(compiled, processors=kept)
            entry = cache[id(plan.statement)] = (plan.statement, compiled)
        return entry[1]

    def _fast_rows(self, kind: BatchKind, rows: list[tuple[Any, ...]], dialect: Any) -> Any:
        if kind == "get":
            return {row[0]: row[1] for row in rows}
        return {row[0]: StoredItem(*self._rows.item(row[1:], dialect)) for row in rows}

    # -- sync ---------------------------------------------------------------------------

    def _batch(self, kind: BatchKind, plan: plans.Plan, session: Session | None) -> Any:
        if not self._schema_ready:
            self.ensure_schema()
        if session is not None:  # the host's transaction: it commits or rolls back
            with translate_errors(self._sync_url):
                return self._batch_in(session.connection(), kind, plan, host=True)
        if not self._own_engine:
            with translate_errors(self._sync_url), self.engine.begin() as conn:
                return self._batch_in(conn, kind, plan, host=True)
        dialect = self.engine.dialect
        compiled = self._batch_sql(plan, dialect, "sync")
        reading = plan.kind == "read_rows"
        hotpath = self._connections.sync_hotpath()
        run = hotpath.run if reading else hotpath.run_plain  # a write's row count is plain
        result = run(
            compiled.sql, compiled.parameters(plan.params), fetch="rows" if reading else "rowcount"
        )
        if reading:
            return self._fast_rows(kind, result, dialect)
        if plan.kind == "asset_write" and not result:
            with translate_errors(self._sync_url), self._connections.connect() as conn:
                result = registry.write_after_miss(
                    conn, self._statements, plan, self._auto_register, savepoint=False
                )
            if not result:
                plans.check_writable(plan.scope, None)
        return None

    def _batch_in(self, conn: Connection, kind: BatchKind, plan: plans.Plan, *, host: bool) -> Any:
        result = conn.execute(plan.statement, plan.params)
        if plan.kind == "read_rows":
            return _found(kind, [tuple(row) for row in result])
        if plan.kind == "asset_write" and not result.rowcount:
            written = registry.write_after_miss(
                conn, self._statements, plan, self._auto_register,
                savepoint=self._savepoints(host),
            )  # fmt: skip
            if not written:
                plans.check_writable(plan.scope, None)
        return None

    def get_many(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> dict[str, str]:
        """The live keys of ``keys``: one ``SELECT … IN``/``= ANY`` round trip."""
        plan = plan_batch(self._family, "get", scope, keys, now=utcnow())
        found: dict[str, str] = self._batch("get", plan, session)
        return found

    def get_items(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> dict[str, StoredItem]:
        """``get_many`` with versions and provenance, in the same one round trip."""
        plan = plan_batch(self._family, "get_items", scope, keys, now=utcnow())
        found: dict[str, StoredItem] = self._batch("get_items", plan, session)
        return found

    def set_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        *,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
        session: Session | None = None,
    ) -> None:
        """Upsert every entry in one statement, one round trip: all or nothing."""
        keys, values = [k for k, _ in entries], [v for _, v in entries]
        plan = plan_batch(
            self._family, "set", scope, keys, values=values, expires_at=expires_at,
            updated_by=updated_by, now=utcnow(),
        )  # fmt: skip
        self._batch("set", plan, session)

    def delete_many(
        self, scope: StateScope, keys: Sequence[str], *, session: Session | None = None
    ) -> None:
        """Delete ``keys`` in one statement, one round trip."""
        self._batch("delete", plan_batch(self._family, "delete", scope, keys), session)

    # -- async: the same plans, awaited ---------------------------------------------------

    async def _abatch(self, kind: BatchKind, plan: plans.Plan, session: AsyncSession | None) -> Any:
        if not self._schema_ready:
            await self.aensure_schema()
        if session is not None:
            with translate_errors(self._async_url):
                return await self._abatch_in(await session.connection(), kind, plan, host=True)
        if self._host_async_engine is not None:
            with translate_errors(self._async_url):
                async with self.async_engine.begin() as conn:
                    return await self._abatch_in(conn, kind, plan, host=True)
        state = self._connections.loop_engine()
        dialect = state.engine.dialect
        compiled = self._batch_sql(plan, dialect, "async")
        reading = plan.kind == "read_rows"
        run = state.hotpath.run if reading else state.hotpath.run_plain  # as the sync twin
        result = await run(
            compiled.sql, compiled.parameters(plan.params), fetch="rows" if reading else "rowcount"
        )
        if reading:
            return self._fast_rows(kind, result, dialect)
        if plan.kind == "asset_write" and not result:
            with translate_errors(self._async_url):
                async with self._connections.aconnect() as conn:
                    result = await registry.awrite_after_miss(
                        conn, self._statements, plan, self._auto_register, savepoint=False
                    )
            if not result:
                plans.check_writable(plan.scope, None)
        return None

    async def _abatch_in(
        self, conn: AsyncConnection, kind: BatchKind, plan: plans.Plan, *, host: bool
    ) -> Any:
        result = await conn.execute(plan.statement, plan.params)
        if plan.kind == "read_rows":
            return _found(kind, [tuple(row) for row in result])
        if plan.kind == "asset_write" and not result.rowcount:
            written = await registry.awrite_after_miss(
                conn, self._statements, plan, self._auto_register,
                savepoint=self._savepoints(host),
            )  # fmt: skip
            if not written:
                plans.check_writable(plan.scope, None)
        return None

    async def aget_many(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> dict[str, str]:
        """Async twin of :meth:`get_many`."""
        plan = plan_batch(self._family, "get", scope, keys, now=utcnow())
        found: dict[str, str] = await self._abatch("get", plan, session)
        return found

    async def aget_items(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> dict[str, StoredItem]:
        """Async twin of :meth:`get_items`."""
        plan = plan_batch(self._family, "get_items", scope, keys, now=utcnow())
        found: dict[str, StoredItem] = await self._abatch("get_items", plan, session)
        return found

    async def aset_many(
        self,
        scope: StateScope,
        entries: Sequence[tuple[str, str]],
        *,
        expires_at: datetime | None = None,
        updated_by: str | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        """Async twin of :meth:`set_many`."""
        keys, values = [k for k, _ in entries], [v for _, v in entries]
        plan = plan_batch(
            self._family, "set", scope, keys, values=values, expires_at=expires_at,
            updated_by=updated_by, now=utcnow(),
        )  # fmt: skip
        await self._abatch("set", plan, session)

    async def adelete_many(
        self, scope: StateScope, keys: Sequence[str], *, session: AsyncSession | None = None
    ) -> None:
        """Async twin of :meth:`delete_many`."""
        await self._abatch("delete", plan_batch(self._family, "delete", scope, keys), session)
