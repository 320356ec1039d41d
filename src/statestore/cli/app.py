"""The root ``statestore`` command: global options, error handling, sub-commands.

Every error a user can cause becomes one line on stderr and a non-zero exit; the
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from statestore.cli import (
    assets_cmds,
    config_cmds,
    db,
    demo,
    maintenance_cmds,
    objects_cmds,
    state_cmds,
)
from statestore.cli.common import CliState, CliUsageError, echo_error
from statestore.exceptions import StateStoreError

__all__ = ["app", "main"]

app = typer.Typer(
    name="statestore",
    help="Durable task state and asset state for workflow code.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
maintenance_cmds.register(app)
app.add_typer(state_cmds.task_app, name="task-state")
app.add_typer(state_cmds.asset_app, name="asset-state")
app.add_typer(assets_cmds.app, name="assets")
app.add_typer(config_cmds.app, name="config")
app.add_typer(objects_cmds.app, name="objects")
app.command("demo")(demo.demo)


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", envvar=None, help="Database URL (default: from configuration)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON output.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    ctx.obj = CliState(url=url, json=json_output, debug=debug)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (used by the console script and ``-m``)."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # Without standalone mode, click returns a command's typer.Exit code instead of
        # raising it: that return value is the exit code ("get" of an absent key: 1).
        returned = app(args=argv, standalone_mode=False)
    except StateStoreError as exc:
        if debug:
            raise
        echo_error(str(exc))
        return 2 if isinstance(exc, CliUsageError) else 1
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        echo_error("aborted")
        return 1
    except Exception as exc:
        # Usage errors (click's, or the copy typer vendors) are one line too, not a
        # usage block: recognise them by shape rather than by one copy's class.
        format_message = getattr(exc, "format_message", None)
        exit_code = getattr(exc, "exit_code", None)
        if callable(format_message) and isinstance(exit_code, int):
            echo_error(str(format_message()))
            return exit_code
        if debug:
            raise
        echo_error(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        return 1
    return returned if isinstance(returned, int) else 0
