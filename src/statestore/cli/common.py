"""What every command shares: global options, the store they open, output helpers."""

from __future__ import annotations

import getpass
import json
import socket
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from statestore.exceptions import BackendUnavailableError, StateStoreError
from statestore.store import StateStore

if TYPE_CHECKING:
    # rich and the settings model (pydantic, ~50-100 ms with its plugin entry-point
    # scan) load when a command prints or opens a store, never for --help or --version.
    from rich.console import Console

    from statestore.config import StateStoreConfig

__all__ = [
    "CliState",
    "CliUsageError",
    "confirm",
    "console",
    "echo_error",
    "echo_json",
    "ensure_database_exists",
    "escape",
    "load_config",
    "open_store",
    "plural",
    "short_time",
    "state_of",
]


class _LazyConsole:
    """rich's :class:`~rich.console.Console`, built on the first call that prints.

    ``--help`` and ``--version`` print nothing through it; importing rich for them would
    cost ~50 ms of a start-up that must stay under 0.5 s.
    """

    _console: Console | None = None

    def _built(self) -> Console:
        if self._console is None:
            from rich.console import Console  # noqa: PLC0415 - see the class docstring

            self._console = Console(highlight=False, soft_wrap=True)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._built(), name)

    # Special methods are looked up on the type, not through __getattr__: rich's
    # progress bars and live displays enter the console as a context manager.
    def __enter__(self) -> Console:
        return self._built().__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._built().__exit__(*exc_info)


console = cast("Console", _LazyConsole())


def escape(text: str) -> str:
    """rich's markup escape, imported when a command prints (not for ``--help``)."""
    from rich.markup import escape as rich_escape  # noqa: PLC0415 - see _LazyConsole

    return rich_escape(text)


class CliUsageError(StateStoreError, ValueError):
    """A command was called wrongly (missing option, bad JSON): exit code 2."""


@dataclass(frozen=True)
class CliState:
    """The root command's options, passed to sub-commands through ``ctx.obj``."""

    url: str | None
    json: bool
    debug: bool
    token: str | None = None  # for a state server (--url http(s)://...)
    token_file: str | None = None


def state_of(ctx: typer.Context) -> CliState:
    """The global options of this invocation."""
    root = ctx.find_root()
    assert isinstance(root.obj, CliState)
    return root.obj


CLI_WRITER = f"statestore cli ({getpass.getuser()}@{socket.gethostname()})"[:250]


def load_config(state: CliState) -> StateStoreConfig:
    """The library's own configuration, with ``--url`` taking precedence.

    An ``http(s)://`` URL names a state server (``[client] url``), with ``--token`` or
    ``--token-file`` (else ``[client] token`` / ``token_file``); any other, a database.
    """
    from statestore.config import StateStoreConfig, is_server_url  # noqa: PLC0415 - see top

    config = StateStoreConfig()
    if state.url and is_server_url(state.url):
        return config.with_client(state.url, token=state.token, token_file=state.token_file)
    config = config.with_database_url(state.url) if state.url else config
    if state.token is None and state.token_file is None:
        return config
    if not config.client.url:
        raise CliUsageError(
            "--token and --token-file are for a state server: give --url http(s)://... "
            "or set [client] url"
        )
    return config.with_client(token=state.token, token_file=state.token_file)


def ensure_database_exists(config: StateStoreConfig) -> None:
    """Refuse to go on when the configured SQLite file does not exist.

    Read-only commands (get, list, db check/current, dry runs) call this first: opening
    a SQLite path creates the file, and a typo in --url would otherwise leave an empty
    database behind and report "no keys" as if that were the answer.
    """
    from statestore.metastore.engine import derive_urls  # noqa: PLC0415 - only for SQLite

    # Only the metastore backend opens [database] url (a custom backend may not use it,
    # and a [client] url means a state server holds the state).
    if config.client.url or not config.state_store.backend.endswith(".MetastoreStateBackend"):
        return
    if not config.database.url.startswith("sqlite"):
        return
    url = derive_urls(config.database.url)[0]
    if not url.database:
        return
    path = Path(url.database).expanduser()
    if not path.exists():
        raise BackendUnavailableError(
            f"no SQLite database at {path.absolute()} (nothing created: this command only "
            "reads); check --url, or run `statestore db upgrade` to create it"
        )


def open_store(ctx: typer.Context, *, read_only: bool = False) -> StateStore:
    """The store this invocation works on; closed when the command ends.

    ``read_only``: a SQLite file that does not exist is an error, not created.
    """
    config = load_config(state_of(ctx))
    if read_only:
        ensure_database_exists(config)
    # Writes made by hand show as such in `updated_by` (task-state/asset-state list).
    store = StateStore(config=config, updated_by=CLI_WRITER)
    ctx.call_on_close(store.close)
    return store


def confirm(question: str, *, yes: bool, what: str) -> None:
    """Ask before a destructive step; ``--yes`` skips the question.

    Without a terminal there is nobody to answer, so a script must say ``--yes``:
    refusing is safer than guessing (a cron job must not drop tables by accident).
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliUsageError(f"{what} needs --yes when stdin is not a terminal")
    if not typer.confirm(question, default=False):
        raise typer.Abort


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 key``, ``2 keys``, ``0 keys``."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def short_time(moment: datetime | None, now: datetime, *, never: str = "never") -> str:
    """A moment as a short relative form that never breaks mid-value in a table:
    ``12s ago``, ``in 3h``, ``in 30d``; older than a year, the date."""
    if moment is None:
        return never
    seconds = (moment - now).total_seconds()
    span = abs(seconds)
    if span >= 366 * 86400:
        return moment.date().isoformat()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if span >= size or unit == "s":
            # Nearest, not floor: a 30-day retention set a second ago is "in 30d".
            amount = f"{int(span / size + 0.5)}{unit}"
            break
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


def echo_error(message: str, *, as_json: bool = False, kind: str = "error", code: int = 1) -> None:
    """One line on stderr: what went wrong and, where there is one, what to do.

    With ``--json`` the line is a JSON object instead (``type``: the exception class,
    ``message``, ``exit_code``), so a script reads errors the way it reads results.
    """
    text = " ".join(message.split()) or kind
    if as_json:
        payload = {"type": kind, "message": text, "exit_code": code}
        sys.stderr.write(json.dumps(payload, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"statestore: error: {text}\n")


def echo_json(payload: Any) -> None:
    """Stable machine output: sorted keys, one document per invocation."""
    sys.stdout.write(json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False) + "\n")
