"""What every command shares: global options, the store they open, output helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import typer

from statestore.config import StateStoreConfig

__all__ = ["CliState", "echo_error", "echo_json", "load_config"]


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


def load_config(state: CliState) -> StateStoreConfig:
    """The library's configuration, with ``--url`` taking precedence."""
    if state.url:
        return StateStoreConfig(database={"url": state.url})
    return StateStoreConfig()


def echo_error(message: str) -> None:
    """One line on stderr: what went wrong and, where there is one, what to do."""
    first = message.strip().splitlines()[0] if message.strip() else "error"
    sys.stderr.write(f"statestore: error: {first}\n")


def echo_json(payload: Any) -> None:
    """Stable machine output: sorted keys, one document per invocation."""
    sys.stdout.write(json.dumps(payload, sort_keys=True, default=str) + "\n")
