"""``assets list|deactivate|activate``: the asset registry."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from statestore.cli.common import console, echo_json, open_store, state_of

__all__ = ["app"]

app = typer.Typer(help="The asset registry.", no_args_is_help=True)
Names = Annotated[list[str], typer.Argument(help="Asset names.")]


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="Only active / inactive assets.")
    ] = None,
) -> None:
    """List registered assets with their state's key count."""
    assets = open_store(ctx).list_assets(active)
    if state_of(ctx).json:
        echo_json(
            [
                {
                    "name": a.name,
                    "uri": a.uri,
                    "active": a.active,
                    "keys": a.keys,
                    "updated_at": a.updated_at.isoformat(),
                }
                for a in assets
            ]
        )
        return
    table = Table("name", "uri", "active", "keys", "updated at")
    for a in assets:
        table.add_row(
            escape(a.name),
            escape(a.uri or ""),
            "yes" if a.active else "no",
            str(a.keys),
            a.updated_at.isoformat(timespec="seconds"),
        )
    console.print(table if assets else "(no assets registered)")


@app.command()
def deactivate(ctx: typer.Context, names: Names) -> None:
    """Mark assets inactive: no more writes; the next sweep deletes their state."""
    changed = open_store(ctx).deactivate_assets(*names)
    if state_of(ctx).json:
        echo_json({"deactivated": changed})
    else:
        console.print(f"Deactivated {changed} asset(s).")


@app.command()
def activate(ctx: typer.Context, names: Names) -> None:
    """Re-activate assets."""
    changed = open_store(ctx).activate_assets(*names)
    if state_of(ctx).json:
        echo_json({"activated": changed})
    else:
        console.print(f"Activated {changed} asset(s).")
