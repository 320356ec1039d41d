"""Acceptance, errors and refusals: the real command in a subprocess (issue 18, 4 and 7-10).

One subprocess per behaviour; see tests/cli/acceptance.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from statestore import StateStore, TaskScope
from statestore.metastore import current_revision, head_revision, upgrade
from tests.cli.acceptance import Statestore, statestore

__all__ = ["statestore"]  # the fixture, re-exported for pytest

SCOPE = ("--dag", "etl", "--run", "r1", "--task", "load")


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A migrated SQLite database for this test."""
    found = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(found)
    return found


def test_usage_error_exit_2_and_json_error_object(statestore: Statestore) -> None:
    done = statestore("--json", "task-state", "get", "k", "--dag", "d")  # --run missing
    assert done.code == 2
    assert done.json_error() == {
        "exit_code": 2,
        "message": "Missing option '--run'.",
        "type": "UsageError",
    }


def test_library_error_exit_1_as_one_json_line_from_python_m(statestore: Statestore) -> None:
    done = statestore("--json", "--url", "sqlite://state.db", "db", "current", module=True)
    payload = done.json_error()
    assert (payload["type"], payload["exit_code"]) == ("ConfigError", 1)
    assert "use three slashes for a relative path: sqlite:///state.db" in payload["message"]


def test_errors_name_cli_commands_not_python(statestore: Statestore, url: str) -> None:
    done = statestore("--url", url, "task-state", "set", "k", "null", *SCOPE)
    assert (done.code, done.out) == (2, "")
    assert done.err.startswith("statestore: error: ")
    assert "statestore task-state delete k" in done.err
    assert "delete()" not in done.err
    assert done.err.count("\n") == 1  # one line, no traceback


def test_retention_error_in_the_users_units(statestore: Statestore, url: str) -> None:
    done = statestore("--url", url, "task-state", "set", "k", "1", *SCOPE, "--retention-hours", "0")
    assert done.code == 2
    assert "--retention-hours must be more than 0, not 0" in done.err
    assert "timedelta" not in done.err


def test_db_downgrade_without_a_terminal_needs_yes(statestore: Statestore, url: str) -> None:
    done = statestore("--url", url, "db", "downgrade", "base")
    assert (done.code, done.out) == (2, "")
    assert "db downgrade needs --yes when stdin is not a terminal" in done.err
    assert current_revision(url) == head_revision()  # nothing dropped


def test_clear_all_map_indices_without_a_terminal_needs_yes(
    statestore: Statestore, url: str
) -> None:
    with StateStore(url) as store:
        for index in (0, 1):
            store.task_state(TaskScope("etl", "r1", "load", index)).set("k", index)
    done = statestore("--url", url, "task-state", "clear", *SCOPE, "--all-map-indices")
    assert (done.code, done.out) == (2, "")
    assert "needs --yes when stdin is not a terminal" in done.err
    with StateStore(url) as store:
        assert [store.task_state(TaskScope("etl", "r1", "load", i)).get("k") for i in (0, 1)] == [
            0,
            1,
        ]  # kept


def test_clear_all_map_indices_with_yes(statestore: Statestore, url: str) -> None:
    with StateStore(url) as store:
        for index in (0, 1):
            store.task_state(TaskScope("etl", "r1", "load", index)).set("k", index)
    done = statestore("--url", url, "task-state", "clear", *SCOPE, "--all-map-indices", "--yes")
    assert (done.code, done.err) == (0, "")
    assert done.out == "Cleared 2 keys of etl / r1 / load (every map index).\n"
    with StateStore(url) as store:
        assert store.task_state(TaskScope("etl", "r1", "load", 0)).get("k") is None


@pytest.mark.parametrize(
    "args",
    [
        ("task-state", "get", "k", *SCOPE),
        ("asset-state", "list", "--asset", "orders"),
        ("db", "check"),
        ("db", "current"),
    ],
    ids=["task-state get", "asset-state list", "db check", "db current"],
)
def test_read_only_command_on_a_missing_sqlite_file_creates_none(
    statestore: Statestore, tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "typo.db"
    done = statestore("--url", f"sqlite:///{missing}", *args)
    assert (done.code, done.out) == (1, "")
    assert f"no SQLite database at {missing}" in done.err
    assert "db upgrade" in done.err
    assert not missing.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no -wal, -shm or journal


def test_unknown_asset_is_an_error_and_changes_nothing(statestore: Statestore, url: str) -> None:
    with StateStore(url) as store:
        store.asset_state("orders").set("wm", 1)
    done = statestore("--url", url, "assets", "deactivate", "orders", "ordres")
    assert (done.code, done.out) == (1, "")
    assert "no registered asset named 'ordres'" in done.err
    with StateStore(url) as store:
        assert [(a.name, a.active) for a in store.list_assets()] == [("orders", True)]
