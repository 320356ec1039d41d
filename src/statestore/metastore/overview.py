"""The web UI's overview: how much state there is, where, how big, and when it goes.

A handful of aggregate statements over the two state tables, parameterised by an
:class:`OverviewScope` (everything for an admin; one task instance and some assets for a
task token), run on one connection (:func:`read_overview`), or on a backend's
connection by :func:`fetch_overview` and its async twin :func:`afetch_overview` (the
server's: the event loop waits on the database, it does not block on it).

Cost, measured at 10^6 keys (docs/performance.md, "Web UI overview"): keys per dag and
per asset are index-only scans (the 0003 dag index, the asset-state primary key) and the
expiry histogram a few range counts on the ``expires_at`` indexes. Bytes per dag/asset,
writes over time and the largest values need every value's length, which no index holds
(not without a new column, and revision 0003 adds indexes only): for an admin that is a
pass over the whole state tables, seconds at 10^6 keys. So ``complete=False`` gives the
index-answered part alone, and the server never runs the complete one on a request's
time: it computes it in the background and serves it from a short-lived cache with its
age on the page (:mod:`statestore.server.ui.overview`). A task token's overview reads
only its own index ranges and is cheap either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    LargeBinary,
    and_,
    case,
    cast,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.sql.expression import Select

from statestore.metastore.digests import ref_digest
from statestore.metastore.tables import asset, asset_state, task_state
from statestore.metastore.task_match import task_match
from statestore.scopes import TaskScope

if TYPE_CHECKING:
    from statestore.metastore.backend import MetastoreStateBackend

__all__ = [
    "DayCount",
    "ExpiryHistogram",
    "LargeValue",
    "Overview",
    "OverviewScope",
    "SizeGroup",
    "afetch_overview",
    "fetch_overview",
    "read_overview",
]

_ts = task_state.c
_as = asset_state.c


@dataclass(frozen=True)
class OverviewScope:
    """What an overview covers: ``everything`` (an admin), or one task instance (every
    map index of it when ``all_map_indices``) and the assets named in ``assets``."""

    everything: bool = False
    task: TaskScope | None = None
    all_map_indices: bool = False
    assets: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class SizeGroup:
    """Keys and bytes (of the values' JSON text) of one dag or one asset."""

    name: str
    keys: int
    bytes: int


@dataclass(frozen=True, slots=True)
class DayCount:
    """How many keys fall on one UTC day."""

    day: date
    keys: int


@dataclass(frozen=True, slots=True)
class ExpiryHistogram:
    """Keys by when they expire: already, on each of the coming days, later, never."""

    expired: int
    days: tuple[DayCount, ...]
    later: int
    never: int


@dataclass(frozen=True, slots=True)
class LargeValue:
    """One of the largest values: its scope (``dag_id/run_id/task_id[map_index]`` or the
    asset's name), its key and its size in bytes."""

    kind: str  # "task" or "asset"
    scope: str
    key: str
    bytes: int
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    asset: str | None = None


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything the overview page shows, as of ``computed_at``."""

    computed_at: datetime
    task_keys: int
    task_bytes: int
    asset_keys: int
    asset_bytes: int
    dags: tuple[SizeGroup, ...]
    assets: tuple[SizeGroup, ...]
    expiry: ExpiryHistogram
    largest: tuple[LargeValue, ...]
    writes: tuple[DayCount, ...]
    """Keys last written on each of the past days (today last), by ``updated_at``."""
    older_writes: int
    """Keys last written before the first of those days."""
    complete: bool = True
    """``False``: only what the indexes answer -- keys per dag and asset and the expiry
    histogram; bytes are 0, and writes and the largest values empty."""

    @property
    def keys(self) -> int:
        return self.task_keys + self.asset_keys

    @property
    def bytes(self) -> int:
        return self.task_bytes + self.asset_bytes


def _octets(column: Any, dialect: str) -> ColumnElement[int]:
    """The value's size in bytes: ``length`` counts characters on SQLite and PostgreSQL."""
    if dialect == "sqlite":
        return func.length(cast(column, LargeBinary))  # CAST(value AS BLOB): bytes
    if dialect == "postgresql":
        return func.octet_length(column)
    return func.length(column)  # MySQL/MariaDB: LENGTH is bytes


def _day(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC day of a timestamp column (a date or an ISO text, normalised by ``_as_date``)."""
    if dialect == "sqlite":
        return func.substr(column, 1, 10)  # stored as ISO text, UTC
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # MySQL DATETIME holds UTC


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _task_where(scope: OverviewScope) -> ColumnElement[bool] | None:
    if scope.everything:
        return None
    task = scope.task
    if task is None:
        return false()
    return and_(*task_match(task, all_map_indices=scope.all_map_indices))


def _asset_ids(conn: Connection, scope: OverviewScope) -> dict[int, str] | None:
    """The granted assets' ids and names (``None``: every asset)."""
    if scope.everything:
        return None
    if not scope.assets:
        return {}
    digests = [ref_digest(name) for name in scope.assets]
    rows = conn.execute(
        select(asset.c.id, asset.c.name).where(
            or_(asset.c.name_digest.in_(digests), asset.c.uri_digest.in_(digests))
        )
    )
    return {int(row[0]): str(row[1]) for row in rows}


def _where(query: Select[Any], condition: ColumnElement[bool] | None) -> Select[Any]:
    return query if condition is None else query.where(condition)


def _sizes_and_writes(
    conn: Connection, group: Any, table_c: Any, where: ColumnElement[bool] | None, since: datetime
) -> tuple[dict[Any, list[int]], dict[date, int], int]:
    """One pass over the rows: keys and bytes per ``group``, and writes per recent day.

    Grouping by (group, day of updated_at if recent) gives both in a single read of the
    table: at most groups x (days + 1) result rows.
    """
    dialect = conn.dialect.name
    recent = case((table_c.updated_at >= since, _day(table_c.updated_at, dialect)), else_=None)
    query = _where(
        select(group, recent, func.count(), func.sum(_octets(table_c.value, dialect))),
        where,
    ).group_by(group, recent)
    sizes: dict[Any, list[int]] = {}
    writes: dict[date, int] = {}
    older = 0
    for name, day, keys, octets in conn.execute(query):
        entry = sizes.setdefault(name, [0, 0])
        entry[0] += int(keys)
        entry[1] += int(octets or 0)
        if day is None:
            older += int(keys)
        else:
            writes[_as_date(day)] = writes.get(_as_date(day), 0) + int(keys)
    return sizes, writes, older


def _counts(
    conn: Connection, group: Any, where: ColumnElement[bool] | None
) -> dict[Any, list[int]]:
    """Keys per ``group`` alone: an index-only scan (the 0003 dag index, the asset-state
    primary key), no value read."""
    query = _where(select(group, func.count()), where).group_by(group)
    return {name: [int(keys), 0] for name, keys in conn.execute(query)}


def _expiry_counts(
    conn: Connection,
    table_c: Any,
    where: ColumnElement[bool] | None,
    edges: list[datetime],
    total: int,
) -> list[int]:
    """[never, expired before edges[0], one count per [edges[i], edges[i+1]), later].

    Each is a range count the ``expires_at`` index answers (one round trip for all),
    except "never": it is the ``total`` (known from the grouped counts) less the rest,
    which spares counting every NULL of the index.
    """
    expires = table_c.expires_at

    def count(condition: ColumnElement[bool]) -> Any:
        inner = select(func.count()).select_from(table_c.expires_at.table).where(condition)
        return _where(inner, where).scalar_subquery()

    parts = [count(expires < edges[0])]
    parts += [count(and_(expires >= lo, expires < hi)) for lo, hi in pairwise(edges)]
    parts.append(count(expires >= edges[-1]))
    counts = [int(value) for value in conn.execute(select(*parts)).one()]
    # A write between the two statements may skew it by a key: never below zero.
    return [max(0, total - sum(counts)), *counts]


def _largest_tasks(
    conn: Connection, where: ColumnElement[bool] | None, limit: int
) -> list[LargeValue]:
    size = _octets(_ts.value, conn.dialect.name).label("size")
    query = _where(select(_ts.dag_id, _ts.run_id, _ts.task_id, _ts.map_index, _ts.key, size), where)
    rows = conn.execute(query.order_by(size.desc()).limit(limit))
    return [
        LargeValue("task", f"{d}/{r}/{t}[{m}]", k, int(n), d, r, t, int(m))
        for d, r, t, m, k, n in rows
    ]


def _largest_assets(
    conn: Connection, where: ColumnElement[bool] | None, limit: int
) -> list[tuple[int, str, int]]:
    size = _octets(_as.value, conn.dialect.name).label("size")
    query = _where(select(_as.asset_id, _as.key, size), where)
    return [
        (int(a), str(k), int(n))
        for a, k, n in conn.execute(query.order_by(size.desc()).limit(limit))
    ]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def _top(groups: dict[str, list[int]], limit: int) -> tuple[SizeGroup, ...]:
    ordered = sorted(groups.items(), key=lambda item: (-item[1][1], -item[1][0], item[0]))
    return tuple(SizeGroup(name, keys, octets) for name, (keys, octets) in ordered[:limit])


def read_overview(
    conn: Connection,
    scope: OverviewScope,
    now: datetime,
    *,
    days: int = 14,
    largest: int = 10,
    groups: int = 20,
    complete: bool = True,
) -> Overview:
    """The overview of ``scope`` as of ``now`` (aware UTC).

    ``days``: the expiry histogram's coming days and the writes' past days (UTC days;
    today counts as the first of the coming and the last of the past). ``largest``: how
    many of the largest values. ``groups``: how many dags and assets, largest first.
    ``complete=False``: only what the indexes answer (see :attr:`Overview.complete`),
    for a first answer while the complete one is computed.
    """
    today = now.astimezone(timezone.utc).date()
    since = _midnight(today - timedelta(days=days - 1))
    task_where = _task_where(scope)
    ids = _asset_ids(conn, scope)
    asset_where = None if ids is None else _as.asset_id.in_(sorted(ids)) if ids else false()
    task_writes: dict[date, int] = {}
    asset_writes: dict[date, int] = {}
    task_older = asset_older = 0
    if complete:
        dags, task_writes, task_older = _sizes_and_writes(conn, _ts.dag_id, _ts, task_where, since)
        by_id, asset_writes, asset_older = _sizes_and_writes(
            conn, _as.asset_id, _as, asset_where, since
        )
    else:
        dags, by_id = (
            _counts(conn, _ts.dag_id, task_where),
            _counts(conn, _as.asset_id, asset_where),
        )
    if ids is None and by_id:
        names = conn.execute(select(asset.c.id, asset.c.name).where(asset.c.id.in_(list(by_id))))
        ids = {int(row[0]): str(row[1]) for row in names}
    ids = ids or {}
    assets = {ids.get(asset_id, f"#{asset_id}"): size for asset_id, size in by_id.items()}
    # Expiry: "now", then each following UTC midnight: the first bucket is the rest of today.
    edges = [now] + [_midnight(today + timedelta(days=i)) for i in range(1, days + 1)]
    task_keys = sum(keys for keys, _ in dags.values())
    asset_keys = sum(keys for keys, _ in assets.values())
    task_exp = _expiry_counts(conn, _ts, task_where, edges, task_keys)
    asset_exp = _expiry_counts(conn, _as, asset_where, edges, asset_keys)
    both = [a + b for a, b in zip(task_exp, asset_exp, strict=True)]
    expiry = ExpiryHistogram(
        expired=both[1],
        days=tuple(DayCount(today + timedelta(days=i), n) for i, n in enumerate(both[2:-1])),
        later=both[-1],
        never=both[0],
    )
    top = _largest_tasks(conn, task_where, largest) if complete else []
    for asset_id, key, size in _largest_assets(conn, asset_where, largest) if complete else []:
        name = ids.get(asset_id, f"#{asset_id}")
        top.append(LargeValue("asset", name, key, size, asset=name))
    top.sort(key=lambda value: (-value.bytes, value.scope, value.key))
    writes = tuple(
        DayCount(day, task_writes.get(day, 0) + asset_writes.get(day, 0))
        for day in (since.date() + timedelta(days=i) for i in range(days))
        if complete
    )
    return Overview(
        computed_at=now,
        task_keys=task_keys,
        task_bytes=sum(octets for _, octets in dags.values()),
        asset_keys=asset_keys,
        asset_bytes=sum(octets for _, octets in assets.values()),
        dags=_top(dags, groups),
        assets=_top(assets, groups),
        expiry=expiry,
        largest=tuple(top[:largest]),
        writes=writes,
        older_writes=task_older + asset_older,
        complete=complete,
    )


def fetch_overview(
    backend: MetastoreStateBackend, scope: OverviewScope, now: datetime, **options: Any
) -> Overview:
    """:func:`read_overview` on a connection of ``backend``'s engine."""
    from statestore.metastore.errors import translate_errors  # noqa: PLC0415

    backend.ensure_schema()
    with translate_errors(backend.url), backend.engine.connect() as conn:
        return read_overview(conn, scope, now, **options)


async def afetch_overview(
    backend: MetastoreStateBackend, scope: OverviewScope, now: datetime, **options: Any
) -> Overview:
    """Async twin of :func:`fetch_overview`, on the running loop's engine."""
    from statestore.metastore.errors import translate_errors  # noqa: PLC0415

    await backend.aensure_schema()
    with translate_errors(backend.url):
        async with backend.async_engine.connect() as conn:
            return await conn.run_sync(read_overview, scope, now, **options)
