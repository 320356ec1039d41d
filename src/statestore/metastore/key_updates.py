"""``update()``'s read and compare-and-set of one key, in the steady state.

A hot key is read-modify-written by many processes at once, and on a machine whose
cores the workers share with the database every microsecond of client work lowers the
rate for all of them: measured on PostgreSQL, the general path's layers (accessor,
plan, parameter dicts, digests, item objects) cost about a third of an update's client
CPU, and each one also widens the window between the read and the write in which
another process can win the race. A :class:`KeyUpdater` is made once per ``update``
call for one key: its digests, its statements and its fixed parameters are worked out
once, and each attempt is one read and one conditional write on the hot path.

It covers only what the steady state needs -- a key that exists, replaced at the
version read. Everything else goes the general way (``set_item`` with
``if_version``): creating an absent key, and a conditional write that matched no row
when ``update`` must know why (its last attempt, or a write that failed with the key
still at the version read: an inactive asset, an expired key). The statements and
parameters are the general path's own (``plans.set_``, ``DirectReads``), so both
write alike; a test checks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statestore.items import unread_conflict, unread_conflicts_allowed
from statestore.metastore import plans
from statestore.metastore.compiled import compiled_plan
from statestore.metastore.digests import key_digest
from statestore.metastore.pg_functions import ASSET_REPLACE_OR_READ, TASK_REPLACE_OR_READ
from statestore.retention import utcnow
from statestore.scopes import TaskScope

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql.expression import Executable

    from statestore.metastore.compiled import CompiledStatement
    from statestore.metastore.direct_reads import DirectReads
    from statestore.metastore.statements import Statements
    from statestore.scopes import StateScope

__all__ = ["KeyPlans", "KeyUpdater"]

_KEPT_PLANS = 1024
"""Key plans a backend keeps per side (sync, async): enough for every key a worker
updates again and again, and small; when full, the plans start over."""


KEPT_LOSSES = 6
"""How many lost races in a row ``update`` answers with the row the write lost to; after
that it reads again after its pause. Each pause is random and grows (``update_pause``),
and the kept row is as old as the pause: re-applied after a short one it often wins; by
the seventh attempt the pause is tens of milliseconds, the kept row almost surely stale,
and writing from it kept losing -- with no limit, 1.2-1.7 % of calls gave up with 16
processes on one key against 0.3 % for a loop that reads after every pause; with this
one, 0.3 % (docs/performance.md, "One hot key")."""


class KeyPlans:
    """The replace statement and fixed parameters of each key ``update`` touches, worked
    out once per key (digests, the plan, its compiled form): a hot key is updated many
    times, and working them out per call cost a tenth of an update's client CPU."""

    __slots__ = ("_cache", "_kept", "_statements", "functions")

    def __init__(
        self, statements: Statements, cache: dict[int, CompiledStatement], *,
        functions: bool = True,
    ) -> None:  # fmt: skip
        """``cache``: the backend's compiled statements for the dialect of this side;
        ``functions``: on PostgreSQL, whether replaces are function calls
        (``FunctionCalls``' ``enabled``)."""
        self._statements = statements
        self._cache = cache
        self.functions = functions
        self._kept: dict[tuple[StateScope, str, str | None], tuple[dict[str, Any], Any]] = {}

    def of(
        self, scope: StateScope, key: str, updated_by: str | None, dialect: Dialect,
        asset_id: int | None,
    ) -> tuple[dict[str, Any], CompiledStatement]:  # fmt: skip
        """The general path's own plan of a replace of ``key`` (its parameters, which
        each attempt fills in with its own values) and its compiled statement; on
        PostgreSQL, the same write as a function call (``pg_functions``)."""
        kept = self._kept.get((scope, key, updated_by))
        if kept is None:
            if len(self._kept) >= _KEPT_PLANS:
                self._kept.clear()
            calls = self.functions and dialect.name == "postgresql"
            if asset_id is not None and calls:
                params = {"w_asset_id": asset_id, "w_key_digest": key_digest(key),
                          "updated_by": updated_by}  # fmt: skip
                statement: Executable = ASSET_REPLACE_OR_READ
            else:
                plan = plans.set_(
                    self._statements, scope, key, "", None, utcnow(),
                    updated_by=updated_by, if_version=1,
                )  # fmt: skip
                params, statement = plan.params, plan.statement
                if isinstance(scope, TaskScope) and calls:
                    statement = TASK_REPLACE_OR_READ  # the same parameters, as a call
            compiled = compiled_plan(self._cache, statement, params, dialect)
            kept = self._kept[scope, key, updated_by] = (params, compiled)
        return kept


class KeyUpdater:
    """One key's read (``value``, ``version``) and replace-at-version, for one hot path.

    ``read()`` and ``write()`` return what the hot path's ``run`` returns: a value for
    the sync hot path, an awaitable for an event loop's. ``current()`` and
    ``written()`` turn those results into what ``update`` needs.

    On PostgreSQL the replace is a call of migration 0009's ``…_replace_or_read``,
    which answers the row a lost race lost to; the updater keeps it, and
    :meth:`lost_to` hands it to ``update``'s next attempt in place of a read.
    """

    __slots__ = (
        "_asset_id", "_compiled", "_hotpath", "_key", "_losses", "_lost", "_reads",
        "_reads_on_miss", "_scope", "_template",
    )  # fmt: skip

    def __init__(
        self,
        *,
        key_plans: KeyPlans,
        reads: DirectReads,
        hotpath: Any,
        scope: StateScope,
        key: str,
        asset_id: int | None,
        updated_by: str | None,
    ) -> None:
        """``asset_id``: an asset scope's remembered registry id (``None`` for a task)."""
        self._reads = reads
        self._hotpath = hotpath
        self._scope = scope
        self._key = key
        self._asset_id = asset_id
        dialect = reads.dialect
        self._template, self._compiled = key_plans.of(scope, key, updated_by, dialect, asset_id)
        # PostgreSQL's replace is a function call (pg_functions) that answers no row when
        # it wrote and the live row when it did not; an UPDATE answers its row count.
        self._reads_on_miss = dialect.name == "postgresql" and key_plans.functions
        self._lost: tuple[tuple[str, int] | None] | None = None
        self._losses = 0

    @property
    def dialect(self) -> Dialect:
        """The dialect the statements were compiled for."""
        return self._reads.dialect

    def read(self) -> Any:
        """The key's live row, as ``DirectReads`` reads it for ``get_item``."""
        if self._asset_id is None:
            assert isinstance(self._scope, TaskScope)
            return self._reads.task_get(
                self._hotpath, self._scope, self._key, whole=True, plain=True
            )
        return self._reads.asset_get(
            self._hotpath, self._asset_id, self._key, whole=True, plain=True
        )

    @staticmethod
    def current(row: Any) -> tuple[str, int] | None:
        """The stored text and version of a row :meth:`read` fetched (``None``: absent)."""
        return None if row is None else (row[0], int(row[1]))

    def lost_to(self) -> tuple[tuple[str, int] | None] | None:
        """What the last :meth:`write` that lost a race found live -- in a 1-tuple, its
        text and version, or ``None`` when no live key was there -- once; ``None`` when
        there is nothing kept (the updater does not read on a miss, or has been asked)."""
        lost, self._lost = self._lost, None
        return lost if self._losses <= KEPT_LOSSES else None

    def write(self, text: str, expires_at: datetime | None, version: int) -> Any:
        """Replace the key with ``text`` if it is still at ``version`` (>= 1)."""
        now = utcnow()
        values = {**self._template, "value": text, "expires_at": expires_at,
                  "if_version": version, "now": now, "updated_at": now}  # fmt: skip
        compiled = self._compiled
        fetch = "row" if self._reads_on_miss else "rowcount"
        return self._hotpath.run_plain(compiled.sql, compiled.parameters(values), fetch=fetch)

    def written(self, answer: Any, version: int) -> bool:
        """Whether :meth:`write` replaced the key (``answer``: what it answered). A miss
        inside ``update`` that may report a lost race unread raises that conflict,
        keeping the live row the write answered, if it did, for :meth:`lost_to`; any
        other miss returns ``False``, and the caller writes the general way, which says
        why."""
        if self._reads_on_miss:
            if answer is None:
                return True
            live = None if answer[1] == 0 else (answer[0], int(answer[1]))
            self._lost = (live,)
            self._losses += 1
        elif int(answer or 0):
            return True
        if unread_conflicts_allowed():
            raise unread_conflict(self._scope, self._key, version)
        self._lost = None
        return False
