"""Maintenance a host application runs: expired task state and the orphan asset sweep.

statestore never cleans up behind your back. Schedule :func:`cleanup` (or the
``statestore cleanup`` command) from cron, a systemd timer, a Kubernetes CronJob or a
workflow of your own. Only the metastore backend is cleaned -- directly, or through a
state server's admin routes when the store is a server's URL and an admin token
(:mod:`statestore.backends.http_admin`; the server then uses its own clock, so ``now``
cannot be given). Any other backend is *explicitly not cleaned up* — the report says so
and nothing raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from statestore.backends import state_server
from statestore.backends.base import BaseStateBackend
from statestore.exceptions import InvalidTypeError, InvalidValueError, UnsupportedOperationError
from statestore.metastore import maintenance, receipts
from statestore.metastore.backend import MetastoreStateBackend
from statestore.metastore.errors import translate_errors
from statestore.metastore.maintenance import ExpiredTaskState
from statestore.retention import utcnow
from statestore.scopes import MAX_INTEGER_ID, TaskScope

if TYPE_CHECKING:
    from statestore.backends.http import HttpStateBackend
    from statestore.store import StateStore

__all__ = [
    "CleanupReport",
    "ExpiredTaskState",
    "ObjectsReport",
    "cleanup",
    "cleanup_task_states",
    "gc_objects",
    "iter_expired_task_states",
    "sweep_asset_states",
]

Progress = Callable[[int], None]
"""Called with the running total of rows processed, after each batch."""


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What a cleanup or sweep did, or (``dry_run``) would do.

    ``batches`` counts the committed deletes that removed at least one row, so a run
    that found nothing reports 0 whether it was batched or not.
    """

    deleted: int = 0
    would_delete: int = 0
    batches: int = 0
    dry_run: bool = False
    skipped_reason: str | None = None

    def __add__(self, other: CleanupReport) -> CleanupReport:
        reasons = [r for r in (self.skipped_reason, other.skipped_reason) if r]
        return CleanupReport(
            deleted=self.deleted + other.deleted,
            would_delete=self.would_delete + other.would_delete,
            batches=self.batches + other.batches,
            dry_run=self.dry_run or other.dry_run,
            skipped_reason=reasons[0] if reasons else None,
        )


def _resolve(store: StateStore | None) -> StateStore:
    if store is None:
        from statestore.store import default_store  # noqa: PLC0415

        return default_store()
    return store


def _metastore(store: StateStore) -> MetastoreStateBackend | None:
    backend = store.primary_backend
    return backend if isinstance(backend, MetastoreStateBackend) else None


def _through_server(store: StateStore, now: datetime | None) -> HttpStateBackend | None:
    """The store's state server, whose admin routes clean its database; else ``None``."""
    backend = state_server(store.primary_backend)
    if backend is None:
        return None
    if now is not None:
        raise UnsupportedOperationError(
            "now cannot be given through a state server: it cleans up by its own clock"
        )
    return backend


def _skipped(store: StateStore, dry_run: bool) -> CleanupReport:
    name = type(store.primary_backend).__name__
    return CleanupReport(
        dry_run=dry_run,
        skipped_reason=f"{name} is not the metastore backend; it is explicitly not cleaned up "
        "(implement BaseStateBackend.cleanup() and call it from your own maintenance)",
    )


def _check_now(now: datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if not isinstance(now, datetime):
        raise InvalidTypeError(f"now must be a datetime, not {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidTypeError("now must be a timezone-aware datetime")
    return now


def _check_batch_size(batch_size: int | None, store: StateStore) -> int:
    if batch_size is None:
        return store.config.state_store.state_cleanup_batch_size
    if not isinstance(batch_size, int) or isinstance(batch_size, bool):
        raise InvalidTypeError(f"batch_size must be an int, not {type(batch_size).__name__}")
    if not 0 <= batch_size <= MAX_INTEGER_ID:  # a LIMIT past it fails in the driver
        raise InvalidValueError(
            f"batch_size must be between 0 and {MAX_INTEGER_ID}, not {batch_size}"
        )
    return batch_size


def cleanup_task_states(
    store: StateStore | None = None,
    *,
    dry_run: bool = False,
    batch_size: int | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> CleanupReport:
    """Delete task-state rows whose ``expires_at < now``; never asset state.

    Never-expiring rows (``NEVER_EXPIRE``, or written while the default retention was 0)
    are never touched. ``batch_size`` (default ``[state_store]
    state_cleanup_batch_size``): 0 deletes in one statement, N in batches of N rows,
    each committed, until none remain. Safe to run from two processes at once and to
    interrupt and re-run. A dry run deletes nothing and counts what would go; use
    :func:`iter_expired_task_states` to list those rows.
    """
    store = _resolve(store)
    moment = _check_now(now)
    size = _check_batch_size(batch_size, store)
    backend = _metastore(store)
    if backend is None:
        server = _through_server(store, now)
        if server is None:
            return _skipped(store, dry_run)
        report = server.cleanup_task_states(dry_run=dry_run, batch_size=batch_size)
        if progress is not None:  # one call: the server reports when it is done
            progress(report.would_delete if dry_run else report.deleted)
        return report
    with translate_errors(backend.url):
        backend.ensure_schema()
        if dry_run:
            with backend.maintenance_engine.connect() as conn:
                count = maintenance.count_expired(conn, moment)
            if progress is not None:
                progress(count)
            return CleanupReport(would_delete=count, dry_run=True)
        _prune_receipts(backend, moment)
        deleted = batches = 0
        worker = store.worker_backend
        if worker is None:
            for batch in maintenance.delete_expired_batches(
                backend.maintenance_engine, backend.dialect, moment, size
            ):
                deleted += batch
                batches += bool(batch)
                if progress is not None:
                    progress(deleted)
            return CleanupReport(deleted=deleted, batches=batches)
        # With a worker-side backend: rows first (committed), then their objects.
        for count, refs in maintenance.delete_expired_returning_refs(
            backend.maintenance_engine, moment, size
        ):
            for item in refs:
                _delete_object(worker, item)
            deleted += count
            batches += bool(count)
            if progress is not None:
                progress(deleted)
    return CleanupReport(deleted=deleted, batches=batches)


def _prune_receipts(backend: MetastoreStateBackend, now: datetime) -> None:
    """Remove the state server's write receipts past their time (``write_ids``);
    a server removes them itself too, so this is not counted as deleted state."""
    with backend.maintenance_engine.begin() as conn:
        conn.execute(receipts.prune_statement(), receipts.prune_before(now))


def _delete_object(worker: BaseStateBackend, item: maintenance.DeletedRef) -> None:
    delete_ref = getattr(worker, "delete_ref", None)
    if callable(delete_ref):
        delete_ref(item.ref)
    elif isinstance(item.scope, TaskScope):
        worker.delete_task_state_objects(scope=item.scope, key=item.key)
    else:
        worker.delete_asset_state_objects(scope=item.scope, key=item.key)


def iter_expired_task_states(
    store: StateStore | None = None, *, now: datetime | None = None
) -> Iterator[ExpiredTaskState]:
    """Stream every expired task-state key, grouped by dag, run, task, map index, key.

    Constant memory however many rows expired (a server-side cursor). Yields nothing
    for a backend that is not the metastore.
    """
    store = _resolve(store)
    moment = _check_now(now)
    backend = _metastore(store)
    if backend is None:
        server = _through_server(store, now)
        if server is not None:
            yield from server.iter_expired_task_states()
        return
    with translate_errors(backend.url):
        backend.ensure_schema()
        yield from maintenance.iter_expired(backend.maintenance_engine, moment)


def sweep_asset_states(store: StateStore | None = None, *, dry_run: bool = False) -> CleanupReport:
    """Delete the state of every *inactive* asset (the orphan sweep).

    Active assets are never touched, and the registry keeps the inactive assets so they
    can be re-activated (with empty state).
    """
    store = _resolve(store)
    backend = _metastore(store)
    if backend is None:
        server = _through_server(store, None)
        if server is not None:
            return server.sweep_asset_states(dry_run=dry_run)
        return _skipped(store, dry_run)
    with translate_errors(backend.url):
        backend.ensure_schema()
        with backend.maintenance_engine.connect() as conn:
            if dry_run:
                return CleanupReport(would_delete=maintenance.count_sweepable(conn), dry_run=True)
            swept = maintenance.inactive_assets_with_state(conn)
            deleted = maintenance.sweep_inactive(conn)
    worker = store.worker_backend
    if worker is not None:  # rows first, then the objects
        for scope in swept:
            worker.delete_asset_state_objects(scope=scope)
    return CleanupReport(deleted=deleted, batches=int(deleted > 0))


def cleanup(
    store: StateStore | None = None,
    *,
    dry_run: bool = False,
    batch_size: int | None = None,
    now: datetime | None = None,
    sweep_assets: bool = True,
    progress: Progress | None = None,
) -> CleanupReport:
    """The one call a maintenance script makes: expired task state, then the sweep."""
    store = _resolve(store)
    report = cleanup_task_states(
        store, dry_run=dry_run, batch_size=batch_size, now=now, progress=progress
    )
    if sweep_assets and report.skipped_reason is None:
        report += sweep_asset_states(store, dry_run=dry_run)
    return report


@dataclass(frozen=True, slots=True)
class ObjectsReport:
    """What ``gc_objects`` found and did."""

    scanned: int
    orphans: list[str]
    deleted: int
    dry_run: bool


def gc_objects(
    store: StateStore | None = None,
    *,
    dry_run: bool = False,
    grace: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> ObjectsReport:
    """Delete objects that no row references and that are older than ``grace``.

    Such orphans are what a crash between "delete the row" and "delete the object"
    leaves behind. The grace period protects objects whose row is being written right
    now (the object is written first). Needs an object-store worker-side backend, and
    the metastore or a state server (admin token): through a server the objects are
    listed here and the server says which references its rows hold.
    """
    from statestore.backends.objectstore import ObjectStoreStateBackend  # noqa: PLC0415

    store = _resolve(store)
    moment = _check_now(now)
    worker = store.worker_backend
    backend = _metastore(store)
    server = None if backend is not None else _through_server(store, None)
    if not isinstance(worker, ObjectStoreStateBackend) or (backend is None and server is None):
        raise UnsupportedOperationError(
            "objects gc needs [workers] state_backend = ObjectStoreStateBackend "
            "and the metastore backend or a state server"
        )
    objects = worker.iter_objects()
    old = [ref for ref, modified in objects if modified is None or modified < moment - grace]
    if server is not None:  # the object store is listed here; the server has the rows
        held = server.referenced_objects(old)
    else:
        assert backend is not None
        with translate_errors(backend.url):
            backend.ensure_schema()
            with backend.maintenance_engine.connect() as conn:
                held = maintenance.referenced(conn, old)
    orphans = sorted(set(old) - held)
    if not dry_run:
        for ref in orphans:
            worker.delete_ref(ref)
    return ObjectsReport(
        scanned=len(objects),
        orphans=orphans,
        deleted=0 if dry_run else len(orphans),
        dry_run=dry_run,
    )
