"""The steady-state single-key read in one short call chain.

A get of one key is the library's most frequent call and its cheapest statement: on
SQLite the whole read takes a few microseconds, so every Python layer between the
accessor and the driver shows (a ``Plan``, a parameter dict, the per-parameter
processors, the ``now`` datetime converted in a second step). Once the schema is known
to be ready, the backend's own engine reads a task key, or an asset key whose registry
id is remembered (``asset_ids``), through a :class:`DirectReads`: the statement is
compiled once, the parameters are built straight in the driver's order and form, and
``now`` is produced in the driver's form in one step. The statement, its parameters'
values and the hot path are the same as the general path's, so both read alike; a test
checks that each reader's SQL and parameters equal what the general path sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Dialect

from statestore.items import StoredItem
from statestore.metastore import asset_ids, pg_functions
from statestore.metastore.compiled import ItemRows, compile_statement
from statestore.metastore.digests import TaskRowIds, key_digest
from statestore.metastore.key_updates import KeyPlans, KeyUpdater
from statestore.metastore.statements import Statements
from statestore.scopes import StateScope, TaskScope

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from statestore.metastore.asset_ids import AssetIds
    from statestore.metastore.connections import Connections
    from statestore.metastore.pg_functions import FunctionCalls

__all__ = ["NOT_DIRECT", "DirectReadAccess", "DirectReads", "driver_now"]

NOT_DIRECT: Any = object()
"""What a direct read returns when the read must take the general path (an asset whose
id is not remembered yet)."""

_BY_ID = (asset_ids.DIRECT_GET, asset_ids.DIRECT_GET_ITEM)

_UTC = timezone.utc


def driver_now(dialect_name: str) -> Callable[[], Any]:
    """The current UTC time as the driver takes it for a ``UTCDateTime`` parameter
    (what ``compiled._datetime_converter`` makes of ``utcnow()``, in one step)."""
    if dialect_name == "postgresql":
        return lambda: datetime.now(_UTC)
    if dialect_name == "sqlite":
        return _sqlite_now()
    return lambda: datetime.now(_UTC).replace(tzinfo=None)


def _sqlite_now() -> Callable[[], str]:
    """SQLAlchemy's SQLite DATETIME text of now, "YYYY-MM-DD HH:MM:SS.ffffff".

    ``datetime.isoformat`` alone costs ~0.7 µs, a sixth of a whole SQLite read; the
    text of the current second is kept (as a ``%`` template) and only the microseconds
    are formatted. The clock is ``time.time_ns()`` floored to microseconds, which is
    what ``datetime.now()`` reads (the same instant under time-machine too; tested). A
    closure over a list, not an object's attributes: this runs on every read.
    """
    kept: list[tuple[int, str]] = [(-1, "")]  # (second, template), replaced whole
    time_ns = time.time_ns

    def now() -> str:
        second, micro = divmod(time_ns() // 1000, 1_000_000)
        cached = kept[0]
        if cached[0] != second:  # safe across threads: the pair is one object
            template = time.strftime("%Y-%m-%d %H:%M:%S.%%06d", time.gmtime(second))
            cached = kept[0] = (second, template)
        return cached[1] % micro

    return now


class _Reader:
    """One compiled read: its SQL and how its named values become driver parameters."""

    __slots__ = ("order", "sql")

    def __init__(self, statement: Any, dialect: Dialect, names: tuple[str, ...]) -> None:
        compiled = compile_statement(statement, dialect)
        converted = {name for name, _ in compiled.processors}
        if not converted <= {"now"}:  # only the expiry instant needs converting
            raise ValueError(f"unexpected bind processors: {sorted(converted)}")
        self.sql = compiled.sql
        # None: the driver takes a dict (named paramstyle); else the tuple's order.
        self.order: tuple[int, ...] | None = None
        if compiled.positions is not None:
            self.order = tuple(names.index(name) for name in compiled.positions)

    def parameters(self, names: tuple[str, ...], values: tuple[Any, ...]) -> Any:
        """The values in the driver's form (used once per reader to pick a packer)."""
        if self.order is None:
            return dict(zip(names, values, strict=True))
        return tuple(values[index] for index in self.order)


_TASK_NAMES = ("row_id", "now")
_ASSET_NAMES = ("asset_id", "key_digest", "now")


class DirectReads:
    """The value (or the whole row) of one live task key, or of one live key of an
    asset by its registry id."""

    __slots__ = (
        "_asset", "_asset_item", "_functions", "_named", "_now", "_row_ids", "_task",
        "_task_item", "dialect",
    )  # fmt: skip

    def __init__(
        self, statements: Statements, asset_reads: tuple[Any, Any], dialect: Dialect,
        *, functions: bool | None = None,
    ) -> None:  # fmt: skip
        """``asset_reads``: the by-id asset get and get-item statements (``asset_ids``);
        ``functions``: whether gets are PostgreSQL function calls (``FunctionCalls``'
        ``enabled``; by default on PostgreSQL)."""
        self.dialect = dialect
        task_get: Any = statements.task_get
        asset_get: Any = asset_reads[0]
        self._functions = dialect.name == "postgresql" if functions is None else functions
        if self._functions:  # the same reads as function calls (pg_functions)
            task_get, asset_get = pg_functions.TASK_READ, pg_functions.ASSET_READ
        self._task = _Reader(task_get, dialect, _TASK_NAMES)
        self._task_item = _Reader(statements.task_get_item, dialect, _TASK_NAMES)
        self._asset = _Reader(asset_get, dialect, _ASSET_NAMES)
        self._asset_item = _Reader(asset_reads[1], dialect, _ASSET_NAMES)
        self._named = self._task.order is None
        for reader, names in (
            (self._task, _TASK_NAMES), (self._task_item, _TASK_NAMES),
            (self._asset, _ASSET_NAMES), (self._asset_item, _ASSET_NAMES),
        ):  # fmt: skip
            in_order = reader.order == tuple(range(len(names)))
            if (reader.order is None) != self._named or not (self._named or in_order):
                raise ValueError("read parameters in an unexpected order")
        self._now = driver_now(dialect.name)
        self._row_ids = TaskRowIds()

    def task_get(
        self, hotpath: Any, scope: TaskScope, key: str, *, whole: bool = False, plain: bool = False
    ) -> Any:
        """``get`` of a task key (``whole``: its row, as ``get_item`` reads it; with
        ``plain`` only its value's text and version, as ``update`` reads it). With an
        async hot path this returns its awaitable."""
        row_id = self._row_ids(scope, key)
        parameters: Any = (row_id, self._now())
        if self._named:
            parameters = {"row_id": row_id, "now": parameters[1]}
        if not whole:
            return hotpath.run_plain(self._task.sql, parameters, fetch="scalar")
        run = hotpath.run_plain if plain else hotpath.run
        return run(self._task_item.sql, parameters, fetch="row")

    def asset_get(
        self, hotpath: Any, asset_id: int, key: str, *, whole: bool = False, plain: bool = False
    ) -> Any:
        """``get`` of an asset key by the asset's remembered id (``whole``, ``plain``:
        as for :meth:`task_get`)."""
        digest = key_digest(key)
        parameters: Any = (asset_id, digest, self._now())
        if self._named:
            parameters = {"asset_id": asset_id, "key_digest": digest, "now": parameters[2]}
        if not whole:
            return hotpath.run_plain(self._asset.sql, parameters, fetch="scalar")
        if not plain:
            return hotpath.run(self._asset_item.sql, parameters, fetch="row")
        # PostgreSQL's get is a call answering the value and version (0007): all update needs
        reader = self._asset if self._functions else self._asset_item
        return hotpath.run_plain(reader.sql, parameters, fetch="row")

    def sent(self, kind: str, values: tuple[Any, ...], *, whole: bool = False) -> tuple[str, Any]:
        """The SQL and driver parameters a reader sends for ``values`` (for tests)."""
        names: tuple[str, ...]
        if kind == "task":
            reader, names = (self._task_item if whole else self._task), _TASK_NAMES
        else:
            reader, names = (self._asset_item if whole else self._asset), _ASSET_NAMES
        return reader.sql, reader.parameters(names, values)


_ITEM_CALLS = ("get_item", "set_item", "aget_item", "aset_item")
_OWN_ITEM_CALLS: dict[type, bool] = {}


def _own_item_calls(cls: type) -> bool:
    """Whether ``cls`` keeps the metastore's own ``get_item``/``set_item`` and twins: a
    subclass that overrides one (to audit writes, say) gets ``update`` through them."""
    own = _OWN_ITEM_CALLS.get(cls)
    if own is None:
        from statestore.metastore.backend import MetastoreStateBackend  # noqa: PLC0415 - cycle

        metastore = MetastoreStateBackend
        own = all(getattr(cls, name) is getattr(metastore, name) for name in _ITEM_CALLS)
        _OWN_ITEM_CALLS[cls] = own
    return own


class DirectReadAccess:
    """The backend's side of the short chain: a get or get-item of a task key, or of an
    asset key whose id is remembered, once the schema is ready (the caller checks
    that, and that no host session or engine is involved)."""

    _connections: Connections
    _asset_ids: AssetIds
    _rows: ItemRows
    _statements: Statements
    _calls: FunctionCalls
    _direct_reads: DirectReads | None
    _adirect_reads: DirectReads | None
    _key_plans: KeyPlans
    _akey_plans: KeyPlans
    _schema_ready: bool
    _own_engine: bool
    _host_async_engine: AsyncEngine | None

    def _direct_read(self, scope: StateScope, key: str, *, whole: bool) -> Any:
        """The read's result (a ``StoredItem`` with ``whole``), or :data:`NOT_DIRECT`."""
        reads = self._sync_reads()
        hotpath = self._connections.sync_hotpath()
        if isinstance(scope, TaskScope):
            found = reads.task_get(hotpath, scope, key, whole=whole)
        elif (asset_id := self._asset_ids.known(scope)) is not None:
            found = reads.asset_get(hotpath, asset_id, key, whole=whole)
        else:
            return NOT_DIRECT
        return self._stored(found, reads.dialect) if whole else found

    async def _adirect_read(self, scope: StateScope, key: str, *, whole: bool) -> Any:
        """Async twin of :meth:`_direct_read` (the running loop's engine)."""
        state = self._connections.loop_engine()
        dialect = state.engine.dialect
        reads = self._loop_reads(dialect)
        if isinstance(scope, TaskScope):
            found = await reads.task_get(state.hotpath, scope, key, whole=whole)
        elif (asset_id := self._asset_ids.known(scope)) is not None:
            found = await reads.asset_get(state.hotpath, asset_id, key, whole=whole)
        else:
            return NOT_DIRECT
        return self._stored(found, dialect) if whole else found

    def _key_updater(
        self, scope: StateScope, key: str, updated_by: str | None, *, in_loop: bool = False
    ) -> KeyUpdater | None:
        """``update``'s read and replace of one key on the hot path (``key_updates``),
        where a direct read would serve its ``get_item``; else ``None``."""
        if not self._schema_ready or not (
            self._host_async_engine is None if in_loop else self._own_engine
        ):
            return None
        if not _own_item_calls(type(self)):
            return None
        asset_id = None
        if not isinstance(scope, TaskScope) and (asset_id := self._asset_ids.known(scope)) is None:
            return None
        if in_loop:
            state = self._connections.loop_engine()
            hotpath: Any = state.hotpath
            reads, key_plans = self._loop_reads(state.engine.dialect), self._akey_plans
        else:
            hotpath = self._connections.sync_hotpath()
            reads, key_plans = self._sync_reads(), self._key_plans
        return KeyUpdater(
            key_plans=key_plans, reads=reads, hotpath=hotpath,
            scope=scope, key=key, asset_id=asset_id, updated_by=updated_by,
        )  # fmt: skip

    def _sync_reads(self) -> DirectReads:
        reads = self._direct_reads
        if reads is None:
            dialect = self._connections.engine.dialect
            reads = DirectReads(self._statements, _BY_ID, dialect, functions=self._calls.enabled)
            self._direct_reads = reads
        return reads

    def _loop_reads(self, dialect: Dialect) -> DirectReads:
        reads = self._adirect_reads
        if reads is None:  # the async dialect: its own paramstyle (asyncpg's $1, say)
            reads = DirectReads(self._statements, _BY_ID, dialect, functions=self._calls.enabled)
            self._adirect_reads = reads
        return reads

    def _stored(self, row: Any, dialect: Dialect) -> StoredItem | None:
        item = self._rows.item(row, dialect)
        return None if item is None else StoredItem(*item)
