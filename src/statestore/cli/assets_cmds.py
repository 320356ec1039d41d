"""``assets list|deactivate|activate``: the asset registry."""

from __future__ import annotations

from typing import Annotated

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
from statestore.exceptions import UnknownAssetError
from statestore.retention import utcnow
from statestore.store import StateStore

__all__ = ["app"]

app = typer.Typer(help="The asset registry.", no_args_is_help=True)
Names = Annotated[list[str], typer.Argument(metavar="NAME...", help="Asset names.")]


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="Only active / inactive assets.")
    ] = None,
) -> None:
    """List registered assets with their state's key count."""
    assets = open_store(ctx, read_only=True).list_assets(active)
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
    now = utcnow()
    from rich.table import Table  # noqa: PLC0415 - rich loads when a command prints

    table = Table()
    for name in ("name", "uri"):
        table.add_column(name, overflow="fold")
    for name in ("active", "keys", "updated"):
        table.add_column(name, no_wrap=True)
    for a in assets:
        table.add_row(
            escape(a.name),
            escape(a.uri or "-"),
            "yes" if a.active else "no",
            str(a.keys),
            short_time(a.updated_at, now),
        )
    console.print(table if assets else "(no assets registered)")


def _registered(store: StateStore, names: list[str]) -> dict[str, bool]:
    """Each named asset's active flag; an unknown name is an error, and nothing changes.

    The library ignores unknown assets (a host may deactivate what it never wrote); a
    person typing a name means that asset, so a typo must not pass as "0 changed".
    """
    known = {a.name: a.active for a in store.list_assets()}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownAssetError(
            f"no registered asset named {', '.join(map(repr, unknown))}; "
            "`statestore assets list` shows the registered ones"
        )
    return {n: known[n] for n in names}


def _switch(ctx: typer.Context, names: list[str], *, active: bool) -> None:
    store = open_store(ctx)
    before = _registered(store, names)
    changed = (store.activate_assets if active else store.deactivate_assets)(*names)
    verb = "activated" if active else "deactivated"
    already = sorted(n for n, was in before.items() if was == active)
    if state_of(ctx).json:
        echo_json({verb: changed, "unchanged": already})
        return
    text = f"{verb.capitalize()} {plural(changed, 'asset')}"
    if already:
        text += f"; already {'active' if active else 'inactive'}: {', '.join(already)}"
    console.print(escape(text + "."))


@app.command()
def deactivate(ctx: typer.Context, names: Names) -> None:
    """Mark assets inactive: no more writes; the next sweep deletes their state."""
    _switch(ctx, names, active=False)


@app.command()
def activate(ctx: typer.Context, names: Names) -> None:
    """Re-activate assets."""
    _switch(ctx, names, active=True)
