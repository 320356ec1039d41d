"""``cleanup-task-states``, ``sweep-asset-states`` and ``cleanup``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from statestore.cli.common import (
    console,
    echo_json,
    escape,
    open_store,
    plural,
    short_time,
    state_of,
)
from statestore.cli.tables import instance_label
from statestore.retention import utcnow

if TYPE_CHECKING:
    from statestore.cleanup import CleanupReport, ExpiredTaskState
    from statestore.metastore.maintenance import AssetInfo
from statestore.store import StateStore

__all__ = ["register"]

DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would go; delete nothing.")]
BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=0,
        help="Rows per committed batch; 0 = one statement (default: configuration).",
    ),
]


def _report_dict(report: CleanupReport) -> dict[str, object]:
    return {
        "deleted": report.deleted,
        "would_delete": report.would_delete,
        "batches": report.batches,
        "dry_run": report.dry_run,
        "skipped_reason": report.skipped_reason,
    }


def _print_rows(rows: Iterator[ExpiredTaskState]) -> int:
    """Human dry-run listing, grouped by task instance, streamed."""
    group: tuple[str, str, str, int, str | None] | None = None
    count = 0
    now = utcnow()
    for row in rows:
        current = (row.dag_id, row.run_id, row.task_id, row.map_index, row.map_key)
        if current != group:
            group = current
            mapped = instance_label(row.map_index, row.map_key)
            where = f"{row.dag_id} / {row.run_id} / {row.task_id}"
            kind = "map key" if row.map_key is not None else "map index"
            suffix = "" if mapped == "-" else f" ({kind} {mapped})"
            console.print(f"[bold]{escape(where)}[/]{suffix}")
        console.print(f"    {escape(row.key)}  [dim]expired {short_time(row.expires_at, now)}[/]")
        count += 1
    return count


def _sweepable(store: StateStore) -> list[AssetInfo]:
    """Inactive assets that still hold state: what the sweep would empty."""
    from statestore.backends.http_admin import AdminRoutes  # noqa: PLC0415 - on use
    from statestore.metastore import MetastoreStateBackend  # noqa: PLC0415 - on use

    if not isinstance(store.backend, (MetastoreStateBackend, AdminRoutes)):
        return []  # no registry: the report says the backend is not cleaned up
    return [a for a in store.list_assets(active=False) if a.keys]


def _print_assets(assets: list[AssetInfo]) -> None:
    if assets:
        console.print("[bold]Inactive assets the sweep would empty[/]")
    for a in assets:
        console.print(f"    {escape(a.name)}  [dim]{plural(a.keys, 'key')}[/]")


def _stream_json_rows(
    report: CleanupReport,
    rows: Iterator[ExpiredTaskState],
    assets: list[AssetInfo] | None = None,
) -> None:
    """One JSON document, written row by row so memory stays flat."""
    head = json.dumps(_report_dict(report), sort_keys=True)[:-1]
    if assets is not None:
        listed = [{"name": a.name, "uri": a.uri, "keys": a.keys} for a in assets]
        head += ', "assets": ' + json.dumps(listed, sort_keys=True, ensure_ascii=False)
    sys.stdout.write(head + ', "rows": [')
    for i, row in enumerate(rows):
        item = {
            "dag_id": row.dag_id,
            "run_id": row.run_id,
            "task_id": row.task_id,
            "map_index": row.map_index,
            "map_key": row.map_key,
            "key": row.key,
            "expires_at": row.expires_at.isoformat(),
            "object_ref": row.object_ref,
        }
        sys.stdout.write(("," if i else "") + json.dumps(item, sort_keys=True, ensure_ascii=False))
    sys.stdout.write("]}\n")


def _run_cleanup(store: StateStore, *, json_out: bool, batch_size: int | None) -> CleanupReport:
    from statestore.cleanup import cleanup_task_states  # noqa: PLC0415 - SQLAlchemy on use

    if json_out or not console.is_terminal:  # a bar in a log file is noise (and a blank line)
        return cleanup_task_states(store, batch_size=batch_size)
    from rich.progress import (  # noqa: PLC0415 - rich loads when a command prints
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
    )

    expected = cleanup_task_states(store, dry_run=True).would_delete
    with Progress(
        TextColumn("deleting expired task state"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("cleanup", total=expected or None)
        return cleanup_task_states(
            store, batch_size=batch_size, progress=lambda done: bar.update(task, completed=done)
        )


def _say(report: CleanupReport, what: str, of: str = "") -> None:
    if report.skipped_reason:
        console.print(f"Nothing cleaned: {escape(report.skipped_reason)}")
    elif report.dry_run:
        console.print(f"Dry run: {plural(report.would_delete, what)}{of} would be deleted.")
    else:
        batches = plural(report.batches, "batch", "batches")
        console.print(f"Deleted {plural(report.deleted, what)}{of} in {batches}.")


def cleanup_task_states_cmd(
    ctx: typer.Context, dry_run: DryRun = False, batch_size: BatchSize = None
) -> None:
    """Delete task state whose retention has passed.

    Never NEVER_EXPIRE keys, never asset state.
    """
    from statestore.cleanup import cleanup_task_states, iter_expired_task_states  # noqa: PLC0415 - SQLAlchemy on use

    store = open_store(ctx, read_only=dry_run)
    json_out = state_of(ctx).json
    if dry_run:
        report = cleanup_task_states(store, dry_run=True, batch_size=batch_size)
        rows = iter_expired_task_states(store)
        if json_out:
            _stream_json_rows(report, rows)
            return
        _print_rows(rows)
        _say(report, "expired task-state key")
        return
    report = _run_cleanup(store, json_out=json_out, batch_size=batch_size)
    if json_out:
        echo_json(_report_dict(report))
    else:
        _say(report, "expired task-state key")


def sweep_asset_states_cmd(ctx: typer.Context, dry_run: DryRun = False) -> None:
    """Delete the state of deactivated assets (the orphan sweep)."""
    from statestore.cleanup import sweep_asset_states  # noqa: PLC0415 - SQLAlchemy on use

    store = open_store(ctx, read_only=dry_run)
    if dry_run and not state_of(ctx).json:
        _print_assets(_sweepable(store))
    report = sweep_asset_states(store, dry_run=dry_run)
    if state_of(ctx).json:
        echo_json(_report_dict(report))
    else:
        _say(report, "asset-state key", " of inactive assets")


def cleanup_cmd(
    ctx: typer.Context,
    dry_run: DryRun = False,
    batch_size: BatchSize = None,
    sweep: Annotated[
        bool, typer.Option("--sweep/--no-sweep", help="Also sweep inactive assets' state.")
    ] = True,
) -> None:
    """Expired task state, then the asset sweep: the one command to schedule.

    With --dry-run: every expired key, grouped by task instance, and the inactive
    assets the sweep would empty; nothing is deleted.
    """
    from statestore.cleanup import sweep_asset_states  # noqa: PLC0415 - SQLAlchemy on use

    store = open_store(ctx, read_only=dry_run)
    json_out = state_of(ctx).json
    if dry_run:
        _cleanup_dry_run(store, json_out=json_out, batch_size=batch_size, sweep=sweep)
        return
    tasks = _run_cleanup(store, json_out=json_out, batch_size=batch_size)
    report = tasks
    if sweep and tasks.skipped_reason is None:
        report = tasks + sweep_asset_states(store)
    if json_out:
        echo_json(_report_dict(report))
    elif report.skipped_reason:
        _say(report, "key")
    else:
        swept = report.deleted - tasks.deleted
        batches = plural(tasks.batches, "batch", "batches")
        text = f"Deleted {plural(tasks.deleted, 'expired task-state key')} in {batches}"
        if sweep:
            text += f" and {plural(swept, 'asset-state key')} of inactive assets"
        console.print(text + ".")


def _cleanup_dry_run(
    store: StateStore, *, json_out: bool, batch_size: int | None, sweep: bool
) -> None:
    from statestore.cleanup import cleanup_task_states, iter_expired_task_states, sweep_asset_states  # noqa: PLC0415 - SQLAlchemy on use

    tasks = cleanup_task_states(store, dry_run=True, batch_size=batch_size)
    if tasks.skipped_reason is not None:
        if json_out:
            echo_json(_report_dict(tasks))
        else:
            _say(tasks, "key")
        return
    assets = _sweepable(store) if sweep else []
    report = tasks + sweep_asset_states(store, dry_run=True) if sweep else tasks
    rows = iter_expired_task_states(store)
    if json_out:
        _stream_json_rows(report, rows, assets)
        return
    _print_rows(rows)
    _print_assets(assets)
    text = f"Dry run: {plural(tasks.would_delete, 'expired task-state key')}"
    if sweep:
        swept = report.would_delete - tasks.would_delete
        text += (
            f" and {plural(swept, 'asset-state key')} of {plural(len(assets), 'inactive asset')}"
        )
    console.print(text + " would be deleted.")


def register(app: typer.Typer) -> None:
    """Add the maintenance commands to the root command."""
    app.command("cleanup-task-states")(cleanup_task_states_cmd)
    app.command("sweep-asset-states")(sweep_asset_states_cmd)
    app.command("cleanup")(cleanup_cmd)
