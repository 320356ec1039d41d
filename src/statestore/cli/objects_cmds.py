"""``objects gc``: remove objects that no row references (crash leftovers)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from statestore.cli.common import console, echo_json, escape, open_store, state_of

__all__ = ["app"]

app = typer.Typer(help="Objects of the worker-side object store.", no_args_is_help=True)


@app.command()
def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List orphans; delete nothing.")] = (
        False
    ),
    grace_hours: Annotated[
        float,
        typer.Option("--grace-hours", min=0.0, help="Only objects older than this (default 1)."),
    ] = 1.0,
) -> None:
    """Delete objects whose reference no row holds, older than the grace period."""
    from statestore.cleanup import gc_objects  # noqa: PLC0415 - SQLAlchemy on use

    report = gc_objects(open_store(ctx), dry_run=dry_run, grace=timedelta(hours=grace_hours))
    if state_of(ctx).json:
        echo_json(
            {
                "scanned": report.scanned,
                "orphans": report.orphans,
                "deleted": report.deleted,
                "dry_run": report.dry_run,
            }
        )
        return
    for ref in report.orphans:
        console.print(f"  orphan {escape(ref)}")
    verb = "would delete" if dry_run else "deleted"
    console.print(
        f"Scanned {report.scanned} object(s): {len(report.orphans)} orphan(s), "
        f"{verb} {len(report.orphans) if dry_run else report.deleted}."
    )
