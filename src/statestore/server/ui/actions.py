"""Actions beyond one key: clear a task instance (or every map index), deactivate and
activate an asset, and the cleanup dry run.

Each destructive action is a GET that shows a confirm page (no JavaScript needed) and
a POST, CSRF-checked, that acts through the same store calls as the API's routes
(``aclear``, ``adeactivate_assets``/``aactivate_assets``) and redirects to the result.
"""

from __future__ import annotations

import itertools

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from statestore.cleanup import cleanup_task_states, iter_expired_task_states
from statestore.metastore import browse
from statestore.metastore.maintenance import ExpiredTaskState
from statestore.scopes import TaskScope
from statestore.server.ui.access import asset_scope, flag, metastore, scope_query, state, task_scope
from statestore.server.ui.render import redirect, render, ui_path
from statestore.server.ui.session import Admin, Session, check_form, refuse_if_read_only

__all__ = ["DRY_RUN_SHOWN", "router"]

DRY_RUN_SHOWN = 500
"""Expired keys listed by the dry run page (the count covers them all)."""

router = APIRouter()


@router.get("/task/clear")
async def clear_confirm(request: Request, ui: Session) -> Response:
    """Ask before clearing one task instance, or every map index of the task."""
    refuse_if_read_only(request)
    everything = flag(request.query_params, "all_map_indices")
    scope = task_scope(request, ui, write=True, all_map_indices=everything)
    backend = metastore(request)
    page = await browse.afetch(backend, browse.task_keys(scope, limit=20))
    context = {
        "scope": scope, "everything": everything, "query": scope_query(scope),
        "keys": [row.key for row in page.items], "more": page.more,
        "back": ui_path(request, "/ui/instances", dag_id=scope.dag_id, run_id=scope.run_id,
                        task_id=scope.task_id) if everything
        else ui_path(request, "/ui/task", **scope_query(scope)),
    }  # fmt: skip
    return render(request, ui, "clear.html", context)


@router.post("/task/clear")
async def clear(request: Request, ui: Session) -> Response:
    """Delete every key of the task instance (``all_map_indices=true``: of the task)."""
    await check_form(request, ui)
    refuse_if_read_only(request)
    everything = flag(request.query_params, "all_map_indices")
    scope = task_scope(request, ui, write=True, all_map_indices=everything)
    await state(request).backend.aclear(scope, all_map_indices=everything)
    if everything:
        return redirect(request, "/ui/instances", dag_id=scope.dag_id, run_id=scope.run_id,
                        task_id=scope.task_id, done="cleared-all")  # fmt: skip
    return redirect(request, "/ui/task", **scope_query(scope), done="cleared")


@router.get("/asset/{change}")
async def asset_confirm(request: Request, ui: Admin, change: str) -> Response:
    """Ask before deactivating (or activating) an asset (admin tokens, as in the API)."""
    refuse_if_read_only(request)
    active = _change(change)
    scope = asset_scope(request, ui, write=True)
    return render(request, ui, "asset_change.html", {
        "scope": scope, "activate": active, "change": change, "query": scope_query(scope),
    })  # fmt: skip


@router.post("/asset/{change}")
async def asset_change(request: Request, ui: Admin, change: str) -> Response:
    """Deactivate or activate the asset."""
    await check_form(request, ui)
    refuse_if_read_only(request)
    active = _change(change)
    scope = asset_scope(request, ui, write=True)
    assert scope.name is not None
    store = state(request).store
    if active:
        await store.aactivate_assets(scope.name)
    else:
        await store.adeactivate_assets(scope.name)
    done = "activated" if active else "deactivated"
    return redirect(request, "/ui/asset", name=scope.name, done=done)


def _change(change: str) -> bool:
    if change == "activate":
        return True
    if change == "deactivate":
        return False
    from statestore.exceptions import InvalidValueError  # noqa: PLC0415

    raise InvalidValueError(f"an asset is activated or deactivated, not {change!r}")


def _expired(request: Request) -> tuple[list[ExpiredTaskState], int]:
    """The first :data:`DRY_RUN_SHOWN` expired keys, and how many expired in all."""
    store = state(request).store
    report = cleanup_task_states(store, dry_run=True)
    shown = list(itertools.islice(iter_expired_task_states(store), DRY_RUN_SHOWN))
    return shown, report.would_delete


@router.get("/cleanup")
async def cleanup(request: Request, ui: Admin) -> Response:
    """The cleanup dry run: which task-state keys have expired and would go."""
    ran = flag(request.query_params, "dry_run")
    rows: list[ExpiredTaskState] = []
    total = 0
    if ran:
        metastore(request)  # other backends have nothing to list
        rows, total = await run_in_threadpool(_expired, request)
    links = [
        (row, ui_path(request, "/ui/task/key", **scope_query(
            TaskScope(row.dag_id, row.run_id, row.task_id, row.map_index, row.map_key)),
            key=row.key))
        for row in rows
    ]  # fmt: skip
    return render(request, ui, "cleanup.html", {"ran": ran, "rows": links, "total": total,
                                                "shown": DRY_RUN_SHOWN})  # fmt: skip
