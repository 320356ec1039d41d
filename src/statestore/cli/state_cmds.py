"""``task-state`` and ``asset-state``: inspect and administer stored state.

Conventions every sub-command keeps:

- ``get`` of an absent key exits 1 with or without ``--json`` (with ``--json`` the
  document ``{"found": false, ...}`` is still printed), so ``if statestore ... get``
  means the same in both modes.
- ``set``, ``delete`` and ``clear`` say what they did (``--json``: as a document).
- Errors speak CLI: options and commands, never Python calls.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from statestore.backends import state_server
from statestore.cli.common import (
    CliUsageError,
    confirm,
    console,
    echo_json,
    escape,
    open_store,
    plural,
    short_time,
    state_of,
)
from statestore.cli.tables import show_keys
from statestore.exceptions import UnsupportedOperationError
from statestore.retention import NEVER_EXPIRE, utcnow
from statestore.scopes import AssetScope, TaskScope
from statestore.store import StateStore

if TYPE_CHECKING:
    from statestore.metastore import MetastoreStateBackend
    from statestore.metastore.maintenance import StoredKey

__all__ = ["asset_app", "task_app"]

task_app = typer.Typer(help="Inspect and change task state.", no_args_is_help=True)
asset_app = typer.Typer(help="Inspect and change asset state.", no_args_is_help=True)

# Shown in the usage line, so the required options are visible before --help is read.
TASK_USAGE = "--dag DAG --run RUN --task TASK [OPTIONS]"
ASSET_USAGE = "--asset NAME [OPTIONS]"

Dag = Annotated[str, typer.Option("--dag", metavar="DAG", help="Dag id.")]
Run = Annotated[str, typer.Option("--run", metavar="RUN", help="Run id.")]
Task = Annotated[str, typer.Option("--task", metavar="TASK", help="Task id.")]
MapIndex = Annotated[
    int,
    typer.Option(
        "--map-index",
        metavar="N",
        show_default=False,
        help="Map index of a mapped task (default: not mapped).",
    ),
]
MapKey = Annotated[
    str | None,
    typer.Option(
        "--map-key",
        metavar="KEY",
        help="Stable map key of a mapped instance (instead of its index).",
    ),
]
Asset = Annotated[str | None, typer.Option("--asset", metavar="NAME", help="Asset name.")]
Key = Annotated[str, typer.Argument(metavar="KEY", help="The key.")]
Value = Annotated[
    str, typer.Argument(metavar="VALUE", help="The value, as JSON (e.g. '42', '\"text\"').")
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _task_scope(dag: str, run: str, task: str, map_index: int, map_key: str | None) -> TaskScope:
    empty = [name for name, v in (("--dag", dag), ("--run", run), ("--task", task)) if not v]
    if empty:  # click has made sure all three were given; an empty one is still a mistake
        raise CliUsageError(f"{', '.join(empty)} must not be empty")
    return TaskScope(dag, run, task, map_index, map_key)


def _asset_scope(asset: str | None) -> AssetScope:
    if not asset:
        raise CliUsageError("missing --asset NAME")
    return AssetScope(name=asset)


def _where(scope: TaskScope) -> str:
    """``etl / r1 / load`` (+ the map index or key): how the CLI names an instance."""
    ids = f"{scope.dag_id} / {scope.run_id} / {scope.task_id}"
    if scope.map_key is not None:
        return f"{ids} (map key {scope.map_key})"
    return ids if scope.map_index == -1 else f"{ids} (map index {scope.map_index})"


def _parse_json(text: str, remove_command: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliUsageError(
            f"the value is not valid JSON ({exc.msg} at position {exc.pos}); "
            "quote strings as JSON, e.g. '\"text\"'"
        ) from None
    if value is None:  # the library's message would say delete(): name the command
        raise CliUsageError(
            f"null cannot be stored as a value; to remove a key run `{remove_command}`"
        )
    return value


def _metastore(store: StateStore) -> MetastoreStateBackend:
    from statestore.metastore import MetastoreStateBackend  # noqa: PLC0415 - SQLAlchemy on use

    backend = store.backend
    if not isinstance(backend, MetastoreStateBackend):
        raise UnsupportedOperationError(
            f"listing needs the metastore backend; this store uses {type(backend).__name__}"
        )
    return backend


def _through_server(store: StateStore, scope: TaskScope | AssetScope) -> list[StoredKey] | None:
    """The keys of one scope with their metadata, through a state server (pages of
    keys, then their items); ``None`` when the store is not a server's."""
    from statestore.metastore.maintenance import StoredKey  # noqa: PLC0415

    backend = state_server(store.backend)
    if backend is None:
        return None
    rows: list[StoredKey] = []
    after = ""
    while page := backend.list_items(scope, after=after, limit=1000, values=False):
        keys = [key for key, _ in page]
        items = backend.get_items(scope, keys)
        map_index = scope.map_index if isinstance(scope, TaskScope) else None
        map_key = scope.map_key if isinstance(scope, TaskScope) else None
        rows += [StoredKey(map_index, key, item.value, item.expires_at, item.updated_at,
                           item.version, item.updated_by, map_key)
                 for key in keys if (item := items.get(key)) is not None]  # fmt: skip
        after = keys[-1]
    return rows


def _show_value(ctx: typer.Context, key: str, value: Any) -> None:
    if state_of(ctx).json:
        echo_json({"key": key, "found": value is not None, "value": value})
    elif value is not None:
        console.print(escape(json.dumps(value, ensure_ascii=False)), soft_wrap=True)
    if value is None:
        raise typer.Exit(1)


def _done(ctx: typer.Context, payload: dict[str, Any], text: str) -> None:
    if state_of(ctx).json:
        echo_json(payload)
    else:
        console.print(escape(text))


def _count(keys: Any) -> int | None:
    """How many keys an accessor holds, or None where the backend cannot list."""
    try:
        return sum(1 for _ in keys())
    except UnsupportedOperationError:
        return None


@task_app.command("list", options_metavar="--dag DAG [--run RUN [--task TASK]] [OPTIONS]")
def task_list(
    ctx: typer.Context,
    dag: Dag,
    run: Annotated[
        str | None, typer.Option("--run", metavar="RUN", help="Run id (default: every run).")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", metavar="TASK", help="Task id (default: every task; needs --run)."),
    ] = None,
    map_index: Annotated[
        int | None,
        typer.Option("--map-index", metavar="N", help="Only this map index (needs --task)."),
    ] = None,
    map_key: Annotated[
        str | None,
        typer.Option("--map-key", metavar="KEY", help="Only this map key (needs --task)."),
    ] = None,
) -> None:
    """List task-state keys of a task, a whole run, or a whole dag.

    Through a state server (admin token) the server reads them, the same way.
    """
    from statestore.metastore.errors import translate_errors  # noqa: PLC0415 - SQLAlchemy on use
    from statestore.metastore.maintenance import list_task_keys  # noqa: PLC0415 - SQLAlchemy on use

    if task is not None and run is None:
        raise CliUsageError("--task needs --run (task ids repeat in every run)")
    if task is None and (map_index is not None or map_key is not None):
        raise CliUsageError("--map-index and --map-key need --task")
    store = open_store(ctx, read_only=True)
    now = utcnow()
    if task is not None and run is not None:
        title = _where(_task_scope(dag, run, task, -1, map_key))  # validates the ids too
    else:
        TaskScope(dag, run or "-", "-")  # the same id rules as everywhere else
        title = dag if run is None else f"{dag} / {run}"
    server = state_server(store.backend)
    rows: list[StoredKey]
    if server is not None:
        rows = server.list_task_keys(dag, run, task, map_index=map_index, map_key=map_key)
    else:
        backend = _metastore(store)
        with translate_errors(backend.url), backend.engine.connect() as conn:
            backend.ensure_schema()
            rows = list_task_keys(
                conn, dag, run, task, map_index=map_index, map_key=map_key, now=now
            )
    show_keys(rows, as_json=state_of(ctx).json, task_level=True, title=title, now=now)


@task_app.command("get", options_metavar=TASK_USAGE)
def task_get(
    ctx: typer.Context,
    key: Key,
    dag: Dag,
    run: Run,
    task: Task,
    map_index: MapIndex = -1,
    map_key: MapKey = None,
) -> None:
    """Print the value of KEY as JSON; exit 1 if absent (with --json too)."""
    scope = _task_scope(dag, run, task, map_index, map_key)
    _show_value(ctx, key, open_store(ctx, read_only=True).task_state(scope).get(key))


@task_app.command("set", options_metavar=TASK_USAGE)
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
        float | None,
        typer.Option("--retention-hours", metavar="HOURS", help="Expire after this many hours."),
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
        if not retention_hours > 0:  # also NaN
            raise CliUsageError(
                f"--retention-hours must be more than 0, not {retention_hours:g}; "
                "use --never-expire to keep the key until it is deleted"
            )
        retention = timedelta(hours=retention_hours)
    parsed = _parse_json(
        value, f"statestore task-state delete {key} --dag ... --run ... --task ..."
    )
    state = open_store(ctx).task_state(scope)
    state.set(key, parsed, retention=retention)
    try:  # read back what was stored: the expiry shown is the one the row has
        item = state.get_item(key)
    except UnsupportedOperationError:  # a backend without metadata: say less
        _done(ctx, {"key": key, "written": True}, f"Set {key} on {_where(scope)}.")
        return
    expires_at = item.expires_at if item is not None else None
    if item is None:  # its retention ran out before the read-back
        when = "already expired"
    elif expires_at is None:
        when = "never expires"
    else:
        when = f"expires {short_time(expires_at, utcnow())}"
    _done(
        ctx,
        {"key": key, "written": True, "expires_at": expires_at.isoformat() if expires_at else None},
        f"Set {key} on {_where(scope)} ({when}).",
    )


@task_app.command("delete", options_metavar=TASK_USAGE)
def task_delete(
    ctx: typer.Context,
    key: Key,
    dag: Dag,
    run: Run,
    task: Task,
    map_index: MapIndex = -1,
    map_key: MapKey = None,
) -> None:
    """Delete KEY (exit 0 if it was absent too; the message says which)."""
    scope = _task_scope(dag, run, task, map_index, map_key)
    state = open_store(ctx).task_state(scope)
    existed = state.get(key) is not None
    state.delete(key)
    text = f"Deleted {key} from {_where(scope)}." if existed else (
        f"{key} was not set on {_where(scope)}; nothing deleted."
    )  # fmt: skip
    _done(ctx, {"key": key, "deleted": existed}, text)


@task_app.command("clear", options_metavar=TASK_USAGE)
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
    yes: Yes = False,
) -> None:
    """Delete every key of the task instance (or, asking first, of every map index)."""
    from statestore.metastore import MetastoreStateBackend  # noqa: PLC0415 - SQLAlchemy on use
    from statestore.metastore.errors import translate_errors  # noqa: PLC0415 - SQLAlchemy on use
    from statestore.metastore.maintenance import list_task_state  # noqa: PLC0415 - SQLAlchemy on use

    scope = _task_scope(dag, run, task, map_index, map_key)
    store = open_store(ctx)
    if all_map_indices:
        where = f"{dag} / {run} / {task} (every map index)"
        confirm(f"Delete every key of {where}?", yes=yes, what="clear --all-map-indices")
        backend = store.backend
        count: int | None = None
        if isinstance(backend, MetastoreStateBackend):
            with translate_errors(backend.url), backend.engine.connect() as conn:
                backend.ensure_schema()
                count = len(list_task_state(conn, (dag, run, task), None, utcnow()))
    else:
        where = _where(scope)
        count = _count(store.task_state(scope).keys)
    store.task_state(scope).clear(all_map_indices=all_map_indices)
    what = "every key" if count is None else plural(count, "key")
    _done(
        ctx,
        {"cleared": True, "keys": count, "all_map_indices": all_map_indices},
        f"Cleared {what} of {where}.",
    )


@asset_app.command("list", options_metavar=ASSET_USAGE)
def asset_list(ctx: typer.Context, asset: Asset = None) -> None:
    """List the keys of an asset."""
    from statestore.metastore.errors import translate_errors  # noqa: PLC0415 - SQLAlchemy on use
    from statestore.metastore.maintenance import list_asset_state  # noqa: PLC0415 - SQLAlchemy on use

    scope = _asset_scope(asset)
    store = open_store(ctx, read_only=True)
    now = utcnow()
    found = _through_server(store, scope)
    if found is not None:
        show_keys(found, as_json=state_of(ctx).json, task_level=False,
                  title=f"asset {asset}", now=now)  # fmt: skip
        return
    backend = _metastore(store)
    with translate_errors(backend.url), backend.engine.connect() as conn:
        backend.ensure_schema()
        rows = list_asset_state(conn, scope, now)
    show_keys(rows, as_json=state_of(ctx).json, task_level=False, title=f"asset {asset}", now=now)


@asset_app.command("get", options_metavar=ASSET_USAGE)
def asset_get(ctx: typer.Context, key: Key, asset: Asset = None) -> None:
    """Print the value of KEY as JSON; exit 1 if absent (with --json too)."""
    scope = _asset_scope(asset)
    _show_value(ctx, key, open_store(ctx, read_only=True).asset_state(scope).get(key))


@asset_app.command("set", options_metavar=ASSET_USAGE)
def asset_set(ctx: typer.Context, key: Key, value: Value, asset: Asset = None) -> None:
    """Write KEY = VALUE (JSON)."""
    scope = _asset_scope(asset)
    parsed = _parse_json(value, f"statestore asset-state delete {key} --asset {asset}")
    open_store(ctx).asset_state(scope).set(key, parsed)
    _done(ctx, {"key": key, "written": True}, f"Set {key} on asset {asset}.")


@asset_app.command("delete", options_metavar=ASSET_USAGE)
def asset_delete(ctx: typer.Context, key: Key, asset: Asset = None) -> None:
    """Delete KEY (exit 0 if it was absent too; the message says which)."""
    state = open_store(ctx).asset_state(_asset_scope(asset))
    existed = state.get(key) is not None
    state.delete(key)
    text = f"Deleted {key} from asset {asset}." if existed else (
        f"{key} was not set on asset {asset}; nothing deleted."
    )  # fmt: skip
    _done(ctx, {"key": key, "deleted": existed}, text)


@asset_app.command("clear", options_metavar=ASSET_USAGE)
def asset_clear(ctx: typer.Context, asset: Asset = None) -> None:
    """Delete every key of the asset."""
    state = open_store(ctx).asset_state(_asset_scope(asset))
    count = _count(state.keys)
    state.clear()
    what = "every key" if count is None else plural(count, "key")
    _done(ctx, {"cleared": True, "keys": count}, f"Cleared {what} of asset {asset}.")
