"""The CLI's rich console is built on first use (not for --help), and behaves as one.

A progress bar enters the console as a context manager, which a lazy stand-in must
support too: ``cleanup`` in a terminal draws one.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console

from statestore import StateStore, TaskScope
from statestore.cli import main
from statestore.cli.common import console
from statestore.metastore import upgrade


def test_cleanup_draws_its_progress_bar_in_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(url)
    with StateStore(url) as store:
        for index in range(3):
            state = store.task_state(TaskScope("etl", "r1", "load", index))
            state.set("k", 1, retention=timedelta(microseconds=1))  # expired at once
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100, highlight=False)
    monkeypatch.setattr(console, "_console", terminal)
    assert main(["--url", url, "cleanup"]) == 0
    shown = screen.getvalue()
    assert "deleting expired task state" in shown  # the bar
    assert "3/3" in shown
    assert "Deleted 3 expired task-state keys in 1 batch" in shown
    with StateStore(url) as store:
        assert store.task_state(TaskScope("etl", "r1", "load", 0)).get("k") is None


def test_the_console_is_rich_and_built_once() -> None:
    with console as entered:  # a context manager, as rich's own
        assert isinstance(entered, Console)
    assert console.width > 0
    assert console.file is not None
    assert vars(console)["_console"] is entered  # the one built on first use
