"""``task-state`` and ``asset-state``: inspect and administer stored state."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from statestore.cli.common import CliUsageError, console, echo_json, open_store, state_of
from statestore.exceptions import UnsupportedOperationError
from statestore.metastore import MetastoreStateBackend
from statestore.metastore.errors import translate_errors
from statestore.metastore.maintenance import StoredKey, list_asset_state, list_task_state
from statestore.retention import NEVER_EXPIRE, utcnow
from statestore.scopes import AssetScope, TaskScope
from statestore.store import StateStore

__all__ = ["asset_app", "task_app"]

task_app = typer.Typer(help="Inspect and change task state.", no_args_is_help=True)
asset_app = typer.Typer(help="Inspect and change asset state.", no_args_is_help=True)

Dag = Annotated[str, typer.Option("--dag", help="Dag id.")]
Run = Annotated[str, typer.Option("--run", help="Run id.")]
Task = Annotated[str, typer.Option("--task", help="Task id.")]
MapIndex = Annotated[int, typer.Option("--map-index", help="Map index (-1: not mapped).")]
MapKey = Annotated[
    str | None,
    typer.Option("--map-key", help="Stable map key of a mapped instance (instead of its index)."),
]
Asset = Annotated[str | None, typer.Option("--asset", help="Asset name.")]
Key = Annotated[str, typer.Argument(help="The key.")]
Value = Annotated[str, typer.Argument(help="The value, as JSON (e.g. '42', '\"text\"').")]


def _task_scope(dag: str, run: str, task: str, map_index: int, map_key: str | None) -> TaskScope:
    empty = [name for name, v in (("--dag", dag), ("--run", run), ("--task", task)) if not v]
    if empty:  # click has made sure all three were given; an empty one is still a mistake
        raise CliUsageError(f"{', '.join(empty)} must not be empty")
    return TaskScope(dag, run, task, map_index, map_key)


def _asset_scope(asset: str | None) -> AssetScope:
    if not asset:
        raise CliUsageError("missing --asset NAME")
    return AssetScope(name=asset)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliUsageError(
            f"the value is not valid JSON ({exc.msg} at position {exc.pos}); "
            "quote strings as JSON, e.g. '\"text\"'"
        ) from None


def _metastore(store: StateStore) -> MetastoreStateBackend:
    backend = store.backend
    if not isinstance(backend, MetastoreStateBackend):
        raise UnsupportedOperationError(
            f"listing needs the metastore backend; this store uses {type(backend).__name__}"
        )
    return backend


def _show_keys(ctx: typer.Context, rows: list[StoredKey], *, with_index: bool) -> None:
    if state_of(ctx).json:
        echo_json(
            [
                {
                    **({"map_index": r.map_index, "map_key": r.map_key} if with_index else {}),
                    "key": r.key,
                    "value": json.loads(r.value),
                    "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                    "updated_at": r.updated_at.isoformat(),
                    "updated_by": r.updated_by,
                    "version": r.version,
                }
                for r in rows
            ]
        )
        return
    columns = ("key", "value", "version", "updated at", "updated by")
    # A map key column only when some instance has one (most tasks are not mapped by key).
    keyed = with_index and any(r.map_key is not None for r in rows)
    instance = ("map index", "map key") if keyed else ("map index",)
    names = (*instance, *columns[:2], "expires at", *columns[2:]) if with_index else columns
    table = Table()
    for name in names:  # fold, not "…": a key or map key cut short names nothing
        table.add_column(name, overflow="fold")
    for r in rows:
        value = r.value if len(r.value) <= 60 else r.value[:57] + "..."
        updated = r.updated_at.isoformat(timespec="seconds")
        last = (str(r.version), updated, escape(r.updated_by or "-"))
        if with_index:
            expires = r.expires_at.isoformat(timespec="seconds") if r.expires_at else "never"
            where = (str(r.map_index), escape(r.map_key or "-"))[: len(instance)]
            table.add_row(*where, escape(r.key), escape(value), expires, *last)
        else:
            table.add_row(escape(r.key), escape(value), *last)
    console.print(table if rows else "(no keys)")


def _show_value(ctx: typer.Context, key: str, value: Any) -> None:
    if state_of(ctx).json:
        echo_json({"key": key, "found": value is not None, "value": value})
    elif value is None:
        raise typer.Exit(1)
    else:
        console.print(escape(json.dumps(value, ensure_ascii=False)))


@task_app.command("list")
def task_list(
    ctx: typer.Context,
    dag: Dag,
    run: Run,
    task: Task,
    map_index: Annotated[
        int | None, typer.Option("--map-index", help="Only this map index (default: all).")
    ] = None,
    map_key: Annotated[
        str | None, typer.Option("--map-key", help="Only this map key (default: all).")
    ] = None,
) -> None:
    """List the keys of a task (every mapped instance unless --map-index/--map-key)."""
    scope = _task_scope(dag, run, task, -1, map_key)  # validates the map key too
    backend = _metastore(open_store(ctx))
    with translate_errors(backend.url), backend.engine.connect() as conn:
        backend.ensure_schema()
        ids = (scope.dag_id, scope.run_id, scope.task_id)
        rows = list_task_state(conn, ids, map_index, utcnow(), map_key)
    _show_keys(ctx, rows, with_index=True)


@task_app.command("get")
def task_get(
    ctx: typer.Context,
    key: Key,
    dag: Dag,
    run: Run,
    task: Task,
    map_index: MapIndex = -1,
    map_key: MapKey = None,
) -> None:
    """Print the value of KEY as JSON (exit 1 if absent)."""
    scope = _task_scope(dag, run, task, map_index, map_key)
    _show_value(ctx, key, open_store(ctx).task_state(scope).get(key))


@task_app.command("set")
def task_set(
    ctx: typer.Context,
    key: Key,
    value: Value,
    dag: Dag,
    run: Run,
    task: Task,
    map_index: MapIndex = -1,
    map_key: MapKey = None,
    retention_hours: Annotated[
        float | None, typer.Option("--retention-hours", min=0.0, help="Expire after this.")
    ] = None,
    never_expire: Annotated[
        bool, typer.Option("--never-expire", help="Keep until deleted (NEVER_EXPIRE).")
    ] = False,
) -> None:
    """Write KEY = VALUE (JSON). Retention: default from configuration."""
    scope = _task_scope(dag, run, task, map_index, map_key)
    if never_expire and retention_hours is not None:
        raise CliUsageError("give --retention-hours or --never-expire, not both")
    retention = NEVER_EXPIRE if never_expire else None
    if retention_hours is not None:
        retention = timedelta(hours=retention_hours)
    open_store(ctx).task_state(scope).set(key, _parse_json(value), retention=retention)
    if state_of(ctx).json:
        echo_json({"key": key, "written": True})


@task_app.command("delete")
def task_delete(
    ctx: typer.Context,
    key: Key,
    dag: Dag,
    run: Run,
    task: Task,
    map_index: MapIndex = -1,
    map_key: MapKey = None,
) -> None:
    """Delete KEY (no error if absent)."""
    open_store(ctx).task_state(_task_scope(dag, run, task, map_index, map_key)).delete(key)
    if state_of(ctx).json:
        echo_json({"key": key, "deleted": True})


@task_app.command("clear")
def task_clear(
    ctx: typer.Context,
    dag: Dag,
    run: Run,
    task: Task,
    map_index: MapIndex = -1,
    map_key: MapKey = None,
    all_map_indices: Annotated[
        bool, typer.Option("--all-map-indices", help="Clear every map index of the task.")
    ] = False,
) -> None:
    """Delete every key of the task instance (or of every map index)."""
    scope = _task_scope(dag, run, task, map_index, map_key)
    open_store(ctx).task_state(scope).clear(all_map_indices=all_map_indices)
    if state_of(ctx).json:
        echo_json({"cleared": True, "all_map_indices": all_map_indices})


@asset_app.command("list")
def asset_list(ctx: typer.Context, asset: Asset = None) -> None:
    """List the keys of an asset."""
    scope = _asset_scope(asset)
    backend = _metastore(open_store(ctx))
    with translate_errors(backend.url), backend.engine.connect() as conn:
        backend.ensure_schema()
        rows = list_asset_state(conn, scope, utcnow())
    _show_keys(ctx, rows, with_index=False)


@asset_app.command("get")
def asset_get(ctx: typer.Context, key: Key, asset: Asset = None) -> None:
    """Print the value of KEY as JSON (exit 1 if absent)."""
    _show_value(ctx, key, open_store(ctx).asset_state(_asset_scope(asset)).get(key))


@asset_app.command("set")
def asset_set(ctx: typer.Context, key: Key, value: Value, asset: Asset = None) -> None:
    """Write KEY = VALUE (JSON)."""
    open_store(ctx).asset_state(_asset_scope(asset)).set(key, _parse_json(value))
    if state_of(ctx).json:
        echo_json({"key": key, "written": True})


@asset_app.command("delete")
def asset_delete(ctx: typer.Context, key: Key, asset: Asset = None) -> None:
    """Delete KEY (no error if absent)."""
    open_store(ctx).asset_state(_asset_scope(asset)).delete(key)
    if state_of(ctx).json:
        echo_json({"key": key, "deleted": True})


@asset_app.command("clear")
def asset_clear(ctx: typer.Context, asset: Asset = None) -> None:
    """Delete every key of the asset."""
    open_store(ctx).asset_state(_asset_scope(asset)).clear()
    if state_of(ctx).json:
        echo_json({"cleared": True})
