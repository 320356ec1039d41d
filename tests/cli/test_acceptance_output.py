"""Acceptance, output: the real command in a subprocess (issue 18, points 5-7, 9, 11).

One subprocess per behaviour; see tests/cli/acceptance.py.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from statestore import StateStore, TaskScope
from statestore.metastore import upgrade
from tests.cli.acceptance import Statestore, statestore

__all__ = ["statestore"]  # the fixture, re-exported for pytest

SCOPE = ("--dag", "etl", "--run", "r1", "--task", "load")
GROUPS = ("db", "task-state", "asset-state", "assets", "config", "objects", "token")


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A migrated SQLite database for this test."""
    found = f"sqlite:///{tmp_path / 'state.db'}"
    upgrade(found)
    return found


def test_top_help_reads_whole(statestore: Statestore) -> None:
    done = statestore("--help", columns=80)
    assert (done.code, done.err) == (0, "")
    assert done.out.startswith("Usage: statestore [OPTIONS] COMMAND [ARGS]...\n")
    assert "..." not in done.out.replace("[ARGS]...", "")  # no command's line cut short
    assert "<bool>" not in done.out
    assert "  --json  " in done.out  # a flag, shown without a value
    assert all(len(line) <= 80 for line in done.out.splitlines())
    listed = re.findall(r"^  ([a-z-]+)  ", done.out.split("Commands:")[1], re.M)
    assert set(GROUPS) | {"cleanup", "demo"} <= set(listed)
    words = " ".join(done.out.split())
    assert "(the orphan sweep)" in words  # wrapped whole, not cut at 45 characters


def test_version(statestore: Statestore) -> None:
    from statestore import __version__

    done = statestore("--version")
    assert (done.code, done.out, done.err) == (0, f"statestore {__version__}\n", "")


@pytest.mark.parametrize("group", ["db", "task-state"])
def test_group_without_a_command_prints_its_help_and_exits_0(
    statestore: Statestore, group: str
) -> None:
    done = statestore(group)
    assert (done.code, done.err) == (0, "")
    assert done.out.startswith(f"Usage: statestore {group} [OPTIONS] COMMAND [ARGS]...\n")
    assert "Commands:" in done.out


def test_narrow_terminal_table(statestore: Statestore, url: str) -> None:
    run_id = "scheduled__2026-11-24T10:00:00+00:00"
    with StateStore(url) as store:
        for index in (-1, 7):
            store.task_state(TaskScope("etl", run_id, "load", index)).set("k", {"rows": 1200})
    done = statestore("--url", url, "task-state", "list", "--dag", "etl", columns=80)
    assert (done.code, done.err) == (0, "")
    lines = done.out.splitlines()
    assert lines[0] == f"etl / {run_id} / load"  # the run id whole, on one line
    assert all(len(line) <= 80 for line in lines)
    assert not re.search(r"│ -1 ", done.out)  # "not mapped" is "-", never the sentinel
    assert re.search(r"│ - +│ k ", done.out)
    assert re.search(r"│ 7 +│ k ", done.out)
    assert re.search(r"\bin 30d\b", done.out)  # relative, never a folded ISO timestamp
    assert not re.search(r"\d{4}-\d\d-\d\dT", "\n".join(lines[1:]))


def test_set_confirms_what_it_did(statestore: Statestore, url: str) -> None:
    done = statestore(
        "--url", url, "task-state", "set", "job", '"spark-1"', *SCOPE, "--never-expire"
    )
    assert (done.code, done.out, done.err) == (
        0,
        "Set job on etl / r1 / load (never expires).\n",
        "",
    )
    with StateStore(url) as store:
        assert store.task_state(TaskScope("etl", "r1", "load")).get("job") == "spark-1"


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_get_of_an_absent_key_exits_1_either_way(
    statestore: Statestore, url: str, as_json: bool
) -> None:
    done = statestore(
        *(["--json"] if as_json else []), "--url", url, "task-state", "get", "k", *SCOPE
    )
    assert (done.code, done.err) == (1, "")
    if as_json:
        assert json.loads(done.out) == {"found": False, "key": "k", "value": None}
    else:
        assert done.out == ""


def test_cleanup_dry_run_says_what_would_go(statestore: Statestore, url: str) -> None:
    with StateStore(url) as store:
        for index in (-1, 3):
            state = store.task_state(TaskScope("etl", "r1", "load", index))
            state.set("k", 1, retention=timedelta(microseconds=1))  # expired at once
        orders = store.asset_state("orders")
        orders.set("wm", 1)
        orders.set("cursor", 2)
        store.deactivate_assets("orders")
    done = statestore("--url", url, "cleanup", "--dry-run")
    assert (done.code, done.err) == (0, "")
    lines = done.out.splitlines()
    assert lines[0] == "etl / r1 / load"
    assert "etl / r1 / load (map index 3)" in lines
    assert "Inactive assets the sweep would empty" in done.out
    assert "    orders  2 keys" in lines
    assert lines[-1] == (
        "Dry run: 2 expired task-state keys and 2 asset-state keys of 1 inactive asset "
        "would be deleted."
    )
    with StateStore(url) as store:  # a dry run deletes nothing
        assert store.asset_state("orders").get("wm") == 1


def test_demo_twice_in_one_folder(statestore: Statestore, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    first = statestore("demo", "--dir", str(folder))
    assert (first.code, first.err) == (0, ""), first.err
    assert "starting the story fresh" not in first.out
    database = (folder / "demo.db").absolute()
    assert database.is_file()  # kept, since --dir was given
    inspect = f"statestore --url 'sqlite:///{database}' task-state list --dag spark_job_dag"
    assert inspect in first.out
    again = statestore("demo", "--dir", str(folder))
    assert (again.code, again.err) == (0, ""), again.err
    assert "demo.db is there from an earlier run: starting the story fresh" in again.out
    assert "All four use cases behaved as promised." in again.out
