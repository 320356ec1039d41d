"""``cleanup-task-states``, ``sweep-asset-states`` and ``cleanup``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from statestore.cleanup import (
    CleanupReport,
    ExpiredTaskState,
    cleanup,
    cleanup_task_states,
    iter_expired_task_states,
    sweep_asset_states,
)
from statestore.cli.common import console, echo_json, open_store, state_of
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
    group: tuple[str, str, str, int] | None = None
    count = 0
    for row in rows:
        current = (row.dag_id, row.run_id, row.task_id, row.map_index)
        if current != group:
            group = current
            console.print(
                f"[bold]{row.dag_id}[/] / {row.run_id} / {row.task_id} (map index {row.map_index})"
            )
        console.print(f"    {row.key}  [dim]expired {row.expires_at.isoformat()}[/]")
        count += 1
    return count


def _stream_json_rows(report: CleanupReport, rows: Iterator[ExpiredTaskState]) -> None:
    """One JSON document, written row by row so memory stays flat."""
    head = json.dumps(_report_dict(report), sort_keys=True)[:-1]
    sys.stdout.write(head + ', "rows": [')
    for i, row in enumerate(rows):
        item = {
            "dag_id": row.dag_id,
            "run_id": row.run_id,
            "task_id": row.task_id,
            "map_index": row.map_index,
            "key": row.key,
            "expires_at": row.expires_at.isoformat(),
            "object_ref": row.object_ref,
        }
        sys.stdout.write(("," if i else "") + json.dumps(item, sort_keys=True, ensure_ascii=False))
    sys.stdout.write("]}\n")


def _run_cleanup(store: StateStore, *, json_out: bool, batch_size: int | None) -> CleanupReport:
    if json_out:
        return cleanup_task_states(store, batch_size=batch_size)
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


def _say(report: CleanupReport, what: str) -> None:
    if report.skipped_reason:
        console.print(f"Nothing cleaned: {escape(report.skipped_reason)}")
    elif report.dry_run:
        console.print(f"Dry run: {report.would_delete} {what} would be deleted.")
    else:
        batches = "1 batch" if report.batches == 1 else f"{report.batches} batches"
        console.print(f"Deleted {report.deleted} {what} in {batches}.")


def cleanup_task_states_cmd(
    ctx: typer.Context, dry_run: DryRun = False, batch_size: BatchSize = None
) -> None:
    """Delete task state whose retention has passed (never NEVER_EXPIRE keys, never
    asset state)."""
    store = open_store(ctx)
    json_out = state_of(ctx).json
    if dry_run:
        report = cleanup_task_states(store, dry_run=True, batch_size=batch_size)
        rows = iter_expired_task_states(store)
        if json_out:
            _stream_json_rows(report, rows)
            return
        _print_rows(rows)
        _say(report, "expired task-state keys")
        return
    report = _run_cleanup(store, json_out=json_out, batch_size=batch_size)
    if json_out:
        echo_json(_report_dict(report))
    else:
        _say(report, "expired task-state keys")


def sweep_asset_states_cmd(ctx: typer.Context, dry_run: DryRun = False) -> None:
    """Delete the state of deactivated assets (the orphan sweep)."""
    report = sweep_asset_states(open_store(ctx), dry_run=dry_run)
    if state_of(ctx).json:
        echo_json(_report_dict(report))
    else:
        _say(report, "asset-state keys of inactive assets")


def cleanup_cmd(
    ctx: typer.Context,
    dry_run: DryRun = False,
    batch_size: BatchSize = None,
    sweep: Annotated[
        bool, typer.Option("--sweep/--no-sweep", help="Also sweep inactive assets' state.")
    ] = True,
) -> None:
    """Expired task state, then the asset sweep: the one command to schedule."""
    report = cleanup(open_store(ctx), dry_run=dry_run, batch_size=batch_size, sweep_assets=sweep)
    if state_of(ctx).json:
        echo_json(_report_dict(report))
    else:
        _say(report, "keys")


def register(app: typer.Typer) -> None:
    """Add the maintenance commands to the root command."""
    app.command("cleanup-task-states")(cleanup_task_states_cmd)
    app.command("sweep-asset-states")(sweep_asset_states_cmd)
    app.command("cleanup")(cleanup_cmd)
