"""The root ``statestore`` command: global options, error handling, sub-commands.

Every error a user can cause becomes one line on stderr and a non-zero exit; the
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from statestore.cli import (
    assets_cmds,
    config_cmds,
    db,
    demo,
    maintenance_cmds,
    objects_cmds,
    server_cmds,
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
server_cmds.register(app)


def _print_version(value: bool) -> None:
    if value:
        from statestore import __version__  # noqa: PLC0415 - only when asked

        typer.echo(f"statestore {__version__}")  # not rich: --version stays cheap
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            help="Database URL, or a state server's http(s):// URL (default: from configuration).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            help="Bearer token for a state server (prefer --token-file: a command line is "
            "visible to other users).",
        ),
    ] = None,
    token_file: Annotated[
        str | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="File holding the bearer token for a state server.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON output (errors too).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    ctx.obj = CliState(url=url, json=json_output, debug=debug, token=token, token_file=token_file)


def _plain_flags(command: Any, *, rich_help: bool = True) -> Any:
    """Drop the ``<bool>`` type typer's help shows for on/off flags, ``--help`` included.

    A flag takes no value; showing one sends users typing ``--json true``.
    ``rich_help=False``: click's plain help instead of typer's rich panels, for output
    that is not a terminal (a pipe, a file, a test): the same text without the boxes,
    and without importing rich's help renderer (~100 ms of a ~0.4 s ``--help``).
    """
    if not rich_help:
        command.rich_markup_mode = None
        if not command.short_help and command.help:
            # click cuts a command's line in its group's list at 45 characters ("the
            # orphan..."); rich shows the first paragraph whole, so plain help does too.
            command.short_help = " ".join(command.help.split("\n\n")[0].split())
    for param in command.params:
        if getattr(param, "is_bool_flag", False) and param.metavar is None:
            param.metavar = ""
    help_option = command.get_help_option(command.context_class(command))
    if help_option is not None:
        help_option.metavar = ""
    for child in getattr(command, "commands", {}).values():
        _plain_flags(child, rich_help=rich_help)
    return command


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


_VALUED = ("--url", "--token", "--token-file")  # root options that take a value


def _root_options(argv: list[str]) -> set[str]:
    """The global flags given before the command (``--json``, ``--debug``)."""
    found: set[str] = set()
    args = iter(argv)
    for arg in args:
        if arg in _VALUED:
            next(args, None)
        elif arg.startswith(tuple(f"{name}=" for name in _VALUED)):
            continue
        elif arg.startswith("-"):
            found.add(arg)
        else:
            break  # the command: what follows is its own
    return found


def _failure(exc: Exception, *, debug: bool) -> tuple[str, str, int]:
    """``(type, message, exit code)`` for an error that ends the command.

    With ``--debug``, anything but a usage error is re-raised for its traceback.
    """
    if isinstance(exc, StateStoreError):
        if debug:
            raise exc
        return type(exc).__name__, str(exc), 2 if isinstance(exc, CliUsageError) else 1
    if isinstance(exc, typer.Abort):
        return "Aborted", "aborted", 1
    # Usage errors (click's, or the copy typer vendors) are one line too, not a usage
    # block: recognise them by shape rather than by one copy's class.
    format_message = getattr(exc, "format_message", None)
    exit_code = getattr(exc, "exit_code", None)
    if callable(format_message) and isinstance(exit_code, int):
        return "UsageError", str(format_message()), exit_code
    if debug:
        raise exc
    message = f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)"
    return type(exc).__name__, message, 1


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (used by the console script and ``-m``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    flags = _root_options(args)
    try:
        # Without standalone mode, click returns a command's typer.Exit code instead of
        # raising it: that return value is the exit code ("get" of an absent key: 1).
        command = _plain_flags(typer.main.get_command(app), rich_help=_is_terminal(sys.stdout))
        returned = command.main(args=args, prog_name="statestore", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the one boundary: every error is one line
        if type(exc).__name__ == "NoArgsIsHelpError":
            # A group without its sub-command: its help, and no error. Rich help has been
            # printed already; plain help is the exception's message.
            text = str(getattr(exc, "message", "") or "")
            if text:
                sys.stdout.write(text.rstrip("\n") + "\n")
            return 0
        kind, message, code = _failure(exc, debug="--debug" in flags)
        echo_error(message, as_json="--json" in flags, kind=kind, code=code)
        return code
    return returned if isinstance(returned, int) else 0
