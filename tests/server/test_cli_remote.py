"""The ``statestore`` command against a real ``statestore serve`` process.

Every command runs as a subprocess with ``--url http://... --token-file F`` (an admin
token unless said otherwise), the way an operator runs it; what it changed is checked
in the database directly. Maintenance (cleanup, its dry run, the sweep) goes through
the server's admin routes; the schema commands that cannot work through a server say
so in one line and touch no database; ``db check`` asks the server's ``/readyz``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from statestore import AssetScope, StateStore, TaskScope
from statestore.cleanup import iter_expired_task_states
from statestore.metastore import upgrade
from tests.integration.serve_command import Served, start_serve
from tests.server.conftest import ADMIN, Keys, Mint, task_grant

pytest.importorskip("uvicorn", reason="the server extra is not installed")

pytestmark = pytest.mark.slow  # a subprocess per command (~1 s each on a quiet machine)

COMMAND_TIMEOUT_S = 60
EXPIRED = TaskScope("etl", "old-run", "load")
KEPT = TaskScope("etl", "new-run", "load")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[tuple[Served, str]]:
    workdir = tmp_path_factory.mktemp("cli-remote")
    url = f"sqlite:///{workdir / 'state.db'}"
    upgrade(url)
    server = start_serve(url, workdir, keys.public_file)
    try:
        yield server, url
    finally:
        server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()


@pytest.fixture
def direct(served: tuple[Served, str]) -> Iterator[StateStore]:
    """The server's database, opened directly; its state emptied after the test.

    The registry's rows stay (made active again): the live server remembers asset ids,
    and a deleted asset's id could be handed out again on SQLite."""
    with StateStore(served[1]) as store:
        yield store
        from sqlalchemy import text

        backend = store.primary_backend
        with backend.engine.begin() as conn:  # type: ignore[attr-defined]
            for table in ("statestore_asset_state", "statestore_task_state"):
                conn.execute(text(f"DELETE FROM {table}"))
            conn.execute(text("UPDATE statestore_asset SET active = :on"), {"on": True})


def _cli(
    served: tuple[Served, str], token: str, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STATESTORE")}
    base = [sys.executable, "-m", "statestore", "--url", served[0].url,
            "--token-file", str(token_file)]  # fmt: skip
    return subprocess.run(
        [*base, *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
        env=env, cwd=tmp_path, check=False,
    )  # fmt: skip


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def test_state_and_asset_commands(
    served: tuple[Served, str], direct: StateStore, mint: Mint, tmp_path: Path
) -> None:
    admin = mint(ADMIN)
    task = ["--dag", "etl", "--run", "new-run", "--task", "load"]
    _ok(_cli(served, admin, tmp_path, "task-state", "set", *task, "cursor", '{"page": 3}'))
    _ok(_cli(served, admin, tmp_path, "asset-state", "set", "--asset", "orders", "wm", '"2026"'))
    got = json.loads(_ok(_cli(served, admin, tmp_path, "--json", "task-state", "get", *task,
                              "cursor")))  # fmt: skip
    assert got == {"key": "cursor", "found": True, "value": {"page": 3}}
    listed = json.loads(_ok(_cli(served, admin, tmp_path, "--json", "task-state", "list", *task)))
    assert [(r["key"], r["value"], r["version"]) for r in listed] == [("cursor", {"page": 3}, 1)]
    assert listed[0]["updated_by"].startswith("statestore cli")
    assets = json.loads(_ok(_cli(served, admin, tmp_path, "--json", "asset-state", "list",
                                 "--asset", "orders")))  # fmt: skip
    assert [(r["key"], r["value"]) for r in assets] == [("wm", "2026")]
    _ok(_cli(served, admin, tmp_path, "assets", "deactivate", "orders"))
    assert [a.name for a in direct.list_assets(active=False)] == ["orders"]
    _ok(_cli(served, admin, tmp_path, "assets", "activate", "orders"))
    assert direct.list_assets(active=False) == []
    assert direct.task_state(KEPT).get("cursor") == {"page": 3}


def _seed(direct: StateStore) -> None:
    """One expired task-state key, one kept; an inactive asset with state, an active one."""
    backend = direct.primary_backend
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    backend.set(EXPIRED, "stale", '"old"', expires_at=past)
    direct.task_state(KEPT).set("fresh", 1)
    direct.asset_state("gone").set("wm", 1)
    direct.asset_state("live").set("wm", 2)
    assert direct.deactivate_assets("gone") == 1


def test_cleanup_dry_run_then_cleanup_through_the_server(
    served: tuple[Served, str], direct: StateStore, mint: Mint, tmp_path: Path
) -> None:
    _seed(direct)
    admin = mint(ADMIN)
    dry = json.loads(_ok(_cli(served, admin, tmp_path, "--json", "cleanup", "--dry-run")))
    assert dry["dry_run"] is True
    assert dry["skipped_reason"] is None
    assert dry["would_delete"] == 2  # the expired key and the inactive asset's key
    assert [(r["run_id"], r["key"]) for r in dry["rows"]] == [("old-run", "stale")]
    assert [(a["name"], a["keys"]) for a in dry["assets"]] == [("gone", 1)]
    text = _ok(_cli(served, admin, tmp_path, "cleanup", "--dry-run"))
    assert "stale" in text
    assert "1 expired task-state key and 1 asset-state key of 1 inactive asset" in text
    assert [r.key for r in iter_expired_task_states(direct)] == ["stale"]  # nothing deleted
    assert [(a.name, a.keys) for a in direct.list_assets(active=False)] == [("gone", 1)]

    report = json.loads(_ok(_cli(served, admin, tmp_path, "--json", "cleanup-task-states",
                                 "--batch-size", "1")))  # fmt: skip
    assert (report["deleted"], report["batches"], report["dry_run"]) == (1, 1, False)
    assert list(iter_expired_task_states(direct)) == []
    assert direct.task_state(KEPT).get("fresh") == 1
    swept = json.loads(_ok(_cli(served, admin, tmp_path, "--json", "sweep-asset-states")))
    assert swept["deleted"] == 1
    assert direct.asset_state(AssetScope(name="gone")).get("wm") is None
    assert direct.asset_state("live").get("wm") == 2
    again = json.loads(_ok(_cli(served, admin, tmp_path, "--json", "cleanup")))
    assert (again["deleted"], again["skipped_reason"]) == (0, None)


def test_maintenance_needs_an_admin_token(
    served: tuple[Served, str], direct: StateStore, mint: Mint, tmp_path: Path
) -> None:
    _seed(direct)
    for command in (["cleanup"], ["cleanup", "--dry-run"], ["sweep-asset-states"]):
        refused = _cli(served, mint(task_grant()), tmp_path, *command)
        assert refused.returncode == 1, refused
        assert refused.stderr.startswith("statestore: error: "), refused.stderr
        assert refused.stderr.count("\n") == 1
        assert "AccessDenied" in refused.stderr or "admin" in refused.stderr, refused.stderr
    assert [r.key for r in iter_expired_task_states(direct)] == ["stale"]


def test_schema_commands_through_a_server(
    served: tuple[Served, str], mint: Mint, tmp_path: Path
) -> None:
    admin = mint(ADMIN)
    for command in (["db", "upgrade"], ["db", "downgrade", "base", "--yes"], ["db", "current"]):
        refused = _cli(served, admin, tmp_path, *command)
        assert refused.returncode == 1, refused
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert "cannot run through a state server" in refused.stderr
        assert served[0].url in refused.stderr
    assert list(tmp_path.glob("*.db")) == []  # no database was opened in its place
    check = json.loads(_ok(_cli(served, admin, tmp_path, "--json", "db", "check")))
    assert check == {"server": served[0].url, "up_to_date": True}


def test_the_library_cleans_up_through_the_server(
    served: tuple[Served, str], direct: StateStore, mint: Mint
) -> None:
    """``statestore.cleanup`` on a store that is a server's URL: the same reports as on
    the database, sync; ``now`` cannot be given (the server's clock decides)."""
    from statestore import UnsupportedOperationError
    from statestore.cleanup import cleanup, cleanup_task_states

    _seed(direct)
    with StateStore(served[0].url, token=mint(ADMIN)) as remote:
        [row] = list(iter_expired_task_states(remote))
        assert (row.dag_id, row.run_id, row.task_id, row.key) == ("etl", "old-run", "load", "stale")
        assert row.expires_at < datetime.now(timezone.utc)
        seen: list[int] = []
        dry = cleanup(remote, dry_run=True, progress=seen.append)
        assert (dry.would_delete, dry.deleted, dry.dry_run) == (2, 0, True)
        assert seen == [1]  # the task-state part, reported once
        with pytest.raises(UnsupportedOperationError, match="own clock"):
            cleanup_task_states(remote, now=datetime.now(timezone.utc))
        done = cleanup(remote)
        assert (done.deleted, done.dry_run, done.skipped_reason) == (2, False, None)
    assert list(iter_expired_task_states(direct)) == []
    assert direct.list_assets(active=False)[0].keys == 0


async def test_the_async_twins_clean_up_through_the_server(
    served: tuple[Served, str], direct: StateStore, mint: Mint
) -> None:
    from statestore.backends.http import HttpStateBackend

    _seed(direct)
    backend = HttpStateBackend(served[0].url, token=mint(ADMIN))
    try:
        rows = [row.key async for row in backend.aiter_expired_task_states()]
        assert rows == ["stale"]
        dry = await backend.acleanup_task_states(dry_run=True)
        assert (dry.would_delete, dry.dry_run) == (1, True)
        assert (await backend.asweep_asset_states(dry_run=True)).would_delete == 1
        assert (await backend.acleanup_task_states(batch_size=5)).deleted == 1
        assert (await backend.asweep_asset_states()).deleted == 1
    finally:
        await backend.aclose()
    assert list(iter_expired_task_states(direct)) == []


def _seed_listing(direct: StateStore) -> None:
    """Keys across tasks, runs, map indices and map keys; one expired, one elsewhere."""
    for scope, key, value in (
        (KEPT, "a", 1),
        (TaskScope("etl", "new-run", "load", 2), "b", 2),
        (TaskScope("etl", "new-run", "load", map_key="eu"), "c", 3),
        (TaskScope("etl", "new-run", "extract"), "d", 4),
        (TaskScope("etl", "other-run", "load"), "e", 5),
        (TaskScope("other-dag", "new-run", "load"), "f", 6),
    ):
        direct.task_state(scope).set(key, value)
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    direct.primary_backend.set(EXPIRED, "stale", '"old"', expires_at=past)


LISTINGS: list[tuple[tuple[str | None, ...], dict[str, object], list[str]]] = [
    (("etl",), {}, ["a", "b", "c", "d", "e"]),
    (("etl", "new-run"), {}, ["a", "b", "c", "d"]),
    (("etl", "new-run", "load"), {}, ["a", "b", "c"]),
    (("etl", "new-run", "load"), {"map_index": 2}, ["b"]),
    (("etl", "new-run", "load"), {"map_key": "eu"}, ["c"]),
    (("nobody",), {}, []),
]


async def test_task_state_listing_through_the_server(
    served: tuple[Served, str], direct: StateStore, mint: Mint
) -> None:
    """``list_task_keys`` through the server's admin route returns exactly what the
    metastore returns (values, versions, instants to the microsecond, each row's task),
    for a dag, a run, a task and one instance of it; the async twin too. A task token
    is refused, and an incomplete scope is the typed error, before any read."""
    from statestore import AccessDeniedError, InvalidScopeError
    from statestore.backends.http import HttpStateBackend
    from statestore.metastore.maintenance import list_task_keys
    from statestore.retention import utcnow

    _seed_listing(direct)
    backend = HttpStateBackend(served[0].url, token=mint(ADMIN))
    engine = direct.primary_backend.engine  # type: ignore[attr-defined]
    try:
        for ids, options, keys in LISTINGS:
            remote = backend.list_task_keys(*ids, **options)  # type: ignore[arg-type]
            with engine.connect() as conn:
                local = list_task_keys(conn, *ids, now=utcnow(), **options)  # type: ignore[arg-type]
            assert remote == local, ids
            assert sorted(row.key for row in remote) == keys, ids  # (NULL map keys sort
            # first on SQLite, last on PostgreSQL: the order itself is the metastore's)
        whole = await backend.alist_task_keys("etl", "new-run")
        assert {(row.task, row.map_index, row.map_key, row.key) for row in whole} == {
            (("etl", "new-run", "extract"), -1, None, "d"),
            (("etl", "new-run", "load"), -1, None, "a"),
            (("etl", "new-run", "load"), 2, None, "b"),
            (("etl", "new-run", "load"), -1, "eu", "c"),
        }
        assert whole[0].task == ("etl", "new-run", "extract")  # by task, then instance
        assert whole[0].value == "4"
        assert whole[0].version == 1
        with pytest.raises(InvalidScopeError, match="task_id needs run_id"):
            backend.list_task_keys("etl", task_id="load")
        with pytest.raises(InvalidScopeError, match="need task_id"):
            await backend.alist_task_keys("etl", "new-run", map_index=2)
    finally:
        await backend.aclose()
        backend.close()
    task_only = HttpStateBackend(served[0].url, token=mint(task_grant(KEPT)))
    try:
        with pytest.raises(AccessDeniedError):
            task_only.list_task_keys("etl")
    finally:
        task_only.close()


def test_task_state_list_command_through_the_server(
    served: tuple[Served, str], direct: StateStore, mint: Mint, tmp_path: Path
) -> None:
    """``task-state list`` of a whole run prints the same through the server as on the
    database itself (the JSON, and the tables)."""
    _seed_listing(direct)
    admin = mint(ADMIN)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STATESTORE")}
    for extra in (["--json"], []):
        args = [*extra, "task-state", "list", "--dag", "etl", "--run", "new-run"]
        remote = _ok(_cli(served, admin, tmp_path, *args))
        local = _ok(subprocess.run(
            [sys.executable, "-m", "statestore", "--url", served[1], *args],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, env=env,
            cwd=tmp_path, check=False,
        ))  # fmt: skip
        if extra:  # the JSON: the same to the microsecond
            assert remote == local
            assert sorted(row["key"] for row in json.loads(remote)) == ["a", "b", "c", "d"]
        else:  # the tables: the same but for ages ("3s ago"), read a moment apart
            assert _ages_out(remote) == _ages_out(local)
            assert "etl / new-run / load" in remote
            assert "etl / new-run / extract" in remote


def _ages_out(text: str) -> str:
    """Ages read out with the padding after them: "9s ago  " and "10s ago " are one."""
    return re.sub(r"\b\d+[smhd]\b( \w+)? *", r"N\1 ", text)


def test_objects_gc_through_the_server(
    served: tuple[Served, str], direct: StateStore, mint: Mint, tmp_path: Path
) -> None:
    """``objects gc`` with a server's URL: this process lists the object store, the
    server says which references its rows hold. An orphan (its row deleted, its object
    left: a crash between the two) is found and deleted; referenced objects stay."""
    from statestore import AccessDeniedError, InvalidValueError, StateStoreConfig
    from statestore.backends.http import HttpStateBackend
    from statestore.backends.objectstore import object_ref
    from statestore.cleanup import gc_objects

    objects = f"file://{tmp_path / 'objects'}"
    workers = {"state_backend": "statestore.backends.objectstore.ObjectStoreStateBackend",
               "object_store_url": objects}  # fmt: skip
    config = StateStoreConfig(client={"url": served[0].url, "token": mint(ADMIN)},
                              workers=workers)  # fmt: skip
    with StateStore(config=config) as remote:
        remote.task_state(KEPT).set("gone", {"big": "x" * 1000})
        remote.task_state(KEPT).set("kept", {"big": "y" * 1000})
        remote.asset_state("orders").set("wm", {"big": "z" * 1000})
        direct.primary_backend.delete(KEPT, "gone")  # the row goes; its object stays
        assert gc_objects(remote, dry_run=True).orphans == []  # inside the grace period
        dry = gc_objects(remote, dry_run=True, grace=timedelta(0))
        assert (dry.scanned, dry.orphans, dry.deleted) == (3, [object_ref(KEPT, "gone")], 0)
        done = gc_objects(remote, grace=timedelta(0))
        assert (done.orphans, done.deleted) == ([object_ref(KEPT, "gone")], 1)
        assert gc_objects(remote, dry_run=True, grace=timedelta(0)).orphans == []
        assert remote.task_state(KEPT).get("kept") == {"big": "y" * 1000}
        assert remote.asset_state("orders").get("wm") == {"big": "z" * 1000}
    admin = HttpStateBackend(served[0].url, token=mint(ADMIN))
    task_only = HttpStateBackend(served[0].url, token=mint(task_grant(KEPT)))
    try:
        kept = object_ref(KEPT, "kept")
        assert admin.referenced_objects([kept, object_ref(KEPT, "gone")]) == {kept}
        with pytest.raises(InvalidValueError, match="not an object reference"):
            admin.referenced_objects(["../../etc/passwd"])
        with pytest.raises(AccessDeniedError):
            task_only.referenced_objects([kept])
    finally:
        admin.close()
        task_only.close()


async def test_objects_referenced_async_through_the_server(
    served: tuple[Served, str], direct: StateStore, mint: Mint
) -> None:
    from statestore.backends.http import HttpStateBackend
    from statestore.backends.objectstore import object_ref
    from statestore.backends.worker import ref_envelope

    direct.primary_backend.set(KEPT, "k", ref_envelope(object_ref(KEPT, "k")))
    backend = HttpStateBackend(served[0].url, token=mint(ADMIN))
    try:
        refs = [object_ref(KEPT, "k"), object_ref(KEPT, "other")]
        assert await backend.areferenced_objects(refs) == {object_ref(KEPT, "k")}
        assert await backend.areferenced_objects([]) == set()
    finally:
        await backend.aclose()
