"""``MetastoreStateBackend``: task and asset state in a SQL database via SQLAlchemy.

Each operation is planned by pure functions in ``plans`` (statement + parameters) and
executed here on a real sync or a real async engine; the two paths differ only by
``await``. A steady-state get/set/delete/clear is one autocommit statement (on
PostgreSQL some are function calls: ``pg_functions``), one round trip. The schema is
checked once, on first use; SQLite may migrate itself then.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from statestore.backends.base import BaseStateBackend
from statestore.exceptions import ConfigError, SchemaOutOfDateError
from statestore.items import StoredItem
from statestore.metastore import async_hotpath, lifecycle, plans
from statestore.metastore.asset_access import AssetAccess
from statestore.metastore.asset_ids import AssetIds
from statestore.metastore.batches import MetastoreBatches
from statestore.metastore.compiled import CompiledStatement, ItemRows, compiled_plan
from statestore.metastore.connections import Connections, LoopEngine
from statestore.metastore.deadlines import watched
from statestore.metastore.direct_reads import NOT_DIRECT, DirectReadAccess, DirectReads
from statestore.metastore.direct_writes import DirectWriteAccess, KeyWriters
from statestore.metastore.engine import (
    DEFAULT_TIMEOUT_S,
    EngineSettings,
    derive_urls,
    dialect_family,
    prepares,
)
from statestore.metastore.errors import translate_errors
from statestore.metastore.key_updates import KeyPlans
from statestore.metastore.listing import Listing
from statestore.metastore.pg_functions import FunctionCalls
from statestore.metastore.receipts import WriteReceipts
from statestore.metastore.schema import check_schema, run_upgrade, upgrade
from statestore.metastore.statements import build_statements
from statestore.retention import utcnow
from statestore.scopes import AssetScope, StateScope

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    from statestore.config import StateStoreConfig

__all__ = ["MetastoreStateBackend"]

_SLOW = frozenset({"asset_write", "asset_cas"})
"""Asset writes whose rowcount 0 may mean "asset not registered yet": the slow path
registers it (if allowed) and writes again."""


class MetastoreStateBackend(
    AssetAccess, DirectReadAccess, DirectWriteAccess, MetastoreBatches, Listing, WriteReceipts,
    BaseStateBackend,
):  # fmt: skip
    """State in SQLite, PostgreSQL or MySQL/MariaDB, through SQLAlchemy 2.

    Give a URL (sync or async driver; the twin is derived) or your own engines. The
    engines are created lazily: a sync-only program never imports an async driver.
    An async engine is kept per event loop, because async connections belong to the
    loop that opened them.
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        engine: Engine | None = None,
        async_engine: AsyncEngine | None = None,
        auto_migrate_sqlite: bool = True,
        auto_register_assets: bool = True,
        timeout: float = DEFAULT_TIMEOUT_S,
        pool_size: int = 5,
        max_overflow: int = 10,
        prepare_threshold: int | None = None,
    ) -> None:
        given = engine.url if engine is not None else None
        given = given or (async_engine.url if async_engine is not None else None)
        if url is None and given is None:
            raise ConfigError("MetastoreStateBackend needs a url or an engine")
        self._sync_url, self._async_url = derive_urls(url if url is not None else given)  # type: ignore[arg-type]
        self._family = dialect_family(self._sync_url)
        self._statements = build_statements(self._family)
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ConfigError(f"timeout must be a positive number of seconds, not {timeout!r}")
        settings = EngineSettings(float(timeout), pool_size, max_overflow, prepare_threshold)
        prepared = engine is None and prepares(self._sync_url, settings)
        self._calls = FunctionCalls(self._statements, self._family, prepared=prepared)
        self._compiled: dict[int, CompiledStatement] = {}
        self._acompiled: dict[int, CompiledStatement] = {}  # async dialects differ
        functions = self._calls.enabled
        self._key_plans = KeyPlans(self._statements, self._compiled, functions=functions)
        self._akey_plans = KeyPlans(self._statements, self._acompiled, functions=functions)
        self._key_writers = KeyWriters(self._statements, self._calls, self._compiled)  # set()'s
        self._akey_writers = KeyWriters(self._statements, self._calls, self._acompiled)
        self._own_engine = engine is None
        self._host_async_engine = async_engine
        self._auto_migrate = auto_migrate_sqlite and self._family == "sqlite"
        self._auto_register = auto_register_assets
        self._schema_lock = threading.RLock()
        self._schema_ready = False
        self._rows = ItemRows()
        self._asset_ids = AssetIds()  # registry ids, so asset reads skip the registry
        self._direct_reads: DirectReads | None = None  # compiled on first use, sync
        self._adirect_reads: DirectReads | None = None  # and async (its own dialect)
        self._settings = settings
        self._timeout = float(timeout)
        self._connections = Connections(
            self._sync_url, self._async_url, self._settings,
            engine=engine, async_engine=async_engine,
        )  # fmt: skip
        lifecycle.track_forks(self)

    @classmethod
    def from_config(
        cls,
        config: StateStoreConfig,
        *,
        engine: Engine | None = None,
        async_engine: AsyncEngine | None = None,
    ) -> MetastoreStateBackend:
        """Build from ``[database]`` and ``[state_store]`` settings (engines win over url)."""
        return cls(
            None if engine is not None or async_engine is not None else config.database.url,
            engine=engine,
            async_engine=async_engine,
            auto_migrate_sqlite=config.database.auto_migrate_sqlite,
            auto_register_assets=config.state_store.auto_register_assets,
            timeout=config.database.timeout_seconds,
            pool_size=config.database.pool_size,
            max_overflow=config.database.max_overflow,
            prepare_threshold=config.database.prepare_threshold,
        )

    def __repr__(self) -> str:
        return f"MetastoreStateBackend({self._sync_url.render_as_string(hide_password=True)!r})"

    @property
    def url(self) -> URL:
        """The sync URL (its password is kept; render with ``hide_password=True``)."""
        return self._sync_url

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql``."""
        return self._family

    # -- engines and the schema, once -----------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The sync engine, created on first use."""
        return self._connections.engine

    @property
    def async_engine(self) -> AsyncEngine:
        """The async engine of the running event loop, created on first use there."""
        if self._host_async_engine is not None:
            return self._host_async_engine
        return self._connections.loop_engine().engine

    @property
    def maintenance_engine(self) -> Engine:
        """The sync engine for maintenance code that connects by itself (cleanup), the
        hot path's idle connections handed back to its pool first, for it to reuse."""
        return self._connections.maintenance_engine()

    def _forget_after_fork(self) -> list[object]:
        """In a forked child: drop the parent's connections unclosed (see lifecycle)."""
        # A lock held by another thread of the parent would never be released here.
        self._schema_lock = threading.RLock()
        self._asset_ids.forget()
        return self._connections.forget_after_fork()

    def _ensure_schema(self, connection: Connection) -> None:
        # Runs inside the first operation's connection; after that it is one flag test.
        with self._schema_lock:
            if self._schema_ready:
                return
            try:
                with watched(connection, self._timeout):  # a pooler may queue it for ever
                    check_schema(connection)
            except SchemaOutOfDateError:
                if not self._auto_migrate:
                    raise
                run_upgrade(connection, timeout=self._timeout)
            self._schema_ready = True

    def ensure_schema(self) -> None:
        """Check (or, for SQLite with auto-migrate, create) the schema if not done yet."""
        if self._schema_ready:
            return
        # The lock before the connection: a burst of first calls from many threads
        # waits for one check instead of opening a connection each.
        with self._schema_lock:
            if not self._schema_ready:
                with translate_errors(self._sync_url), self._connections.connect() as conn:
                    self._ensure_schema(conn)

    async def aensure_schema(self) -> None:
        """Async twin of :meth:`ensure_schema`."""
        if self._schema_ready:
            return
        # One task per loop at a time (and before connecting, as above): a task blocked
        # on the threading lock inside run_sync would block the loop that the lock
        # holder needs to finish.
        async with async_hotpath.loop_lock():
            if not self._schema_ready:
                with translate_errors(self._async_url):
                    async with self._connections.aconnect() as conn:
                        await conn.run_sync(self._ensure_schema)

    def upgrade(self) -> None:
        """Create or migrate the schema to this release's head."""
        # Our own engine runs in autocommit; migrate through a transactional one instead.
        upgrade(self._sync_url if self._own_engine else self.engine, timeout=self._timeout)
        self._schema_ready = True

    async def aupgrade(self) -> None:
        """Async twin of :meth:`upgrade`, on the async driver."""
        with translate_errors(self._async_url):
            async with self._connections.aconnect() as conn:
                if self._family != "sqlite":  # SQLite migrates under BEGIN IMMEDIATE
                    await conn.execution_options(isolation_level="READ COMMITTED")
                await conn.run_sync(run_upgrade, "head", self._timeout)
        self._schema_ready = True

    # -- sync execution -------------------------------------------------------------------

    def _run(self, plan: plans.Plan, session: Session | None = None) -> Any:
        if not self._schema_ready:
            self.ensure_schema()
        if session is not None:  # the host's transaction: it commits or rolls back, not us
            with translate_errors(self._sync_url):
                result = self._run_in_transaction(session.connection(), plan)
            return self._finish(plan, result, session)
        if self._own_engine:
            result = self._run_fast(plan)
            if plan.kind in _SLOW and not result:
                plans.raise_unread(plan)  # update()'s lost race: no slow path, no connection
                self._asset_ids.forget()  # the registry may have changed (see asset_ids)
                with translate_errors(self._sync_url), self._connections.connect() as conn:
                    result = self._asset_write_slow(conn, plan, host=False)
            return self._finish(plan, result)
        # A host's engine: its own transaction settings, so go through SQLAlchemy, in a
        # transaction of our own that commits (a plain connect() would roll back).
        with translate_errors(self._sync_url), self.engine.begin() as conn:
            result = self._run_in_transaction(conn, plan)
        return self._finish(plan, result)

    def _run_in_transaction(self, conn: Connection, plan: plans.Plan) -> Any:
        """Run ``plan`` through SQLAlchemy inside a transaction the host owns or we do."""
        plans.check_host_cas(plan, self._family)
        result = plans.result_of(plan, conn.execute(plan.statement, plan.params))
        if plan.kind in _SLOW and not result:
            result = self._asset_write_slow(conn, plan, host=True)
        return result

    def _run_fast(self, plan: plans.Plan) -> Any:
        hotpath = self._connections.sync_hotpath()
        call = self._calls.compiled(plan, self._compiled, self.engine.dialect)
        if call is not None:  # PostgreSQL: a write as a function call (pg_functions)
            return int(hotpath.run_plain(*call, fetch="scalar") or 0)
        compiled = compiled_plan(self._compiled, plan.statement, plan.params, self.engine.dialect)
        parameters = compiled.parameters(plan.params)
        fetch = "row" if plan.resolves else plans.FETCH.get(plan.kind, "rowcount")
        run = hotpath.run_plain if fetch == "rowcount" else hotpath.run  # a write: plain
        result = run(compiled.sql, parameters, fetch=fetch)
        if plan.resolves or plan.kind == "read_row":  # inline: a task get pays no call
            return self._fetched(plan, result, self.engine.dialect)
        return result

    def _finish(self, plan: plans.Plan, result: Any, session: Session | None = None) -> Any:
        """What the operation returns, or the error its result means."""
        if result or plan.kind not in plans.CHECKED:
            return plans.returned(plan, result)
        if plan.kind == "asset_write":
            plans.check_writable(plan.scope, None)
        plans.raise_unread(plan)  # inside update(), which reads after its pause anyway
        raise plans.lost(plan, self.get_item(plan.scope, plan.key or "", session=session))

    def get(self, scope: StateScope, key: str, *, session: Session | None = None) -> str | None:
        fast = session is None and self._own_engine
        if fast and self._schema_ready:  # the steady state: one short chain (direct_reads)
            value = self._direct_read(scope, key, whole=False)
            if value is not NOT_DIRECT:
                return value  # type: ignore[no-any-return]
        plan = self._read(plans.get, scope, key, fast) if isinstance(scope, AssetScope) else None
        plan = plan or plans.get(self._statements, scope, key, utcnow())
        result: str | None = self._run(plan, session)
        return result

    def set(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: Session | None = None,
    ) -> None:
        self._run(plans.set_(self._statements, scope, key, value, expires_at, utcnow()), session)

    def get_item(
        self, scope: StateScope, key: str, *, session: Session | None = None
    ) -> StoredItem | None:
        fast = session is None and self._own_engine
        if fast and self._schema_ready:  # as get: the steady state's short chain
            item = self._direct_read(scope, key, whole=True)
            if item is not NOT_DIRECT:
                return item  # type: ignore[no-any-return]
        found: StoredItem | None = self._run(self._read(plans.get_item, scope, key, fast), session)
        return found

    def set_item(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        if_version: int | None = None,
        updated_by: str | None = None,
        session: Session | None = None,
    ) -> None:
        direct = if_version is None and session is None  # the steady state: direct_writes
        if direct and self._direct_write(scope, key, value, expires_at, updated_by):
            return
        self._run(
            plans.set_(
                self._statements, scope, key, value, expires_at, utcnow(),
                updated_by=updated_by, if_version=if_version,
            ),
            session,
        )  # fmt: skip

    def delete(self, scope: StateScope, key: str, *, session: Session | None = None) -> None:
        self._run(plans.delete(self._statements, scope, key), session)

    def clear(
        self, scope: StateScope, *, all_map_indices: bool = False, session: Session | None = None
    ) -> None:
        self._run(plans.clear(self._statements, scope, all_map_indices), session)

    # -- async execution: the same plans, awaited -------------------------------------------

    async def _arun(self, plan: plans.Plan, session: AsyncSession | None = None) -> Any:
        if not self._schema_ready:
            await self.aensure_schema()
        if session is not None:  # the host's transaction: it commits or rolls back, not us
            with translate_errors(self._async_url):
                result = await self._arun_in_transaction(await session.connection(), plan)
            return await self._afinish(plan, result, session)
        if self._host_async_engine is None:
            state = self._connections.loop_engine()
            result = await self._arun_fast(state, plan)
            if plan.kind in _SLOW and not result:
                plans.raise_unread(plan)  # update()'s lost race: no slow path, no connection
                self._asset_ids.forget()
                with translate_errors(self._async_url):
                    async with (
                        self._connections.aconnect() as conn
                    ):  # reuses the hot path's connection
                        result = await self._aasset_write_slow(conn, plan, host=False)
            return await self._afinish(plan, result)
        with translate_errors(self._async_url):
            async with self.async_engine.begin() as conn:
                result = await self._arun_in_transaction(conn, plan)
        return await self._afinish(plan, result)

    async def _arun_in_transaction(self, conn: AsyncConnection, plan: plans.Plan) -> Any:
        """Async twin of :meth:`_run_in_transaction`."""
        plans.check_host_cas(plan, self._family)
        result = plans.result_of(plan, await conn.execute(plan.statement, plan.params))
        if plan.kind in _SLOW and not result:
            result = await self._aasset_write_slow(conn, plan, host=True)
        return result

    async def _arun_fast(self, state: LoopEngine, plan: plans.Plan) -> Any:
        dialect = state.engine.dialect
        call = self._calls.compiled(plan, self._acompiled, dialect)
        if call is not None:  # as in _run_fast
            return int(await state.hotpath.run_plain(*call, fetch="scalar") or 0)
        compiled = compiled_plan(self._acompiled, plan.statement, plan.params, dialect)
        parameters = compiled.parameters(plan.params)
        fetch = "row" if plan.resolves else plans.FETCH.get(plan.kind, "rowcount")
        run = state.hotpath.run_plain if fetch == "rowcount" else state.hotpath.run
        result = await run(compiled.sql, parameters, fetch=fetch)
        if plan.resolves or plan.kind == "read_row":
            return self._fetched(plan, result, dialect)
        return result

    async def _afinish(
        self, plan: plans.Plan, result: Any, session: AsyncSession | None = None
    ) -> Any:
        """Async twin of :meth:`_finish`."""
        if result or plan.kind not in plans.CHECKED:
            return plans.returned(plan, result)
        if plan.kind == "asset_write":
            plans.check_writable(plan.scope, None)
        plans.raise_unread(plan)  # inside update(), which reads after its pause anyway
        raise plans.lost(plan, await self.aget_item(plan.scope, plan.key or "", session=session))

    async def aget(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> str | None:
        fast = session is None and self._host_async_engine is None
        if fast and self._schema_ready:  # as get
            value = await self._adirect_read(scope, key, whole=False)
            if value is not NOT_DIRECT:
                return value  # type: ignore[no-any-return]
        plan = self._read(plans.get, scope, key, fast) if isinstance(scope, AssetScope) else None
        plan = plan or plans.get(self._statements, scope, key, utcnow())
        result: str | None = await self._arun(plan, session)
        return result

    async def aset(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        await self._arun(
            plans.set_(self._statements, scope, key, value, expires_at, utcnow()), session
        )

    async def aget_item(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> StoredItem | None:
        fast = session is None and self._host_async_engine is None
        if fast and self._schema_ready:  # as get_item
            item = await self._adirect_read(scope, key, whole=True)
            if item is not NOT_DIRECT:
                return item  # type: ignore[no-any-return]
        plan = self._read(plans.get_item, scope, key, fast)
        found: StoredItem | None = await self._arun(plan, session)
        return found

    async def aset_item(
        self,
        scope: StateScope,
        key: str,
        value: str,
        *,
        expires_at: datetime | None = None,
        if_version: int | None = None,
        updated_by: str | None = None,
        session: AsyncSession | None = None,
    ) -> None:
        direct = if_version is None and session is None  # as in set_item
        if direct and await self._adirect_write(scope, key, value, expires_at, updated_by):
            return
        await self._arun(
            plans.set_(
                self._statements, scope, key, value, expires_at, utcnow(),
                updated_by=updated_by, if_version=if_version,
            ),
            session,
        )  # fmt: skip

    async def adelete(
        self, scope: StateScope, key: str, *, session: AsyncSession | None = None
    ) -> None:
        await self._arun(plans.delete(self._statements, scope, key), session)

    async def aclear(
        self,
        scope: StateScope,
        *,
        all_map_indices: bool = False,
        session: AsyncSession | None = None,
    ) -> None:
        await self._arun(plans.clear(self._statements, scope, all_map_indices), session)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Dispose the engines this backend created (a host's own engines are left alone)."""
        self._connections.close()

    async def aclose(self) -> None:
        """Dispose the async engine of this loop, then everything :meth:`close` does."""
        await self._connections.aclose()
