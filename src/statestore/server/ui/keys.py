"""One key: its page, the editor (a compare-and-set), and delete (after a confirm page).

``/ui/task/key?<scope>&key=k`` and ``/ui/asset/key?name=a&key=k`` show the value and
its metadata, expired or not. The editor's form carries the version it was opened at;
saving is ``aset_item(..., if_version=that)`` on the server's backend -- the API's own
write path, the library's own value rules -- so a change made meanwhile by anyone
(a worker, the API, another browser) is never overwritten: the save answers 409 with
a conflict page that shows the newer value beside the text that was not saved.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from statestore import wire
from statestore.exceptions import InvalidKeyError, InvalidValueError, VersionConflictError
from statestore.metastore import browse
from statestore.scopes import AssetScope, TaskScope, check_key
from statestore.server.ui.access import (
    asset_scope,
    metastore,
    parse_value,
    scope_query,
    show_value,
    state,
    task_scope,
)
from statestore.server.ui.render import redirect, render
from statestore.server.ui.session import Session, UiSession, check_form, refuse_if_read_only

__all__ = ["router"]

router = APIRouter()


def _key(request: Request) -> str:
    key = request.query_params.get("key")
    if key is None:
        raise InvalidKeyError("the query needs key=")
    check_key(key)
    return key


def _scope(request: Request, ui: UiSession, kind: str, *, write: bool) -> TaskScope | AssetScope:
    if kind == "task":
        return task_scope(request, ui, write=write)
    if kind == "asset":
        return asset_scope(request, ui, write=write)
    raise InvalidValueError(f"no such kind of state: {kind!r}")


async def _detail(request: Request, scope: TaskScope | AssetScope, key: str) -> Any:
    backend = metastore(request)
    if isinstance(scope, TaskScope):
        return await browse.afetch(backend, browse.task_key(scope, key))
    assert scope.name is not None
    found = await browse.afetch(backend, browse.asset_by_name(scope.name))
    if found is None:
        return None
    return await browse.afetch(backend, browse.asset_key(found.asset_id, key))


def _container(request: Request, scope: TaskScope | AssetScope) -> tuple[str, str]:
    """The page listing ``scope``'s keys: its label and path."""
    if isinstance(scope, TaskScope):
        return scope.describe(), "/ui/task"
    return f"asset {scope.name}", "/ui/asset"


def _writable(ui: UiSession, scope: TaskScope | AssetScope, read_only: bool) -> bool:
    if read_only:
        return False
    return isinstance(scope, TaskScope) or ui.grant.may_write_asset(scope)


def _context(
    request: Request, ui: UiSession, kind: str, scope: TaskScope | AssetScope, key: str,
    detail: Any,
) -> dict[str, Any]:  # fmt: skip
    label, path = _container(request, scope)
    return {
        "kind": kind, "scope": scope, "key": key, "detail": detail,
        "shown": show_value(detail.value) if detail is not None else None,
        "query": {**scope_query(scope), "key": key}, "scope_query": scope_query(scope),
        "container": (label, path),
        "writable": _writable(ui, scope, state(request).read_only),
    }  # fmt: skip


@router.get("/{kind}/key")
async def key_page(request: Request, ui: Session, kind: str) -> Response:
    """The value (pretty, folded when large), version, expiry, writer and time."""
    scope = _scope(request, ui, kind, write=False)
    key = _key(request)
    detail = await _detail(request, scope, key)
    context = _context(request, ui, kind, scope, key, detail)
    return render(request, ui, "key.html", context, 200 if detail is not None else 404)


@router.get("/{kind}/key/edit")
async def edit_form(request: Request, ui: Session, kind: str) -> Response:
    """The editor, holding the version it starts from."""
    refuse_if_read_only(request)
    scope = _scope(request, ui, kind, write=True)
    key = _key(request)
    detail = await _detail(request, scope, key)
    context = _context(request, ui, kind, scope, key, detail)
    if detail is None:
        return render(request, ui, "key.html", context, 404)
    shown = context["shown"]
    if shown.ref is not None:
        raise InvalidValueError(
            "this value is stored in object storage: change it from a worker, which writes "
            "the object and its reference together"
        )
    context.update(text=shown.text, version=detail.version,
                   expires=wire_time(detail.expires_at), error=None)  # fmt: skip
    return render(request, ui, "edit.html", context)


def wire_time(moment: Any) -> str:
    return "" if moment is None else moment.isoformat()


@router.post("/{kind}/key/edit")
async def save(request: Request, ui: Session, kind: str) -> Response:
    """Write the edited value if the key is still at the version the editor started from."""
    form = await check_form(request, ui)
    refuse_if_read_only(request)
    scope = _scope(request, ui, kind, write=True)
    key = _key(request)
    text = form.get("value", "")
    expires = form.get("expires_at", "").strip()
    context = _context(request, ui, kind, scope, key, None)
    try:
        version = int(form.get("version", ""), 10)
    except ValueError:
        raise InvalidValueError("the form has no version: open the editor again") from None
    context.update(text=text, version=version, expires=expires)
    server = state(request)
    try:
        value = parse_value(text, server.max_value_bytes)
        expires_at = wire.expires_at_from_params({"expires_at": expires} if expires else {})
    except InvalidValueError as exc:  # ValueTooLargeError is one; shown in the editor
        context["error"] = str(exc)
        return render(request, ui, "edit.html", context, 422)
    writer = ui.grant.subject  # a UI write is recorded as the token's subject
    try:
        await server.backend.aset_item(
            scope, key, value, expires_at=expires_at, if_version=version, updated_by=writer
        )
    except VersionConflictError as exc:
        return await _conflict(request, ui, kind, scope, key, text, expires, exc)
    return redirect(request, f"/ui/{kind}/key", **scope_query(scope), key=key, done="saved")


async def _conflict(
    request: Request, ui: UiSession, kind: str, scope: TaskScope | AssetScope, key: str,
    text: str, expires: str, exc: VersionConflictError,
) -> Response:  # fmt: skip
    detail = await _detail(request, scope, key)
    context = _context(request, ui, kind, scope, key, detail)
    context.update(mine=text, mine_expires=expires, message=str(exc),
                   current_version=exc.current_version)  # fmt: skip
    if detail is not None:
        context.update(text=context["shown"].text, version=detail.version,
                       expires=wire_time(detail.expires_at))  # fmt: skip
    return render(request, ui, "conflict.html", context, 409)


@router.get("/{kind}/key/delete")
async def delete_confirm(request: Request, ui: Session, kind: str) -> Response:
    """Ask before deleting (works without JavaScript: a page, not a dialog)."""
    refuse_if_read_only(request)
    scope = _scope(request, ui, kind, write=True)
    key = _key(request)
    detail = await _detail(request, scope, key)
    context = _context(request, ui, kind, scope, key, detail)
    return render(request, ui, "delete.html", context, 200 if detail is not None else 404)


@router.post("/{kind}/key/delete")
async def delete(request: Request, ui: Session, kind: str) -> Response:
    """Delete the key (an absent key is fine, as in the API)."""
    await check_form(request, ui)
    refuse_if_read_only(request)
    scope = _scope(request, ui, kind, write=True)
    key = _key(request)
    await state(request).backend.adelete(scope, key)
    _, path = _container(request, scope)
    return redirect(request, path, **scope_query(scope), done="deleted")
