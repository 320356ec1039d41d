"""``config show``: the effective settings and where each came from."""

from __future__ import annotations

import typer

from statestore.cli.common import console, echo_json, escape, load_config, state_of

__all__ = ["app"]

app = typer.Typer(help="Configuration.", no_args_is_help=True)


@app.command()
def show(ctx: typer.Context) -> None:
    """Print every setting, its value (passwords masked) and its source."""
    config = load_config(state_of(ctx))
    values = config.as_dict(mask_secrets=True)
    sources = config.describe_sources()
    if state_of(ctx).json:
        echo_json(
            {
                section: {
                    key: {"value": value, "source": sources[f"{section}.{key}"]}
                    for key, value in keys.items()
                }
                for section, keys in values.items()
            }
        )
        return
    from rich.table import Table  # noqa: PLC0415 - rich loads when a command prints

    table = Table("setting", "value", "source")
    for section, keys in values.items():
        for key, value in keys.items():
            table.add_row(
                escape(f"[{section}] {key}"),
                escape(str(value)),
                escape(sources[f"{section}.{key}"]),
            )
    console.print(table)
