"""The CLI's first hour (issue 18): exit codes, --json errors, --yes, narrow tables,
read-only commands that create nothing, help, demo.

These tests call ``statestore.cli.main`` in-process (the same entry point the console
script runs, error handling included), each covering a behaviour in depth. The
acceptance tier (tests/cli/test_acceptance_*.py) runs each behaviour once more through
the real console script in a subprocess, with a terminal width, no terminal on stdin,
and the module entry point.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from statestore.cli import main

SCOPE = ["--dag", "etl", "--run", "r1", "--task", "load"]


class Run:
    """``main(argv)`` with captured output."""

    def __init__(self, capsys: pytest.CaptureFixture[str], url: str) -> None:
        self.capsys = capsys
        self.url = url

    def __call__(self, *args: str, url: bool = True) -> tuple[int, str, str]:
        code = main([*(["--url", self.url] if url else []), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json_error(self, *args: str) -> dict[str, Any]:
        code, out, err = self("--json", *args)
        assert out == ""
        payload: dict[str, Any] = json.loads(err)
        assert payload["exit_code"] == code != 0
        return payload


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    for name in [k for k in __import__("os").environ if k.startswith("STATESTORE")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    return Run(capsys, f"sqlite:///{tmp_path / 'state.db'}")


def test_read_only_commands_create_no_file(run: Run, tmp_path: Path) -> None:
    for args in (
        ("task-state", "get", "k", *SCOPE),
        ("task-state", "list", "--dag", "etl"),
        ("asset-state", "get", "k", "--asset", "orders"),
        ("asset-state", "list", "--asset", "orders"),
        ("assets", "list"),
        ("db", "check"),
        ("db", "current"),
        ("cleanup", "--dry-run"),
        ("cleanup-task-states", "--dry-run"),
    ):
        code, out, err = run(*args)
        assert (code, out) == (1, ""), args
        assert "no SQLite database at" in err, args
        assert "db upgrade" in err
        assert not (tmp_path / "state.db").exists(), args


def test_json_errors_are_objects_on_stderr(run: Run) -> None:
    usage = run.json_error("task-state", "get", "k", "--dag", "d")
    assert usage == {"exit_code": 2, "message": "Missing option '--run'.", "type": "UsageError"}
    bad_url = run.json_error("--url", "sqlite://state.db", "db", "current")
    assert bad_url["type"] == "ConfigError"
    assert "use three slashes for a relative path: sqlite:///state.db" in bad_url["message"]
    missing = run.json_error("task-state", "get", "k", *SCOPE)
    assert (missing["type"], missing["exit_code"]) == ("BackendUnavailableError", 1)


def test_cli_errors_speak_cli(run: Run) -> None:
    code, _, err = run("task-state", "set", "k", "null", *SCOPE)
    assert code == 2
    assert "statestore task-state delete k" in err
    assert "delete()" not in err
    code, _, err = run("task-state", "set", "k", "1", *SCOPE, "--retention-hours", "0")
    assert code == 2
    assert "--retention-hours must be more than 0, not 0" in err
    assert "timedelta" not in err
    assert "--never-expire" in err


def test_writes_confirm_and_get_exits_the_same_way(run: Run) -> None:
    code, out, _ = run("task-state", "set", "job", '"spark-1"', *SCOPE, "--never-expire")
    assert (code, out) == (0, "Set job on etl / r1 / load (never expires).\n")
    code, out, _ = run("task-state", "set", "rows", "3", *SCOPE, "--map-index", "2")
    assert code == 0
    assert out == "Set rows on etl / r1 / load (map index 2) (expires in 30d).\n"
    # 3.6 microseconds: gone by the read-back, which must not say "never expires"
    code, out, _ = run("task-state", "set", "blink", "1", *SCOPE, "--retention-hours", "1e-9")
    assert (code, out) == (0, "Set blink on etl / r1 / load (already expired).\n")
    assert run("task-state", "get", "job", *SCOPE)[:2] == (0, '"spark-1"\n')
    code, out, _ = run("task-state", "delete", "job", *SCOPE)
    assert (code, out) == (0, "Deleted job from etl / r1 / load.\n")
    code, out, _ = run("task-state", "delete", "job", *SCOPE)
    assert (code, out) == (0, "job was not set on etl / r1 / load; nothing deleted.\n")
    assert run("task-state", "get", "job", *SCOPE)[:2] == (1, "")
    code, out, _ = run("--json", "task-state", "get", "job", *SCOPE)
    assert code == 1  # absent: exit 1 with --json too, and the document says so
    assert json.loads(out) == {"found": False, "key": "job", "value": None}
    code, out, _ = run("asset-state", "set", "wm", '"2026-11-24"', "--asset", "orders")
    assert (code, out) == (0, "Set wm on asset orders.\n")
    code, out, _ = run("asset-state", "clear", "--asset", "orders")
    assert (code, out) == (0, "Cleared 1 key of asset orders.\n")


def test_clear_all_map_indices_needs_yes_or_a_yes_answer(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in ("0", "1"):
        assert run("task-state", "set", "k", "1", *SCOPE, "--map-index", index)[0] == 0
    code, _, err = run("task-state", "clear", *SCOPE, "--all-map-indices")
    assert code == 2
    assert "needs --yes when stdin is not a terminal" in err
    assert json.loads(run("--json", "task-state", "list", *SCOPE)[1]) != []  # kept

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, out, err = run("task-state", "clear", *SCOPE, "--all-map-indices")
    assert code == 1
    assert "Delete every key of etl / r1 / load (every map index)?" in out
    assert "aborted" in err
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, out, _ = run("task-state", "clear", *SCOPE, "--all-map-indices")
    assert code == 0
    assert "Cleared 2 keys of etl / r1 / load (every map index)." in out
    assert json.loads(run("--json", "task-state", "list", *SCOPE)[1]) == []


def test_db_downgrade_asks_first(run: Run) -> None:
    assert run("db", "upgrade")[0] == 0
    code, _, err = run("db", "downgrade", "base")
    assert code == 2
    assert "db downgrade needs --yes" in err
    assert run("db", "check")[0] == 0  # nothing dropped
    code, out, _ = run("db", "downgrade", "base", "-y")
    assert code == 0
    assert out.endswith("-> (none)\n")


def test_deactivating_an_unknown_asset_is_an_error(run: Run) -> None:
    assert run("asset-state", "set", "wm", "1", "--asset", "orders")[0] == 0
    code, _, err = run("assets", "deactivate", "orders", "ordres")
    assert code == 1
    assert "no registered asset named 'ordres'" in err
    assert "assets list" in err
    listed = json.loads(run("--json", "assets", "list")[1])
    assert [(a["name"], a["active"]) for a in listed] == [("orders", True)]  # untouched
    assert run("assets", "deactivate", "orders")[1] == "Deactivated 1 asset.\n"
    again = run("assets", "deactivate", "orders")[1]
    assert again == "Deactivated 0 assets; already inactive: orders.\n"


def test_task_state_list_for_a_run_or_a_dag(run: Run) -> None:
    for run_id, task in (("r1", "load"), ("r1", "extract"), ("r2", "load")):
        args = ("--dag", "etl", "--run", run_id, "--task", task)
        assert run("task-state", "set", "k", f'"{run_id}-{task}"', *args)[0] == 0
    assert (
        run("task-state", "set", "k", "1", "--dag", "other", "--run", "r1", "--task", "t")[0] == 0
    )

    def listed(*args: str) -> list[tuple[str, str, str]]:
        code, out, _ = run("--json", "task-state", "list", "--dag", "etl", *args)
        assert code == 0
        return [(r.get("run_id", "-"), r.get("task_id", "-"), r["value"]) for r in json.loads(out)]

    assert listed() == [("r1", "extract", "r1-extract"), ("r1", "load", "r1-load"),
                        ("r2", "load", "r2-load")]  # fmt: skip
    assert listed("--run", "r2") == [("r2", "load", "r2-load")]
    assert listed("--run", "r1", "--task", "load") == [("-", "-", "r1-load")]
    code, _, err = run("task-state", "list", "--dag", "etl", "--task", "load")
    assert (code, "--task needs --run" in err) == (2, True)
    code, out, _ = run("task-state", "list", "--dag", "etl")
    assert code == 0
    assert "etl / r1 / extract" in out
    assert "etl / r2 / load" in out


def test_cleanup_dry_run_lists_keys_and_assets(run: Run) -> None:
    for index in ("-1", "3"):
        args = ("task-state", "set", "k", "1", *SCOPE, "--map-index", index)
        assert run(*args, "--retention-hours", "0.0000001")[0] == 0
    assert run("asset-state", "set", "wm", "1", "--asset", "orders")[0] == 0
    assert run("asset-state", "set", "cursor", "2", "--asset", "orders")[0] == 0
    assert run("assets", "deactivate", "orders")[0] == 0
    code, out, _ = run("cleanup", "--dry-run")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "etl / r1 / load"
    assert lines[2] == "etl / r1 / load (map index 3)"
    assert "Inactive assets the sweep would empty" in out
    assert "    orders  2 keys" in lines
    assert lines[-1] == (
        "Dry run: 2 expired task-state keys and 2 asset-state keys of 1 inactive asset "
        "would be deleted."
    )
    code, out, _ = run("--json", "cleanup", "--dry-run")
    payload = json.loads(out)
    assert (payload["would_delete"], len(payload["rows"])) == (4, 2)
    assert payload["assets"] == [{"keys": 2, "name": "orders", "uri": None}]
    code, out, _ = run("cleanup")
    assert out == (
        "Deleted 2 expired task-state keys in 1 batch and 2 asset-state keys of inactive assets.\n"
    )


def test_help_version_and_groups(run: Run) -> None:
    code, out, _ = run("--version", url=False)
    assert code == 0
    assert re.fullmatch(r"statestore \S+\n", out)
    for group in ("db", "task-state", "asset-state", "assets", "config", "objects"):
        code, out, err = run(group, url=False)
        assert (code, err) == (0, ""), group
        assert f"Usage: statestore {group} [OPTIONS] COMMAND" in out
    code, out, _ = run("task-state", "set", "--help", url=False)
    assert code == 0
    assert "<bool>" not in out
    assert "--dag DAG --run RUN --task TASK" in out  # required options in the usage line
    assert "[required]" in out
    assert "[default: -1]" not in out


def test_demo_twice_in_one_folder(run: Run, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    code, out, _ = run("demo", "--dir", str(folder), url=False)
    assert code == 0
    assert "starting the story fresh" not in out
    database = (folder / "demo.db").absolute()
    assert f"statestore --url 'sqlite:///{database}' task-state list --dag spark_job_dag" in out
    code, out, _ = run("--json", "demo", "--dir", str(folder), url=False)
    assert code == 0
    report = json.loads(out)
    assert report["fresh_start"] is True
    assert report["external_job"] == {"job_id": "spark-job-1", "submitted": 1}
    assert report["checkpoint"] == {"pages_loaded": 10}
    assert f"statestore --url 'sqlite:///{database}' assets list" in report["inspect"]
