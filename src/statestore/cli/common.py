"""What every command shares: global options, the store they open, output helpers."""

from __future__ import annotations

import getpass
import json
import socket
import sys
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console

from statestore.config import StateStoreConfig
from statestore.exceptions import StateStoreError
from statestore.store import StateStore

__all__ = [
    "CliState",
    "CliUsageError",
    "console",
    "echo_error",
    "echo_json",
    "load_config",
    "open_store",
    "state_of",
]

console = Console(highlight=False, soft_wrap=True)


class CliUsageError(StateStoreError, ValueError):
    """A command was called wrongly (missing option, bad JSON): exit code 2."""


@dataclass(frozen=True)
class CliState:
    """The root command's options, passed to sub-commands through ``ctx.obj``."""

    url: str | None
    json: bool
    debug: bool


def state_of(ctx: typer.Context) -> CliState:
    """The global options of this invocation."""
    root = ctx.find_root()
    assert isinstance(root.obj, CliState)
    return root.obj


CLI_WRITER = f"statestore cli ({getpass.getuser()}@{socket.gethostname()})"[:250]


def load_config(state: CliState) -> StateStoreConfig:
    """The library's own configuration, with ``--url`` taking precedence."""
    config = StateStoreConfig()
    return config.with_database_url(state.url) if state.url else config


def open_store(ctx: typer.Context) -> StateStore:
    """The store this invocation works on; closed when the command ends."""
    # Writes made by hand show as such in `updated_by` (task-state/asset-state list).
    store = StateStore(config=load_config(state_of(ctx)), updated_by=CLI_WRITER)
    ctx.call_on_close(store.close)
    return store


def echo_error(message: str) -> None:
    """One line on stderr: what went wrong and, where there is one, what to do."""
    text = " ".join(message.split()) or "error"
    sys.stderr.write(f"statestore: error: {text}\n")


def echo_json(payload: Any) -> None:
    """Stable machine output: sorted keys, one document per invocation."""
    sys.stdout.write(json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False) + "\n")
