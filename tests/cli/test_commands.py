"""The real ``statestore`` command, in a subprocess, on every database."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import URL

from tests.cli.conftest import Cli

SCOPE = ["--dag", "etl", "--run", "r1", "--task", "load"]


def _url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def test_task_and_asset_state_round_trip(cli: Cli, migrated_url: URL) -> None:
    url = _url(migrated_url)

    def run(*args: str) -> object:
        result = cli("--url", url, "--json", *args)
        assert result.code == 0, result.stderr
        return result.json()

    run("task-state", "set", "job", '"spark-1"', *SCOPE, "--never-expire")
    run("task-state", "set", "rows", "42", *SCOPE, "--map-index", "3", "--retention-hours", "1")
    assert run("task-state", "get", "job", *SCOPE) == {
        "key": "job",
        "found": True,
        "value": "spark-1",
    }
    listed = run("task-state", "list", *SCOPE)
    assert [(r["map_index"], r["key"], r["value"]) for r in listed] == [  # type: ignore[attr-defined]
        (-1, "job", "spark-1"),
        (3, "rows", 42),
    ]
    assert listed[0]["expires_at"] is None  # type: ignore[index]
    assert listed[0]["version"] == 1  # type: ignore[index]
    assert listed[0]["updated_by"].startswith("statestore cli (")  # type: ignore[index]
    run("task-state", "set", "job", '"spark-2"', *SCOPE, "--never-expire")
    assert run("task-state", "list", *SCOPE)[0]["version"] == 2  # type: ignore[index]
    run("task-state", "delete", "job", *SCOPE)
    absent_json = cli("--url", url, "--json", "task-state", "get", "job", *SCOPE)
    assert absent_json.code == 1  # absent: exit 1 in both modes
    assert absent_json.json() == {"found": False, "key": "job", "value": None}
    absent = cli("--url", url, "task-state", "get", "job", *SCOPE)
    assert (absent.code, absent.stdout) == (1, ""), absent.stderr
    run("task-state", "clear", *SCOPE, "--all-map-indices", "--yes")
    assert run("task-state", "list", *SCOPE) == []

    run("asset-state", "set", "wm", '{"day": "2026-11-24"}', "--asset", "orders")
    assert run("asset-state", "get", "wm", "--asset", "orders")["value"] == {  # type: ignore[index]
        "day": "2026-11-24"
    }
    assert [a["name"] for a in run("assets", "list")] == ["orders"]  # type: ignore[attr-defined]
    assert run("assets", "deactivate", "orders") == {"deactivated": 1, "unchanged": []}
    failed = cli("--url", url, "asset-state", "set", "wm", "1", "--asset", "orders")
    assert failed.code == 1
    assert "inactive" in failed.stderr
    assert run("sweep-asset-states", "--dry-run")["would_delete"] == 1  # type: ignore[index]
    assert run("cleanup")["deleted"] == 1  # type: ignore[index]
    assert run("asset-state", "list", "--asset", "orders") == []
    assert run("assets", "activate", "orders") == {"activated": 1, "unchanged": []}


def test_cleanup_dry_run_json_lists_rows(cli: Cli, migrated_url: URL) -> None:
    url = _url(migrated_url)
    for i in range(3):
        args = ("task-state", "set", f"k{i}", "1", *SCOPE, "--retention-hours", "0.0000001")
        assert cli("--url", url, *args).code == 0
    dry = cli("--url", url, "--json", "cleanup-task-states", "--dry-run")
    assert dry.code == 0, dry.stderr
    payload = dry.json()
    assert payload["would_delete"] == 3
    assert [row["key"] for row in payload["rows"]] == ["k0", "k1", "k2"]
    human = cli("--url", url, "cleanup-task-states", "--dry-run")
    assert "etl / r1 / load" in human.stdout
    assert "3 expired task-state keys would be deleted" in human.stdout
    done = cli("--url", url, "--json", "cleanup-task-states", "--batch-size", "2")
    assert done.json()["deleted"] == 3
    assert done.json()["batches"] == 2
    again = cli("--url", url, "cleanup-task-states")
    assert "Deleted 0 expired task-state keys in 0 batches." in again.stdout


def test_usage_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    cases = [
        (("task-state", "set", "k", "{bad", *SCOPE), "not valid JSON"),
        (("task-state", "get", "k", "--dag", "d"), "Missing option '--run'"),
        (
            ("task-state", "get", "k", "--dag", "", "--run", "r", "--task", "t"),
            "--dag must not be empty",
        ),
        (("asset-state", "get", "k"), "missing --asset"),
        (
            ("task-state", "set", "k", "1", *SCOPE, "--never-expire", "--retention-hours", "1"),
            "not both",
        ),
        (("task-state", "get", "k", *SCOPE, "--map-index", "x"), "valid integer"),
        (("no-such-command",), "No such command"),
    ]
    for args, message in cases:
        result = cli("--url", url, *args)
        assert result.code == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_unknown_asset_without_auto_registration(cli: Cli, tmp_path: Path) -> None:
    cli.env["STATESTORE__STATE_STORE__AUTO_REGISTER_ASSETS"] = "false"
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = cli("--url", url, "asset-state", "set", "k", "1", "--asset", "ghost")
    assert result.code == 1
    assert "not registered" in result.stderr


def test_server_not_migrated(cli: Cli, db_url: URL, dialect: str) -> None:
    if dialect == "sqlite":
        cli.env["STATESTORE__DATABASE__AUTO_MIGRATE_SQLITE"] = "false"
    result = cli("--url", _url(db_url), "task-state", "get", "k", *SCOPE)
    assert result.code == 1
    assert "db upgrade" in result.stderr
    assert "--url" in result.stderr


def test_database_down_masks_password(cli: Cli) -> None:
    result = cli("--url", "mysql+pymysql://root:topsecret@127.0.0.1:1/x", "cleanup")
    assert result.code == 1
    assert "unavailable" in result.stderr
    assert "topsecret" not in result.stderr + result.stdout


def test_custom_backend_is_not_cleaned(cli: Cli) -> None:
    cli.env["STATESTORE__STATE_STORE__BACKEND"] = "statestore.InMemoryStateBackend"
    result = cli("cleanup")
    assert result.code == 0
    assert "explicitly not cleaned up" in result.stdout
    as_json = cli("--json", "cleanup-task-states")
    assert as_json.code == 0
    assert "not the metastore" in as_json.json()["skipped_reason"]


def test_config_show_masks_and_names_sources(cli: Cli, tmp_path: Path) -> None:
    cli.env["STATESTORE__DATABASE__URL"] = "postgresql://app:hunter2@db/app"
    config = tmp_path / "custom.cfg"
    config.write_text("[state_store]\nmax_value_bytes = 1000\n")
    cli.env["STATESTORE_CONFIG"] = str(config)
    result = cli("--json", "config", "show")
    assert result.code == 0, result.stderr
    shown = result.json()
    assert "hunter2" not in result.stdout
    assert shown["database"]["url"] == {
        "value": "postgresql://app:***@db/app",
        "source": "env STATESTORE__DATABASE__URL",
    }
    assert shown["state_store"]["max_value_bytes"] == {"value": 1000, "source": f"file {config}"}
    assert shown["state_store"]["clear_on_success"]["source"] == "default"
    bad = cli("config", "show")
    assert bad.code == 0
    cli.env["STATESTORE__STATE_STORE__MAX_VALUE_BYTES"] = "-1"
    broken = cli("config", "show")
    assert broken.code == 1
    assert "STATESTORE__STATE_STORE__MAX_VALUE_BYTES" in broken.stderr


def test_demo_runs_and_reports(cli: Cli, tmp_path: Path) -> None:
    result = cli("--json", "demo", "--dir", str(tmp_path / "demo"))
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["external_job"] == {"job_id": "spark-job-1", "submitted": 1}
    assert report["checkpoint"] == {"pages_loaded": 10}
    assert report["watermark"] == {"rows": 9, "watermark": "2026-11-23"}
    assert report["retention"] == {"deleted": 1, "kept": "spark-job-1"}
    assert (tmp_path / "demo" / "demo.db").exists()
    human = cli("demo")
    assert human.code == 0
    assert "All four use cases behaved as promised" in human.stdout


def test_module_and_console_script_agree(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == 0
    for command in ("db", "cleanup-task-states", "sweep-asset-states", "cleanup", "task-state",
                    "asset-state", "assets", "config", "demo"):  # fmt: skip
        assert command in result.stdout
    assert json.loads(cli("--json", "config", "show").stdout)["database"]


def test_objects_gc(cli: Cli, tmp_path: Path) -> None:
    cli.env["STATESTORE__WORKERS__STATE_BACKEND"] = (
        "statestore.backends.objectstore.ObjectStoreStateBackend"
    )
    cli.env["STATESTORE__WORKERS__OBJECT_STORE_URL"] = f"file://{tmp_path / 'objects'}"
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert cli("--url", url, "task-state", "set", "k", '"v"', *SCOPE).code == 0
    assert cli("--url", url, "task-state", "set", "gone", '"v"', *SCOPE).code == 0
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:  # a crash after the row went, before the object did
        conn.execute(text("DELETE FROM statestore_task_state WHERE key = 'gone'"))
    engine.dispose()
    dry = cli("--url", url, "--json", "objects", "gc", "--dry-run", "--grace-hours", "0")
    assert dry.code == 0, dry.stderr
    assert dry.json()["scanned"] == 2
    assert len(dry.json()["orphans"]) == 1
    done = cli("--url", url, "objects", "gc", "--grace-hours", "0")
    assert done.code == 0
    assert "1 orphan(s), deleted 1" in done.stdout
    assert cli("--url", url, "--json", "task-state", "get", "k", *SCOPE).json()["value"] == "v"
    del cli.env["STATESTORE__WORKERS__STATE_BACKEND"]
    nothing = cli("--url", url, "objects", "gc")
    assert nothing.code == 1
    assert "ObjectStoreStateBackend" in nothing.stderr


def test_provenance_of_a_task_written_watermark_shows_in_the_cli(
    cli: Cli, migrated_url: URL
) -> None:
    from statestore import StateStore, TaskScope

    url = _url(migrated_url)
    with StateStore(url) as store:
        writer = TaskScope("etl", "2026-11-29", "load", 2)
        store.asset_state("orders", updated_by=writer).set("wm", "2026-11-28")
    result = cli("--url", url, "--json", "asset-state", "list", "--asset", "orders")
    assert result.code == 0, result.stderr
    [row] = result.json()
    assert (row["updated_by"], row["version"]) == ("task etl/2026-11-29/load[2]", 1)
    table = cli("--url", url, "asset-state", "list", "--asset", "orders")
    assert "etl/2026-11-29/load" in table.stdout  # the table may shorten the rest


def test_keyed_mapped_instances_from_the_cli(cli: Cli, migrated_url: URL) -> None:
    from statestore import StateStore, TaskScope, map_key_for

    url = _url(migrated_url)
    key = map_key_for("s3://in/a.csv")
    with StateStore(url) as store:
        store.task_state(TaskScope("etl", "r1", "load", 4, map_key=key)).set("rows", 7)
    got = cli("--url", url, "--json", "task-state", "get", "rows", *SCOPE, "--map-key", key)
    assert got.code == 0, got.stderr
    assert got.json()["value"] == 7
    by_index = cli("--url", url, "--json", "task-state", "get", "rows", *SCOPE, "--map-index", "4")
    assert by_index.code == 1
    assert by_index.json()["found"] is False  # the keyed instance is not position 4's
    with StateStore(url) as store:
        store.task_state(TaskScope("etl", "r1", "load", 5)).set("rows", 9)  # not keyed
    listed = cli("--url", url, "--json", "task-state", "list", *SCOPE).json()
    assert {(r["map_index"], r["map_key"], r["value"]) for r in listed} == {
        (4, key, 7),
        (5, None, 9),
    }
    only = cli("--url", url, "--json", "task-state", "list", *SCOPE, "--map-key", key).json()
    assert [(r["map_key"], r["value"]) for r in only] == [(key, 7)]
    cli.env["COLUMNS"] = "200"  # wide enough that no cell folds
    table = cli("--url", url, "task-state", "list", *SCOPE)
    assert "map" in table.stdout
    assert key in table.stdout
    assert "-1" not in table.stdout  # "not mapped" is never shown as the sentinel
    cleared = cli("--url", url, "--json", "task-state", "clear", *SCOPE, "--map-key", key)
    assert cleared.code == 0, cleared.stderr
    with StateStore(url) as store:
        assert store.task_state(TaskScope("etl", "r1", "load", 0, map_key=key)).get("rows") is None
