"""The migrations are the schema: single head, reversible, identical to ``tables.py``."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL

from statestore.exceptions import SchemaOutOfDateError
from statestore.metastore import current_revision, downgrade, head_revision, upgrade
from statestore.metastore.schema import MIGRATIONS_DIR, _alembic_config, check_schema
from statestore.metastore.tables import VERSION_TABLE, metadata

OUR_TABLES = {"statestore_task_state", "statestore_asset", "statestore_asset_state"}


def test_single_head() -> None:
    scripts = ScriptDirectory.from_config(_alembic_config())
    assert len(scripts.get_heads()) == 1
    assert scripts.get_current_head() == head_revision()


def _tables(url: URL) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(db_url: URL) -> None:
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    assert OUR_TABLES | {VERSION_TABLE} <= _tables(db_url)
    downgrade(db_url, "base")
    assert current_revision(db_url) is None
    assert not OUR_TABLES & _tables(db_url)
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()


def test_upgrade_twice_is_a_no_op(db_url: URL) -> None:
    upgrade(db_url)
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()


def _on_this_dialect(obj: Any, reflected: bool, conn: Any) -> bool:
    # Alembic's comparison ignores ddl_if(): a declared index that this dialect does not
    # create (SQLite's task-state indexes since 0006) is not expected in the database.
    ddl_if = getattr(obj, "_ddl_if", None)
    return reflected or ddl_if is None or bool(ddl_if._should_execute(None, obj, conn))


def test_migrated_schema_matches_tables(migrated_url: URL) -> None:
    engine = create_engine(migrated_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "version_table": VERSION_TABLE,
                    "include_object": lambda obj, name, type_, reflected, _other: (
                        _on_this_dialect(obj, reflected, conn)
                        and (
                            type_ != "table"
                            or bool(
                                name and name.startswith("statestore_") and name != VERSION_TABLE
                            )
                        )
                    ),
                },
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_check_schema_names_the_command(db_url: URL) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn, pytest.raises(SchemaOutOfDateError) as info:
            check_schema(conn)
        assert re.search(r"statestore --url '[^']+' db upgrade", str(info.value))
    finally:
        engine.dispose()


def test_coexists_with_host_tables_and_alembic_version(db_url: URL) -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('host_rev_1')"))
            conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
        upgrade(db_url)
        downgrade(db_url, "base")
        upgrade(db_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
                "host_rev_1"
            )
        assert {"orders", "alembic_version"} <= _tables(db_url)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_wheel_contains_migrations(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("statestore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for path in MIGRATIONS_DIR.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(MIGRATIONS_DIR.parents[1]).as_posix()
            assert f"statestore/{relative}" in names
    assert "statestore/py.typed" in names


def _upgrade_in_process(url: str) -> None:
    upgrade(url)


def test_concurrent_upgrades_from_several_processes(db_url: URL) -> None:
    import multiprocessing

    url = db_url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_upgrade_in_process, args=(url,)) for _ in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    assert current_revision(db_url) == head_revision()


def test_upgrade_from_0001_keeps_every_row(db_url: URL) -> None:
    """A database filled by the first release upgrades to head without losing a row;
    old rows start at version 1 with no ``updated_by``."""
    from datetime import datetime, timezone

    from sqlalchemy import func, insert, select

    from statestore import StateStore, TaskScope
    from statestore.metastore.digests import key_digest, ref_digest, task_digest, task_row_id
    from statestore.metastore.tables import asset, asset_state, task_state

    upgrade(db_url, "0001")
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    scopes = [TaskScope("dag", f"run{i}", "task", i % 3 - 1) for i in range(30)]
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:  # the columns revision 0001 has, nothing newer
            conn.execute(
                insert(task_state),
                [
                    {"row_id": task_row_id(s, "k"), "task_digest": task_digest(s),
                     "dag_id": s.dag_id, "run_id": s.run_id, "task_id": s.task_id,
                     "map_index": s.map_index, "key": "k", "value": f'"{s.run_id}"',
                     "expires_at": None, "updated_at": now}
                    for s in scopes
                ],
            )  # fmt: skip
            conn.execute(
                insert(asset).values(name="orders", name_digest=ref_digest("orders"),
                                     active=True, created_at=now, updated_at=now)
            )  # fmt: skip
            asset_id = conn.execute(select(asset.c.id)).scalar_one()
            conn.execute(
                insert(asset_state).values(asset_id=asset_id, key_digest=key_digest("wm"),
                                           key="wm", value='"2026-10-31"', updated_at=now)
            )  # fmt: skip
        upgrade(db_url)
        assert current_revision(db_url) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(task_state)).scalar() == 30
        with StateStore(db_url.render_as_string(hide_password=False)) as store:
            for scope in scopes:
                item = store.task_state(scope).get_item("k")
                assert item is not None
                assert (item.value, item.version, item.updated_by) == (scope.run_id, 1, None)
            watermark = store.asset_state("orders")
            assert watermark.get("wm") == "2026-10-31"
            watermark.set("wm", "2026-11-01", if_version=1)
            item = watermark.get_item("wm")
            assert item is not None
            assert item.version == 2
    finally:
        engine.dispose()
