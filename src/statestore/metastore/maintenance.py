"""Maintenance SQL of the metastore: expired task state, the asset registry, the sweep.

Cleanup touches only ``statestore_task_state`` rows with ``expires_at < now`` — found
through the ``expires_at`` index, so the work is proportional to the expired rows, not
the table — and deletes them in one statement or in committed batches. Listing streams
rows through a server-side cursor, so memory stays flat however many rows expired.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Delete, bindparam, delete, func, select, true, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from statestore.exceptions import InvalidScopeError
from statestore.metastore.digests import ref_digest
from statestore.metastore.retries import DeadlockError, Retry, is_deadlock
from statestore.metastore.tables import asset, asset_state, task_state
from statestore.metastore.task_match import task_match
from statestore.scopes import AssetScope, TaskScope

__all__ = [
    "AssetInfo",
    "DeletedRef",
    "ExpiredTaskState",
    "StoredKey",
    "count_expired",
    "count_sweepable",
    "delete_expired_batches",
    "delete_expired_returning_refs",
    "inactive_assets_with_state",
    "iter_expired",
    "list_asset_state",
    "list_assets",
    "list_task_keys",
    "list_task_state",
    "list_task_state_under",
    "referenced",
    "set_assets_active",
    "sweep_inactive",
]

_ts = task_state.c
_EXPIRED = _ts.expires_at < bindparam("now", type_=_ts.expires_at.type)
_STREAM_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ExpiredTaskState:
    """One task-state key that cleanup would delete (or did)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    key: str
    expires_at: datetime
    object_ref: str | None = None
    """The worker-side object holding the value, when there is one."""
    map_key: str | None = None
    """The instance's map key, when it has one (its ``map_index`` is then the index the
    key was written with)."""


@dataclass(frozen=True, slots=True)
class AssetInfo:
    """One asset of the registry, and how many state keys it holds."""

    asset_id: int
    name: str
    uri: str | None
    active: bool
    keys: int
    created_at: datetime
    updated_at: datetime


def count_expired(conn: Connection, now: datetime) -> int:
    """How many task-state rows have expired by ``now``."""
    return int(conn.execute(select(func.count()).where(_EXPIRED), {"now": now}).scalar_one())


def _batch_delete(dialect: str, batch_size: int) -> Delete:
    if dialect == "mysql":
        # MySQL cannot delete from a table it selects from in a subquery, but it has
        # DELETE … LIMIT, which walks the expires_at index directly.
        limited: Delete = delete(task_state).where(_EXPIRED)
        return limited.with_dialect_options(mysql_limit=batch_size, mariadb_limit=batch_size)
    victims = select(_ts.row_id).where(_EXPIRED).order_by(_ts.expires_at).limit(batch_size)
    # The outer condition again: a writer may revive a picked row (an upsert with a new
    # expiry) while this statement waits for its lock; PostgreSQL then re-checks only
    # the outer WHERE against the new row version, and must find it live.
    return delete(task_state).where(_ts.row_id.in_(victims)).where(_EXPIRED)


def delete_expired_batches(
    engine: Engine, dialect: str, now: datetime, batch_size: int
) -> Generator[int, None, None]:
    """Delete expired rows, yielding the count of each committed batch.

    ``batch_size`` 0 is one statement. Otherwise batches run until one deletes nothing:
    a short batch does not prove the end when another cleanup runs concurrently, and an
    interrupted run has lost only rows that had expired anyway.
    """
    if not batch_size:
        with engine.connect() as conn:
            yield conn.execute(delete(task_state).where(_EXPIRED), {"now": now}).rowcount
        return
    batch = _batch_delete(dialect, batch_size)
    while True:
        deleted = _delete_batch(engine, batch, now)
        if not deleted:
            return
        yield deleted


def _delete_batch(engine: Engine, batch: Delete, now: datetime) -> int:
    """One committed batch; a deadlock with writers rolls it back whole, so run it again
    under the hot path's policy (``retries.Retry``)."""
    retry = Retry()
    while True:
        try:
            with engine.connect() as conn:  # autocommit: each batch is its own transaction
                return int(conn.execute(batch, {"now": now}).rowcount)
        except DBAPIError as exc:
            if not (is_deadlock(exc) and retry.allows(DeadlockError(exc))):
                raise
            time.sleep(retry.pause())


def iter_expired(engine: Engine, now: datetime) -> Iterator[ExpiredTaskState]:
    """Stream the expired rows grouped by dag, run, task, map index and key."""
    from statestore.backends.offload import ref_of  # noqa: PLC0415 - avoids a cycle

    # A reference envelope is short; a prefix of the value is enough to recognise one.
    head = func.substr(_ts.value, 1, 400)
    query = (
        select(
            _ts.dag_id,
            _ts.run_id,
            _ts.task_id,
            _ts.map_index,
            _ts.key,
            _ts.expires_at,
            head,
            _ts.map_key,
        )
        .where(_EXPIRED)
        .order_by(_ts.dag_id, _ts.run_id, _ts.task_id, _ts.map_index, _ts.map_key, _ts.key)
    )
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            # A server-side cursor needs a transaction on PostgreSQL, and one snapshot is
            # what a listing should see. SQLite's cursor is lazy and WAL-consistent as is.
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            streamed = conn.execution_options(stream_results=True, yield_per=_STREAM_PAGE)
            for row in streamed.execute(query, {"now": now}):
                yield ExpiredTaskState(*row[:6], object_ref=ref_of(row[6]), map_key=row[7])


def _assets_matching(assets: list[AssetScope]) -> Any:
    names = [ref_digest(a.name) for a in assets if a.name is not None]
    uris = [ref_digest(a.uri) for a in assets if a.name is None and a.uri is not None]
    ids = [a.asset_id for a in assets if a.name is None and a.uri is None]
    return asset.c.name_digest.in_(names) | asset.c.uri_digest.in_(uris) | asset.c.id.in_(ids)


def set_assets_active(
    conn: Connection, assets: list[AssetScope], active: bool, now: datetime
) -> int:
    """Mark assets (in)active; returns how many changed. Unknown assets are ignored."""
    statement = (
        update(asset)
        .where(_assets_matching(assets), asset.c.active != active)
        .values(active=active, updated_at=now)
    )
    return int(conn.execute(statement).rowcount)


def list_assets(conn: Connection, active: bool | None) -> list[AssetInfo]:
    """Every registered asset (optionally only active or inactive ones), by name."""
    keys = (
        select(func.count())
        .where(asset_state.c.asset_id == asset.c.id)
        .correlate(asset)
        .scalar_subquery()
    )
    query = select(
        asset.c.id,
        asset.c.name,
        asset.c.uri,
        asset.c.active,
        keys,
        asset.c.created_at,
        asset.c.updated_at,
    ).order_by(asset.c.name)
    if active is not None:
        query = query.where(asset.c.active == active)
    return [
        AssetInfo(row[0], row[1], row[2], bool(row[3]), int(row[4]), row[5], row[6])
        for row in conn.execute(query)
    ]


_INACTIVE_IDS = select(asset.c.id).where(asset.c.active != true())


def count_sweepable(conn: Connection) -> int:
    """How many asset-state rows belong to inactive assets."""
    query = select(func.count()).where(asset_state.c.asset_id.in_(_INACTIVE_IDS))
    return int(conn.execute(query).scalar_one())


def sweep_inactive(conn: Connection) -> int:
    """Delete the state of every inactive asset (the registry rows stay)."""
    statement = delete(asset_state).where(asset_state.c.asset_id.in_(_INACTIVE_IDS))
    return int(conn.execute(statement).rowcount)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One stored key as the CLI lists it."""

    map_index: int | None
    key: str
    value: str
    expires_at: datetime | None
    updated_at: datetime
    version: int
    updated_by: str | None
    map_key: str | None = None
    # Set only by list_task_state_under (a listing across tasks names each row's task).
    task: tuple[str, str, str] | None = None


def list_task_state(
    conn: Connection,
    scope_ids: tuple[str, str, str],
    map_index: int | None,
    now: datetime,
    map_key: str | None = None,
) -> list[StoredKey]:
    """Unexpired task-state keys of a task (one map index or map key, or all instances),
    by map index, map key and key."""
    query = (
        select(
            _ts.map_index,
            _ts.key,
            _ts.value,
            _ts.expires_at,
            _ts.updated_at,
            _ts.version,
            _ts.updated_by,
            _ts.map_key,
        )
        .where(*task_match(TaskScope(*scope_ids), all_map_indices=True))
        .where((_ts.expires_at.is_(None)) | (_ts.expires_at >= now))
        .order_by(_ts.map_index, _ts.map_key, _ts.key)
    )
    if map_index is not None:
        query = query.where(_ts.map_index == map_index)
    if map_key is not None:
        query = query.where(_ts.map_key == map_key)
    return [StoredKey(*row) for row in conn.execute(query)]


def list_task_state_under(
    conn: Connection, dag_id: str, run_id: str | None, now: datetime
) -> list[StoredKey]:
    """Unexpired task-state keys of a whole dag, or of one run of it, by task and key.

    An inspection aid: there is no index on the ids themselves (rows are found by task
    digest), so this scans the table; task code never lists this way.
    """
    query = (
        select(
            _ts.map_index,
            _ts.key,
            _ts.value,
            _ts.expires_at,
            _ts.updated_at,
            _ts.version,
            _ts.updated_by,
            _ts.map_key,
            _ts.dag_id,
            _ts.run_id,
            _ts.task_id,
        )
        .where(_ts.dag_id == dag_id)
        .where((_ts.expires_at.is_(None)) | (_ts.expires_at >= now))
        .order_by(_ts.run_id, _ts.task_id, _ts.map_index, _ts.map_key, _ts.key)
    )
    if run_id is not None:
        query = query.where(_ts.run_id == run_id)
    return [StoredKey(*row[:8], task=(row[8], row[9], row[10])) for row in conn.execute(query)]


def list_task_keys(
    conn: Connection,
    dag_id: str,
    run_id: str | None = None,
    task_id: str | None = None,
    *,
    map_index: int | None = None,
    map_key: str | None = None,
    now: datetime,
) -> list[StoredKey]:
    """What ``task-state list`` shows: the unexpired keys of a whole dag, one run, or
    one task (every instance, or the one ``map_index`` or ``map_key`` names). The ids
    obey the same rules as a ``TaskScope``'s; ``InvalidScopeError`` otherwise."""
    if task_id is not None and run_id is None:
        raise InvalidScopeError("task_id needs run_id (task ids repeat in every run)")
    if task_id is None and (map_index is not None or map_key is not None):
        raise InvalidScopeError("map_index and map_key need task_id")
    if task_id is None:
        TaskScope(dag_id, run_id or "-", "-")  # the id rules, before any I/O
        return list_task_state_under(conn, dag_id, run_id, now)
    assert run_id is not None
    TaskScope(dag_id, run_id, task_id, -1 if map_index is None else map_index, map_key=map_key)
    return list_task_state(conn, (dag_id, run_id, task_id), map_index, now, map_key)


def list_asset_state(conn: Connection, scope: AssetScope, now: datetime) -> list[StoredKey]:
    """Unexpired keys of one asset, by key."""
    s = asset_state.c
    query = (
        select(s.key, s.value, s.expires_at, s.updated_at, s.version, s.updated_by)
        .join(asset, asset.c.id == s.asset_id)
        .where(_assets_matching([scope]))
        .where((s.expires_at.is_(None)) | (s.expires_at >= now))
        .order_by(s.key)
    )
    return [StoredKey(None, *row) for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class DeletedRef:
    """An object reference whose row a cleanup or sweep has deleted."""

    scope: TaskScope | AssetScope
    key: str
    ref: str


def delete_expired_returning_refs(
    engine: Engine, now: datetime, batch_size: int
) -> Generator[tuple[int, list[DeletedRef]], None, None]:
    """Like :func:`delete_expired_batches`, also returning the references of the rows
    deleted, so their objects can be removed *after* the rows (never before).

    Each batch locks its rows (``FOR UPDATE``; a write transaction on SQLite), deletes
    exactly them, and commits: a row rewritten meanwhile is not expired any more and is
    neither deleted nor reported.
    """
    from statestore.backends.offload import ref_of  # noqa: PLC0415 - avoids a cycle

    size = batch_size or 1000
    picked = (
        select(
            _ts.row_id,
            _ts.dag_id,
            _ts.run_id,
            _ts.task_id,
            _ts.map_index,
            _ts.key,
            _ts.value,
            _ts.map_key,
        )
        .where(_EXPIRED)
        .order_by(_ts.expires_at)
        .limit(size)
    )
    while True:
        with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execution_options(isolation_level="READ COMMITTED")
                conn.begin()
            try:
                rows = conn.execute(
                    picked if sqlite else picked.with_for_update(), {"now": now}
                ).all()
                if rows:
                    conn.execute(
                        delete(task_state)
                        .where(_ts.row_id.in_([r[0] for r in rows]))
                        .where(_EXPIRED),
                        {"now": now},
                    )
            except BaseException:
                if sqlite:
                    conn.exec_driver_sql("ROLLBACK")
                else:
                    conn.rollback()
                raise
            if sqlite:
                conn.exec_driver_sql("COMMIT")
            else:
                conn.commit()
        if not rows:
            return
        refs = [
            DeletedRef(TaskScope(r[1], r[2], r[3], r[4], r[7]), r[5], ref)
            for r in rows
            if (ref := ref_of(r[6])) is not None
        ]
        yield len(rows), refs


def inactive_assets_with_state(conn: Connection) -> list[AssetScope]:
    """Inactive assets that still hold state (the sweep's targets)."""
    query = (
        select(asset.c.name, asset.c.uri)
        .where(asset.c.active != true())
        .where(asset.c.id.in_(select(asset_state.c.asset_id)))
    )
    return [AssetScope(name=name, uri=uri) for name, uri in conn.execute(query)]


def referenced(conn: Connection, refs: list[str]) -> set[str]:
    """Which of ``refs`` (object references) a row still holds — by digest, indexed.

    Object names carry the row's own digests (see ``backends.objectstore``), so each
    check is a primary-key lookup, not a scan of stored values.
    """
    from statestore.backends.worker import ref_envelope  # noqa: PLC0415

    held: set[str] = set()
    tasks = {bytes.fromhex(r.split("/")[3][:64]): r for r in refs if r.startswith("task/")}
    assets = {
        (bytes.fromhex(r.split("/")[1]), bytes.fromhex(r.split("/")[2][:64])): r
        for r in refs
        if r.startswith("asset/")
    }
    ids = list(tasks)
    for start in range(0, len(ids), 500):
        query = select(_ts.row_id, _ts.value).where(_ts.row_id.in_(ids[start : start + 500]))
        for row_id, value in conn.execute(query):
            if value == ref_envelope(tasks[row_id]):
                held.add(tasks[row_id])
    pairs = list(assets)
    s = asset_state.c
    for start in range(0, len(pairs), 500):
        part = pairs[start : start + 500]
        query = (
            select(asset.c.name_digest, s.key_digest, s.value)
            .join(asset, asset.c.id == s.asset_id)
            .where(asset.c.name_digest.in_({p[0] for p in part}))
            .where(s.key_digest.in_({p[1] for p in part}))
        )
        for row in conn.execute(query):
            ref = assets.get((bytes(row[0]), bytes(row[1])))
            value = row[2]
            if ref is not None and value == ref_envelope(ref):
                held.add(ref)
    return held
