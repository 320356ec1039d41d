"""The steady-state ``set`` of one key in one short call chain.

A last-writer-wins set is the library's most frequent write. On SQLite its statement
takes ~19 µs and the general path's Python around it ~11 µs: a ``Plan`` and its
parameter dict built per call, the scope's digest hashed again, the compiled
statement looked up, every parameter passed through its processor, three more frames.
A :class:`KeyWriter` is made once per scope (and writer name): it keeps the general
path's own compiled statement -- on PostgreSQL the function call that stands for it
(``pg_functions``) -- and its parameters for a probe key, already in the driver's form
and order; a call fills in the five that change (the row id or key digest, the key, the
value, its expiry, the time) and sends it on the hot path. The statement and its
parameters are the general path's, so both write alike; a test checks it on every
dialect.

Only what the steady state needs: the backend's own engine, a schema known to be
ready, no host session, no ``if_version``. An asset's first set in a process goes the
general way (the asset may not be registered yet), and so does an asset write that
wrote nothing (the asset removed from the registry, or deactivated): the general path
registers it or says why -- the direct attempt wrote nothing, so writing again is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from statestore.metastore import plans
from statestore.metastore.compiled import compiled_plan
from statestore.metastore.digests import key_digest, task_row_hasher
from statestore.retention import utcnow
from statestore.scopes import TaskScope

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.engine import Dialect

    from statestore.metastore.compiled import CompiledStatement
    from statestore.metastore.connections import Connections
    from statestore.metastore.hotpath import Fetch
    from statestore.metastore.pg_functions import FunctionCalls
    from statestore.metastore.statements import Statements
    from statestore.scopes import StateScope

__all__ = ["DirectWriteAccess", "KeyWriter", "KeyWriters"]

_KEPT_WRITERS = 1024
"""Writers a backend keeps per side (sync, async): one per scope and writer name a
process writes to, and small; when full, they start over."""

_TASK_NAMES = ("row_id", "key", "value", "expires_at", "updated_at")
_ASSET_NAMES = ("key_digest", "key", "value", "expires_at", "updated_at")
"""The parameters of a set that change from call to call, in :meth:`KeyWriter.values`
order; every other one is the scope's (or the writer name's) and fixed."""


class KeyWriter:
    """One scope's set of any key: the SQL and the driver parameters for it."""

    __slots__ = (
        "_base", "_converted", "_digest", "_names", "_slots", "checked", "fetch", "sent_once",
        "sql",
    )  # fmt: skip

    def __init__(
        self, scope: StateScope, plan: plans.Plan, compiled: CompiledStatement, *, called: bool
    ) -> None:
        """``plan``: the general path's set of a probe key; ``compiled``: the statement
        it runs, or with ``called`` the function call that stands for it, which answers
        the rows written as its value rather than as a row count."""
        task = isinstance(scope, TaskScope)
        self._names = _TASK_NAMES if task else _ASSET_NAMES
        self._digest: Callable[[str], bytes] = key_digest
        if isinstance(scope, TaskScope):
            self._digest = task_row_hasher(scope)
        self.sql = compiled.sql
        self.fetch: Fetch = "scalar" if called else "rowcount"
        self.checked = not task
        """Whether a write that matched no row must go the general way (an asset's)."""
        self.sent_once = not self.checked
        """Whether the writer has been used (see :meth:`KeyWriters.ready`)."""
        processors = dict(compiled.processors)
        self._converted = tuple(
            (index, processors[name]) for index, name in enumerate(self._names)
            if name in processors
        )  # fmt: skip
        base = compiled.parameters(plan.params)
        self._slots: tuple[tuple[int, int], ...] | None = None
        if isinstance(base, dict):  # a named paramstyle (psycopg)
            self._base: Any = base
        else:
            positions = compiled.positions or ()
            self._slots = tuple(
                (at, self._names.index(name)) for at, name in enumerate(positions)
                if name in self._names
            )  # fmt: skip
            self._base = list(base)

    def parameters(
        self, key: str, text: str, expires_at: datetime | None, now: datetime | None = None
    ) -> Any:
        """The driver parameters of a set of ``key`` to ``text`` (``now``: the write's
        time, for tests; else the clock's)."""
        values = [self._digest(key), key, text, expires_at, utcnow() if now is None else now]
        for index, process in self._converted:
            values[index] = process(values[index])
        if self._slots is None:
            named = dict(self._base)
            named.update(zip(self._names, values, strict=True))
            return named
        sent = self._base.copy()
        for at, index in self._slots:
            sent[at] = values[index]
        return tuple(sent)

    def wrote(self, answer: Any) -> bool:
        """Whether the set is done, given what its statement answered (the rows
        written): a task's always; an asset's only if a row was (else the general path
        must say why)."""
        return not self.checked or bool(int(answer or 0))


class KeyWriters:
    """The :class:`KeyWriter` of each scope a backend sets keys of, for one side."""

    __slots__ = ("_cache", "_calls", "_kept", "_statements")

    def __init__(
        self, statements: Statements, calls: FunctionCalls, cache: dict[int, CompiledStatement]
    ) -> None:
        """``cache``: the backend's compiled statements for the dialect of this side."""
        self._statements = statements
        self._calls = calls
        self._cache = cache
        self._kept: dict[tuple[StateScope, str | None], KeyWriter] = {}

    def of(self, scope: StateScope, updated_by: str | None, dialect: Dialect) -> KeyWriter:
        """``scope``'s writer for ``updated_by``, worked out on first use."""
        writer = self._kept.get((scope, updated_by))
        if writer is None:
            if len(self._kept) >= _KEPT_WRITERS:
                self._kept.clear()
            plan = self.probe(scope, updated_by, "", "", None, utcnow())
            call = self._calls.of(plan.statement)
            statement = plan.statement if call is None else call
            compiled = compiled_plan(self._cache, statement, plan.params, dialect)
            writer = KeyWriter(scope, plan, compiled, called=call is not None)
            self._kept[scope, updated_by] = writer
        return writer

    def ready(
        self, scope: StateScope, updated_by: str | None, dialect: Dialect
    ) -> KeyWriter | None:
        """:meth:`of`, or ``None`` on an asset writer's first use: that set goes the
        general way, which registers the asset if need be, instead of a write that
        would most likely find none and be sent again."""
        writer = self.of(scope, updated_by, dialect)
        if writer.sent_once:
            return writer
        writer.sent_once = True
        return None

    def probe(
        self, scope: StateScope, updated_by: str | None, key: str, text: str,
        expires_at: datetime | None, now: datetime,
    ) -> plans.Plan:  # fmt: skip
        """The general path's plan of the same set (what a writer stands for)."""
        plan = plans.set_(
            self._statements, scope, key, text, expires_at, now, updated_by=updated_by
        )
        if plan.kind not in ("write", "asset_write") or plan.resolves:  # pragma: no cover
            raise ValueError(f"a set planned as {plan.kind!r}: no direct writer")
        return plan


class DirectWriteAccess:
    """The backend's side of the short chain for ``set_item`` without ``if_version``
    (the caller checks that, and that no host session is involved)."""

    _connections: Connections
    _key_writers: KeyWriters
    _akey_writers: KeyWriters
    _schema_ready: bool
    _own_engine: bool
    _host_async_engine: Any

    def _direct_write(
        self, scope: StateScope, key: str, text: str, expires_at: datetime | None,
        updated_by: str | None,
    ) -> bool:  # fmt: skip
        """Whether the set was done here (else the general path must run it)."""
        if not (self._schema_ready and self._own_engine):
            return False
        writer = self._key_writers.ready(scope, updated_by, self._connections.engine.dialect)
        if writer is None:
            return False
        parameters = writer.parameters(key, text, expires_at)
        hotpath = self._connections.sync_hotpath()
        return writer.wrote(hotpath.run_plain(writer.sql, parameters, fetch=writer.fetch))

    async def _adirect_write(
        self, scope: StateScope, key: str, text: str, expires_at: datetime | None,
        updated_by: str | None,
    ) -> bool:  # fmt: skip
        """Async twin of :meth:`_direct_write` (the running loop's engine)."""
        if not (self._schema_ready and self._host_async_engine is None):
            return False
        state = self._connections.loop_engine()
        writer = self._akey_writers.ready(scope, updated_by, state.engine.dialect)
        if writer is None:
            return False
        parameters = writer.parameters(key, text, expires_at)
        return writer.wrote(
            await state.hotpath.run_plain(writer.sql, parameters, fetch=writer.fetch)
        )
