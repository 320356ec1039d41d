"""What ``MetastoreStateBackend`` does with the asset registry: remembered ids on reads
(``asset_ids``), an asset write that found no registered asset, listing assets and
(de)activating them.

A mixin, as ``batches.MetastoreBatches`` is, so that ``backend`` keeps to the single-key
operations and their execution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statestore.metastore import maintenance, plans, registry
from statestore.metastore.errors import translate_errors
from statestore.retention import utcnow
from statestore.scopes import AssetScope, StateScope

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncConnection

    from statestore.metastore.asset_ids import AssetIds
    from statestore.metastore.compiled import ItemRows
    from statestore.metastore.connections import Connections
    from statestore.metastore.maintenance import AssetInfo
    from statestore.metastore.statements import Statements

__all__ = ["AssetAccess"]


class AssetAccess:
    """Asset reads by remembered id, and the registry methods (see the module docstring)."""

    _statements: Statements
    _connections: Connections
    _sync_url: URL
    _async_url: URL
    _rows: ItemRows
    _asset_ids: AssetIds
    _family: str
    _auto_register: bool

    if TYPE_CHECKING:

        def ensure_schema(self) -> None: ...
        async def aensure_schema(self) -> None: ...

    def _savepoints(self, host: bool) -> bool:
        """Whether a failed insert must be contained: a host's transaction (engine or
        session) on PostgreSQL, where it would abort the surrounding transaction. Our
        own engines run in autocommit, where a savepoint is not even allowed."""
        return host and self._family == "postgresql"

    def _asset_write_slow(self, conn: Connection, plan: plans.Plan, *, host: bool) -> int:
        """An asset write that wrote nothing: register the asset (if allowed) and write
        again, or say why not (``registry``)."""
        return registry.write_after_miss(
            conn, self._statements, plan, self._auto_register, savepoint=self._savepoints(host)
        )

    async def _aasset_write_slow(
        self, conn: AsyncConnection, plan: plans.Plan, *, host: bool
    ) -> int:
        """Async twin of :meth:`_asset_write_slow`."""
        return await registry.awrite_after_miss(
            conn, self._statements, plan, self._auto_register, savepoint=self._savepoints(host)
        )

    def _read(self, make: Any, scope: StateScope, key: str, fast: bool) -> plans.Plan:
        """``plans.get``/``get_item`` of ``key``, by the asset's id once known (``fast``:
        on the backend's own engine, outside a host session; see ``asset_ids``)."""
        hint = self._asset_ids.hint(scope, fast)
        plan: plans.Plan = make(self._statements, scope, key, utcnow(), **hint)
        return plan

    def _fetched(self, plan: plans.Plan, result: Any, dialect: Any) -> Any:
        """A fast path's result as a plan's reader expects it (ids learnt, rows typed)."""
        whole = plan.kind == "read_row"
        if plan.resolves:
            assert isinstance(plan.scope, AssetScope)
            result = self._asset_ids.learn(plan.scope, result, whole=whole)
        return self._rows.item(result, dialect) if whole else result

    def list_assets(self, active: bool | None = None) -> list[AssetInfo]:
        """Registered assets by name, with their number of state keys."""
        self.ensure_schema()
        with translate_errors(self._sync_url), self._connections.connect() as conn:
            return maintenance.list_assets(conn, active)

    async def alist_assets(self, active: bool | None = None) -> list[AssetInfo]:
        """Async twin of :meth:`list_assets`."""
        await self.aensure_schema()
        with translate_errors(self._async_url):
            async with self._connections.aconnect() as conn:
                return await conn.run_sync(maintenance.list_assets, active)

    def set_assets_active(self, assets: list[AssetScope], active: bool) -> int:
        """(De)activate registered assets; returns how many changed state."""
        self.ensure_schema()
        with translate_errors(self._sync_url), self._connections.connect() as conn:
            return maintenance.set_assets_active(conn, assets, active, utcnow())

    async def aset_assets_active(self, assets: list[AssetScope], active: bool) -> int:
        """Async twin of :meth:`set_assets_active`."""
        await self.aensure_schema()
        with translate_errors(self._async_url):
            async with self._connections.aconnect() as conn:
                return await conn.run_sync(maintenance.set_assets_active, assets, active, utcnow())
