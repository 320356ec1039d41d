"""The overview page (``/ui/overview``): how much state, where, how big, when it goes.

What it shows is :func:`statestore.metastore.overview.afetch_overview` of the caller's
grant: everything for an admin token, the task instance and granted assets for a task
token (nothing of anyone else's, not even as a total).

**An admin's overview is never computed on a request's time.** Bytes per dag/asset,
writes per day and the largest values need every value's length, and no index holds it:
at 10^6 keys that pass takes seconds (docs/performance.md, "Web UI overview"). So the
complete overview is computed in the background, one computation per scope at a time,
kept by :class:`OverviewCache`, and served from memory with its age on the page; a
request that finds it older than :data:`CACHE_SECONDS` (and than :data:`DUTY` times
its last computation) starts the next computation and still answers at once. Until the
first one is done, the page shows what the indexes answer (keys per dag and asset, the
expiry histogram), itself computed in the background and waited for at most
:data:`BUDGET_SECONDS`, past which the page says "being computed". "Refresh" starts a
computation if the overview is older than :data:`MIN_REFRESH_SECONDS`. A task token's
overview reads only its grant's index ranges, so it is computed on the request (and
cached the same way). Each replica keeps its own cache: it holds numbers and key names,
never values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from statestore import wire
from statestore.exceptions import UnsupportedOperationError
from statestore.metastore.overview import Overview, OverviewScope, afetch_overview
from statestore.server.state import ServerState
from statestore.server.ui.charts import Bar, bar_chart, column_chart, format_count
from statestore.server.ui.render import _size, render
from statestore.server.ui.session import Session

__all__ = ["CACHE_SECONDS", "MIN_REFRESH_SECONDS", "OverviewCache", "router", "scope_of"]

CACHE_SECONDS = 120.0
"""How old an overview may be before a request starts computing it again."""
MIN_REFRESH_SECONDS = 5.0
""""Refresh" recomputes only an overview older than this: a reload loop cannot make the
server read the whole state table on every request."""
BUDGET_SECONDS = 0.5
"""The longest a request waits for a first (index-only) admin overview before it
answers "being computed": the page's server time stays under a second at 10^6 keys
even where those index scans take longer (MariaDB with its default buffer pool)."""
DUTY = 10.0
"""A complete overview is recomputed no sooner than this many times its last
computation took: at most a tenth of the time is spent scanning for it."""
DAYS = 14
_MAX_ENTRIES = 256  # scopes remembered per replica (each a few KB of numbers)

router = APIRouter()
log = logging.getLogger("statestore.server.ui")


def scope_of(grant: wire.Grant) -> OverviewScope:
    """What a token's overview covers: everything, or exactly what it grants."""
    if grant.admin:
        return OverviewScope(everything=True)
    return OverviewScope(
        task=grant.task,
        all_map_indices=grant.all_map_indices,
        assets=grant.read_assets | grant.write_assets,
    )


class OverviewCache:
    """Overviews by scope: computed once at a time, kept, and refreshed behind requests.

    ``get(..., background=False)`` (a task token's overview: cheap) computes a missing or
    old one on the request, once per scope at a time. ``background=True`` (an admin's: a
    pass over every row) never makes a request wait longer than ``budget`` seconds: it
    answers the cached complete overview, however old (its age is shown), and starts a
    refresh once it is older than ``ttl`` -- or than :data:`DUTY` times its last
    computation, so a slow database is not kept scanning. With none cached yet, it
    answers the index-only overview (``complete=False``), itself computed in the
    background and waited for up to ``budget``; past that it answers ``None`` (the page
    says "being computed") and the next request gets it.
    """

    def __init__(
        self,
        ttl: float = CACHE_SECONDS,
        budget: float = BUDGET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.budget = budget
        self._clock = clock
        # scope -> (computed at, overview, seconds it took); complete ones only
        self._entries: dict[OverviewScope, tuple[float, Overview, float]] = {}
        self._partial: dict[OverviewScope, tuple[float, Overview]] = {}
        self._locks: dict[OverviewScope, asyncio.Lock] = {}
        self._running: dict[tuple[OverviewScope, bool], asyncio.Task[None]] = {}

    def _stale(self, entry: tuple[float, Overview, float], refresh: bool) -> bool:
        age = self._clock() - entry[0]
        return age >= (MIN_REFRESH_SECONDS if refresh else max(self.ttl, DUTY * entry[2]))

    def _store(self, scope: OverviewScope, overview: Overview, took: float) -> None:
        if scope not in self._entries and len(self._entries) >= _MAX_ENTRIES:
            oldest = min(self._entries, key=lambda s: self._entries[s][0])
            del self._entries[oldest]
            self._locks.pop(oldest, None)
        self._entries[scope] = (self._clock(), overview, took)
        self._partial.pop(scope, None)

    async def get(
        self,
        scope: OverviewScope,
        compute: Callable[[bool], Awaitable[Overview]],
        *,
        background: bool = False,
        refresh: bool = False,
    ) -> tuple[Overview | None, float | None]:
        """The overview of ``scope`` (``None``: not ready within the budget) and its age
        in seconds (``None``: computed for this request). ``compute(complete)`` reads
        one from the database."""
        if background:
            return await self._get_behind(scope, compute, refresh)
        lock = self._locks.setdefault(scope, asyncio.Lock())
        async with lock:  # a second request for the same scope waits for the first
            found = self._entries.get(scope)
            if found is not None and not self._stale(found, refresh):
                return found[1], self._clock() - found[0]
            started = self._clock()
            overview = await compute(True)
            self._store(scope, overview, self._clock() - started)
            return overview, None

    async def _get_behind(
        self, scope: OverviewScope, compute: Callable[[bool], Awaitable[Overview]], refresh: bool
    ) -> tuple[Overview | None, float | None]:
        found = self._entries.get(scope)
        if found is None or self._stale(found, refresh):
            self._start(scope, True, compute)
        if found is not None:
            return found[1], self._clock() - found[0]
        partial = self._partial.get(scope)
        if partial is None:
            task = self._start(scope, False, compute)
            asked = self._clock()
            await asyncio.wait({task}, timeout=self.budget)
            done = self._entries.get(scope)  # the complete one may have won the race
            if done is not None:
                return done[1], None
            partial = self._partial.get(scope)
            if partial is not None and partial[0] >= asked:
                return partial[1], None
        return (partial[1], self._clock() - partial[0]) if partial else (None, None)

    def computing(self, scope: OverviewScope) -> bool:
        """Whether a complete overview of ``scope`` is being computed in the background."""
        return (scope, True) in self._running

    def _start(
        self, scope: OverviewScope, complete: bool, compute: Callable[[bool], Awaitable[Overview]]
    ) -> asyncio.Task[None]:
        running = self._running.get((scope, complete))
        if running is not None:
            return running  # one computation per scope and kind, however many ask

        async def run() -> None:
            started = self._clock()
            try:
                overview = await compute(complete)
                if complete:
                    self._store(scope, overview, self._clock() - started)
                elif scope not in self._entries:
                    self._partial[scope] = (self._clock(), overview)
            except Exception:  # logged; the next request tries again
                log.exception("computing the overview failed")
            finally:
                self._running.pop((scope, complete), None)

        task = asyncio.get_running_loop().create_task(run())
        self._running[(scope, complete)] = task
        return task

    async def wait(self) -> None:
        """Until every background computation has finished (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def cancel(self) -> None:
        """Stop every background computation (server shutdown: a complete overview of a
        large database takes seconds, and the store is about to close under it)."""
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


CACHE_ATTRIBUTE = "statestore_ui_overview"
"""Where an app keeps its :class:`OverviewCache` (``app.state``); its lifespan cancels it."""


def _cache(request: Request) -> OverviewCache:
    # One per app, made on first use: create_app need not know about the UI's pages.
    cache: OverviewCache | None = getattr(request.app.state, CACHE_ATTRIBUTE, None)
    if cache is None:
        cache = OverviewCache()
        setattr(request.app.state, CACHE_ATTRIBUTE, cache)
    return cache


def _day_label(day: Any, today: Any) -> str:
    if day == today:
        return "today"
    if day == today + timedelta(days=1):
        return "tomorrow"
    return f"{day:%a} {day.day} {day:%b}"


def _charts(o: Overview) -> dict[str, Any]:
    today = o.computed_at.date()
    dag_keys = [Bar(g.name, g.keys) for g in o.dags]
    dag_bytes = [Bar(g.name, g.bytes, _size(g.bytes)) for g in o.dags]
    asset_keys = [Bar(g.name, g.keys) for g in o.assets]
    asset_bytes = [Bar(g.name, g.bytes, _size(g.bytes)) for g in o.assets]
    expiry = [Bar("already expired", o.expiry.expired, kind="warn")]
    expiry += [Bar(_day_label(d.day, today), d.keys) for d in o.expiry.days]
    expiry += [Bar("later", o.expiry.later), Bar("never expire", o.expiry.never, kind="muted")]
    writes = [Bar(f"{d.day.day} {d.day:%b}", d.keys) for d in o.writes]
    n = len(o.dags)
    return {
        "dag_keys": bar_chart("dag-keys", "Keys per dag", f"Keys of the {n} largest dags.",
                              dag_keys),
        "dag_bytes": bar_chart("dag-bytes", "Bytes per dag",
                               f"Size of the values of the {n} largest dags.", dag_bytes),
        "asset_keys": bar_chart("asset-keys", "Keys per asset",
                                f"Keys of the {len(o.assets)} largest assets.", asset_keys),
        "asset_bytes": bar_chart("asset-bytes", "Bytes per asset",
                                 "Size of the values of the largest assets.", asset_bytes),
        "expiry": bar_chart(
            "expiry", "When keys expire",
            f"Keys already expired, expiring on each of the next {len(o.expiry.days)} days "
            f"(UTC), later, and never. {format_count(o.expiry.expired)} already expired, "
            f"{format_count(o.expiry.never)} never expire.", expiry,
        ),
        "writes": column_chart(
            "writes", "Keys by day of their last write",
            f"Keys last written on each of the past {len(o.writes)} days (UTC), today last; "
            f"{format_count(o.older_writes)} earlier.", writes,
        ),
        "expiry_rows": list(zip(expiry, [None, *o.expiry.days, None, None], strict=True)),
    }  # fmt: skip


@router.get("/overview")
async def overview_page(request: Request, ui: Session) -> Response:
    """The overview of what the caller's token grants, with its age."""
    from statestore.metastore.backend import MetastoreStateBackend  # noqa: PLC0415

    state: ServerState = request.app.state.statestore
    backend = state.backend
    if not isinstance(backend, MetastoreStateBackend):
        raise UnsupportedOperationError("the overview needs the database backend (the metastore)")
    scope = scope_of(ui.grant)

    async def compute(complete: bool) -> Overview:
        now = datetime.now(timezone.utc)
        return await afetch_overview(backend, scope, now, days=DAYS, complete=complete)

    refresh = request.query_params.get("refresh") == "1"
    started = time.perf_counter()
    cache = _cache(request)
    # Only an admin's overview reads every row: a task token's stays within its grant.
    overview, age = await cache.get(scope, compute, background=scope.everything,
                                    refresh=refresh)  # fmt: skip
    context = {
        "o": overview,
        "budget": cache.budget,
        "age": age,
        "ttl": cache.ttl,
        "computing": cache.computing(scope),
        "server_ms": (time.perf_counter() - started) * 1000,
        "scope": scope,
        **(_charts(overview) if overview is not None else {}),
    }
    return render(request, ui, "overview.html", context)
