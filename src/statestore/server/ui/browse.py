"""Browsing: dags -> runs -> tasks -> task instances -> keys, and assets -> keys.

An admin token browses everything from ``/ui/``; a task token's home lists only what
its grant names (its task instance, or every map index of its task, and its inlet and
outlet assets), and every list above a task instance needs an admin token. Pages are
keyset pages of :mod:`statestore.metastore.browse` (``after=`` the last item shown).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from statestore import wire
from statestore.metastore import browse
from statestore.metastore import search as find
from statestore.scopes import AssetScope, TaskScope, check_key
from statestore.server.ui.access import asset_scope, metastore, scope_query, task_scope
from statestore.server.ui.render import render, ui_path
from statestore.server.ui.session import Admin, Session, UiSession

__all__ = ["PAGE_SIZE", "router"]

PAGE_SIZE = 50
router = APIRouter()

_DONE = {
    "deleted": "The key was deleted.",
    "saved": "The value was saved.",
    "cleared": "The task instance's state was cleared.",
    "cleared-all": "The state of every map index of the task was cleared.",
    "deactivated": "The asset was deactivated: no more writes; the next sweep deletes its state.",
    "activated": "The asset was activated again.",
}
"""Messages after an action (the redirect names a code, never free text)."""


def done_message(request: Request) -> str | None:
    return _DONE.get(request.query_params.get("done", ""))


def _text(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if value:
        check_key(value)  # a prefix or a cursor is at most a key's length, no NUL
    return value


def _listing(request: Request, ui: UiSession, **context: Any) -> Response:
    return render(request, ui, "listing.html", {"done": done_message(request), **context})


@router.get("/")
async def home(request: Request, ui: Session) -> Response:
    """An admin's home is the list of dags; a task token's, what its grant names."""
    if not ui.grant.admin:
        return _grant_home(request, ui)
    prefix, after = _text(request, "prefix"), _text(request, "after")
    page = await browse.afetch(
        metastore(request), browse.dags(prefix=prefix, after=after, limit=PAGE_SIZE)
    )
    rows = [(dag, ui_path(request, "/ui/runs", dag_id=dag)) for dag in page.items]
    return _listing(
        request, ui, heading="DAGs", crumbs=[], rows=rows, prefix=prefix, filter_label="DAG id",
        hidden={}, filter_path="/ui/", search=True,
        next_href=_next(request, "/ui/", page, prefix=prefix),
        empty="No task state yet." if not prefix else f"No DAG id starts with {prefix!r}.",
    )  # fmt: skip


def _next(request: Request, path: str, page: browse.Page[str], **params: str) -> str | None:
    if not page.more:
        return None
    return ui_path(request, path, **params, after=page.items[-1])


def _grant_home(request: Request, ui: UiSession) -> Response:
    grant = ui.grant
    task = grant.task
    links: list[tuple[str, str]] = []
    if task is not None:
        if grant.all_map_indices:
            links.append((f"every map index of {task.describe()}", ui_path(
                request, "/ui/instances", dag_id=task.dag_id, run_id=task.run_id,
                task_id=task.task_id)))  # fmt: skip
        else:
            links.append((task.describe(), ui_path(request, "/ui/task", **scope_query(task))))
    assets = [
        (name, ui_path(request, "/ui/asset", name=name), name in grant.write_assets)
        for name in sorted(grant.read_assets | grant.write_assets)
    ]
    return render(request, ui, "grant.html", {"links": links, "assets": assets,
                                              "done": done_message(request)})  # fmt: skip


@router.get("/runs")
async def runs(request: Request, ui: Admin) -> Response:
    """The runs of one dag."""
    dag = request.query_params.get("dag_id", "")
    prefix, after = _text(request, "prefix"), _text(request, "after")
    TaskScope(dag or "?", "?", "?")  # the id's own rules (InvalidScopeError)
    page = await browse.afetch(
        metastore(request), browse.runs(dag, prefix=prefix, after=after, limit=PAGE_SIZE)
    )
    rows = [(run, ui_path(request, "/ui/tasks", dag_id=dag, run_id=run)) for run in page.items]
    return _listing(
        request, ui, heading=f"Runs of {dag}", crumbs=[("DAGs", ui_path(request, "/ui/"))],
        rows=rows, prefix=prefix, filter_label="Run id", hidden={"dag_id": dag},
        filter_path="/ui/runs", next_href=_next(request, "/ui/runs", page, dag_id=dag,
                                                prefix=prefix),
        empty="No runs with task state.",
    )  # fmt: skip


@router.get("/tasks")
async def tasks(request: Request, ui: Admin) -> Response:
    """The tasks of one run."""
    params = request.query_params
    dag, run = params.get("dag_id", ""), params.get("run_id", "")
    TaskScope(dag, run, "?")
    prefix, after = _text(request, "prefix"), _text(request, "after")
    page = await browse.afetch(
        metastore(request), browse.tasks(dag, run, prefix=prefix, after=after, limit=PAGE_SIZE)
    )
    rows = [
        (task, ui_path(request, "/ui/instances", dag_id=dag, run_id=run, task_id=task))
        for task in page.items
    ]
    crumbs = [("DAGs", ui_path(request, "/ui/")), (dag, ui_path(request, "/ui/runs", dag_id=dag))]
    return _listing(
        request, ui, heading=f"Tasks of {dag} / {run}", crumbs=crumbs, rows=rows, prefix=prefix,
        filter_label="Task id", hidden={"dag_id": dag, "run_id": run}, filter_path="/ui/tasks",
        next_href=_next(request, "/ui/tasks", page, dag_id=dag, run_id=run, prefix=prefix),
        empty="No tasks with task state.",
    )  # fmt: skip


def _instance_label(instance: browse.Instance) -> str:
    if instance.map_key is not None:
        return f"map key {instance.map_key} (index {instance.map_index})"
    return "not mapped (-1)" if instance.map_index == -1 else f"map index {instance.map_index}"


@router.get("/instances")
async def instances(request: Request, ui: Session) -> Response:
    """The task instances (map indices, map keys) of one task; needs every map index."""
    params = request.query_params
    dag, run, task = params.get("dag_id", ""), params.get("run_id", ""), params.get("task_id", "")
    whole = TaskScope(dag, run, task)
    if not ui.grant.may_touch_task(whole, all_map_indices=True):
        task_scope(request, ui, all_map_indices=True)  # raises, naming what was asked
    after = None
    if "after_index" in params:
        cursor = {"dag_id": dag, "run_id": run, "task_id": task,
                  "map_index": params["after_index"]}  # fmt: skip
        after_scope = wire.scope_from_params(cursor, task=True)  # the API's own parsing
        assert isinstance(after_scope, TaskScope)
        after = browse.Instance(after_scope.map_index, params.get("after_key"))
        if after.map_key is not None:
            TaskScope(dag, run, task, map_key=after.map_key)  # the id's own rules
    page = await browse.afetch(
        metastore(request), browse.instances(dag, run, task, after=after, limit=PAGE_SIZE)
    )
    rows = [
        (_instance_label(i), ui_path(request, "/ui/task", **scope_query(i.scope(dag, run, task))))
        for i in page.items
    ]
    next_href = None
    if page.more:
        last = page.items[-1]
        next_href = ui_path(request, "/ui/instances", dag_id=dag, run_id=run, task_id=task,
                            after_index=last.map_index, after_key=last.map_key)  # fmt: skip
    crumbs = _task_crumbs(request, ui, whole)
    return render(request, ui, "instances.html", {
        "heading": f"Instances of {dag} / {run} / {task}", "crumbs": crumbs, "rows": rows,
        "next_href": next_href, "task": whole, "query": scope_query(whole),
        "done": done_message(request),
    })  # fmt: skip


def _task_crumbs(request: Request, ui: UiSession, scope: TaskScope) -> list[tuple[str, str]]:
    if not ui.grant.admin:
        return [("Home", ui_path(request, "/ui/"))]
    return [
        ("DAGs", ui_path(request, "/ui/")),
        (scope.dag_id, ui_path(request, "/ui/runs", dag_id=scope.dag_id)),
        (scope.run_id, ui_path(request, "/ui/tasks", dag_id=scope.dag_id, run_id=scope.run_id)),
        (scope.task_id, ui_path(request, "/ui/instances", dag_id=scope.dag_id,
                                run_id=scope.run_id, task_id=scope.task_id)),
    ]  # fmt: skip


@router.get("/task")
async def task_instance(request: Request, ui: Session) -> Response:
    """The keys of one task instance, with their metadata."""
    scope = task_scope(request, ui)
    prefix, after = _text(request, "prefix"), _text(request, "after")
    page = await browse.afetch(
        metastore(request), browse.task_keys(scope, prefix=prefix, after=after, limit=PAGE_SIZE)
    )
    return _keys_page(request, ui, scope, page, prefix, scope.describe(), "/ui/task",
                      _task_crumbs(request, ui, scope), writable=True)  # fmt: skip


def _keys_page(
    request: Request, ui: UiSession, scope: TaskScope | AssetScope,
    page: browse.Page[browse.KeyRow], prefix: str, heading: str, path: str,
    crumbs: list[tuple[str, str]], *, writable: bool, **context: Any,
) -> Response:  # fmt: skip
    query = scope_query(scope)
    key_path = path + "/key"
    rows = [(row, ui_path(request, key_path, **query, key=row.key)) for row in page.items]
    next_href = None
    if page.more:
        next_href = ui_path(request, path, **query, prefix=prefix or None, after=page.items[-1].key)
    return render(request, ui, "keys.html", {
        "heading": heading, "crumbs": crumbs, "rows": rows, "next_href": next_href,
        "prefix": prefix, "query": query, "filter_path": path, "scope": scope,
        "writable": writable, "done": done_message(request),
        "is_task": isinstance(scope, TaskScope), **context,
    })  # fmt: skip


@router.get("/assets")
async def assets(request: Request, ui: Session) -> Response:
    """Registered assets by name (an admin's; a task token sees its own on its home)."""
    if not ui.grant.admin:
        return _grant_home(request, ui)
    prefix, after = _text(request, "prefix"), _text(request, "after")
    page = await browse.afetch(
        metastore(request), browse.assets(prefix=prefix, after=after, limit=PAGE_SIZE)
    )
    next_href = None
    if page.more:
        next_href = ui_path(request, "/ui/assets", prefix=prefix or None, after=page.items[-1].name)
    rows = [(a, ui_path(request, "/ui/asset", name=a.name)) for a in page.items]
    return render(request, ui, "assets.html", {
        "rows": rows, "prefix": prefix, "next_href": next_href, "done": done_message(request),
    })  # fmt: skip


@router.get("/asset")
async def asset_page(request: Request, ui: Session) -> Response:
    """The keys of one asset."""
    scope = asset_scope(request, ui)
    assert scope.name is not None
    backend = metastore(request)
    found = await browse.afetch(backend, browse.asset_by_name(scope.name))
    prefix, after = _text(request, "prefix"), _text(request, "after")
    page: browse.Page[browse.KeyRow] = browse.Page((), False)
    if found is not None:
        page = await browse.afetch(
            backend, browse.asset_keys(found.asset_id, prefix=prefix, after=after, limit=PAGE_SIZE)
        )
    crumbs = [("Assets", ui_path(request, "/ui/assets"))] if ui.grant.admin else [
        ("Home", ui_path(request, "/ui/"))]  # fmt: skip
    return _keys_page(request, ui, scope, page, prefix, f"Asset {scope.name}", "/ui/asset",
                      crumbs, writable=ui.grant.may_write_asset(scope), asset=found)  # fmt: skip


_SEARCHES = {"run": "Run id", "task": "Task id", "key": "Key"}


@router.get("/search")
async def search(request: Request, ui: Admin) -> Response:
    """Find runs, tasks or keys by the start of their id, in every dag (and asset), then
    where an exact one is: ``what=run|task|key`` and ``q=`` (a prefix), or ``task=`` /
    ``key=`` (exact) for the places that have it."""
    params = request.query_params
    what = params.get("what", "run")
    if what not in _SEARCHES:
        what = "run"
    query = _text(request, "run") or _text(request, "q")  # run= is the DAG list's form
    backend = metastore(request)
    context: dict[str, Any] = {"what": what, "q": query, "searches": _SEARCHES, "rows": [],
                               "rows_assets": [], "next_href": None, "exact": None}  # fmt: skip
    if "task" in params:
        await _task_places(request, context, params["task"])
    elif "key" in params:
        await _key_places(request, context, _text(request, "key"))
    elif query and what == "run":
        after = None
        if "after_dag" in params and "after_run" in params:
            after = (params["after_dag"], params["after_run"])
            TaskScope(*after, "?")  # the ids' own rules (no NUL, lengths)
        page = await browse.afetch(backend, browse.run_search(query, after=after, limit=PAGE_SIZE))
        context["rows"] = [(f"{d} / {r}", ui_path(request, "/ui/tasks", dag_id=d, run_id=r))
                           for d, r in page.items]  # fmt: skip
        if page.more:
            d, r = page.items[-1]
            context["next_href"] = ui_path(request, "/ui/search", what="run", q=query,
                                           after_dag=d, after_run=r)  # fmt: skip
    elif query:
        cursor = _text(request, "after")
        names: browse.Page[str]
        if what == "task":
            names = await browse.afetch(backend, find.task_ids(prefix=query, after=cursor))
            context["rows"] = [(t, ui_path(request, "/ui/search", task=t)) for t in names.items]
        else:
            names = await browse.afetch(backend, find.key_names(prefix=query, after=cursor))
            assets = await browse.afetch(backend, find.key_names(asset_state=True, prefix=query))
            context["rows"] = [(k, ui_path(request, "/ui/search", key=k)) for k in names.items]
            context["rows_assets"] = [(k, ui_path(request, "/ui/search", key=k))
                                      for k in assets.items]  # fmt: skip
        if names.more:
            context["next_href"] = ui_path(request, "/ui/search", what=what, q=query,
                                           after=names.items[-1])  # fmt: skip
    return render(request, ui, "search.html", context)


async def _task_places(request: Request, context: dict[str, Any], task: str) -> None:
    TaskScope("?", "?", task)  # the id's own rules
    params = request.query_params
    after = None
    if "after_dag" in params and "after_run" in params:
        after = (params["after_dag"], params["after_run"])
        TaskScope(*after, task)
    page = await browse.afetch(metastore(request), find.task_runs(task, after=after))
    context.update(exact=f"task {task}", what="task", q=task)
    context["rows"] = [
        (f"{d} / {r} / {task}",
         ui_path(request, "/ui/instances", dag_id=d, run_id=r, task_id=task))
        for d, r in page.items
    ]  # fmt: skip
    if page.more:
        d, r = page.items[-1]
        context["next_href"] = ui_path(request, "/ui/search", task=task, after_dag=d,
                                       after_run=r)  # fmt: skip


async def _key_places(request: Request, context: dict[str, Any], key: str) -> None:
    check_key(key)
    params = request.query_params
    backend = metastore(request)
    after = None
    if "after_row" in params:
        scope = wire.scope_from_params(params, task=True)  # the cursor's ids, checked
        assert isinstance(scope, TaskScope)
        try:
            row_id = bytes.fromhex(params["after_row"])
        except ValueError:
            row_id = b""
        after = (scope.dag_id, scope.run_id, scope.task_id, scope.map_index, row_id)
    page = await browse.afetch(backend, find.key_holders(key, after=after))
    assets = await browse.afetch(backend, find.asset_holders(key))
    context.update(exact=f"key {key}", what="key", q=key)
    context["rows"] = [
        (h.scope.describe(), ui_path(request, "/ui/task/key", **scope_query(h.scope), key=key))
        for h in page.items
    ]
    context["rows_assets"] = [
        (f"asset {name}", ui_path(request, "/ui/asset/key", name=name, key=key))
        for name in assets.items
    ]
    if page.more:
        last = page.items[-1].scope
        context["next_href"] = ui_path(
            request, "/ui/search", key=key, dag_id=last.dag_id, run_id=last.run_id,
            task_id=last.task_id, map_index=last.map_index, after_row=page.items[-1].row_id.hex(),
        )  # fmt: skip
