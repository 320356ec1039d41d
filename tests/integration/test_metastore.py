"""Metastore behaviour beyond the shared contract: exactness, registry, schema, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from statestore import (
    BackendUnavailableError,
    InvalidScopeError,
    SchemaOutOfDateError,
    StateStore,
    StateStoreConfig,
    UnknownAssetError,
)
from statestore.metastore import MetastoreStateBackend, current_revision, head_revision
from statestore.scopes import AssetScope, TaskScope

TASK = TaskScope("dag", "run", "task")


def test_keys_and_ids_are_exact(migrated_url: URL) -> None:
    """Case, trailing spaces, 4-byte emoji and 512-char keys are distinct on every dialect
    (MySQL's default collations would fold the first two)."""
    backend = MetastoreStateBackend(migrated_url)
    keys = ["Key", "key", "KEY", "k", "k ", " k", "😀", "😁", "é", "e\u0301", "k" * 512, "k" * 511]
    try:
        for i, key in enumerate(keys):
            backend.set(TASK, key, str(i))
        assert [backend.get(TASK, key) for key in keys] == [str(i) for i in range(len(keys))]
        scopes = [
            TaskScope("Dag", "run", "task"),
            TaskScope("dag ", "run", "task"),
            TaskScope("d" * 250, "r" * 250, "t" * 250, 7),
        ]
        for i, scope in enumerate(scopes):
            backend.set(scope, "Key", f"scope{i}")
        assert [backend.get(s, "Key") for s in scopes] == [f"scope{i}" for i in range(3)]
        assert backend.get(TASK, "Key") == "0"
        for i, name in enumerate(["Orders", "orders", "orders ", "😀" * 375]):
            backend.set(AssetScope(name=name), "k", str(i))
        assert backend.get(AssetScope(name="orders"), "k") == "1"
        assert backend.get(AssetScope(name="😀" * 375), "k") == "3"
    finally:
        backend.close()


def test_values_round_trip_byte_exactly(migrated_url: URL) -> None:
    backend = MetastoreStateBackend(migrated_url)
    values = ['"😀 ünïcode \\u0000 \\n"', '{"a":[1,2.5,true,null]}', "x" * 200_000]
    try:
        for i, value in enumerate(values):
            backend.set(TASK, f"v{i}", value)
        assert [backend.get(TASK, f"v{i}") for i in range(len(values))] == values
    finally:
        backend.close()


def test_unmigrated_server_database_raises_schema_out_of_date(db_url: URL, dialect: str) -> None:
    backend = MetastoreStateBackend(db_url, auto_migrate_sqlite=False)
    try:
        with pytest.raises(SchemaOutOfDateError, match=r"statestore --url .* db upgrade"):
            backend.get(TASK, "k")
        with pytest.raises(SchemaOutOfDateError, match=r"statestore --url .* db upgrade"):
            backend.set(TASK, "k", "1")
    finally:
        backend.close()


async def test_unmigrated_database_raises_async(db_url: URL) -> None:
    backend = MetastoreStateBackend(db_url, auto_migrate_sqlite=False)
    try:
        with pytest.raises(SchemaOutOfDateError, match=r"statestore --url .* db upgrade"):
            await backend.aget(TASK, "k")
    finally:
        await backend.aclose()


def test_sqlite_migrates_itself_on_first_use(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    with StateStore(url) as store:
        store.task_state(TASK).set("k", 1)
        assert store.task_state(TASK).get("k") == 1
    assert current_revision(url) == head_revision()


async def test_sqlite_migrates_itself_on_first_async_use(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    async with StateStore(url) as store:
        await store.task_state(TASK).aset("k", 1)
        assert await store.task_state(TASK).aget("k") == 1
    assert current_revision(url) == head_revision()


def test_server_is_never_migrated_implicitly(db_url: URL, dialect: str) -> None:
    if dialect == "sqlite":
        pytest.skip("SQLite migrates itself by default")
    with (
        StateStore(db_url.render_as_string(hide_password=False)) as store,
        pytest.raises(SchemaOutOfDateError),
    ):
        store.task_state(TASK).set("k", 1)
    assert current_revision(db_url) is None


def test_unknown_asset_without_auto_registration(migrated_url: URL) -> None:
    config = StateStoreConfig(
        database={"url": migrated_url.render_as_string(hide_password=False)},
        state_store={"auto_register_assets": False},
    )
    with StateStore(config=config) as store:
        with pytest.raises(UnknownAssetError):
            store.asset_state("never_seen").set("k", 1)
        assert store.asset_state("never_seen").get("k") is None


def test_asset_uri_belongs_to_one_asset(migrated_url: URL) -> None:
    backend = MetastoreStateBackend(migrated_url)
    try:
        backend.set(AssetScope(name="a", uri="s3://shared"), "k", "1")
        with pytest.raises(InvalidScopeError, match="already belongs"):
            backend.set(AssetScope(name="b", uri="s3://shared"), "k", "2")
        assert backend.get(AssetScope(name="b"), "k") is None
        assert backend.get(AssetScope(uri="s3://shared"), "k") == "1"
    finally:
        backend.close()


def test_unreachable_server_is_backend_unavailable(dialect: str) -> None:
    if dialect == "sqlite":
        pytest.skip("no server")
    url = {
        "postgresql": "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test",
        "mysql": "mysql+pymysql://root:s3cret@127.0.0.1:1/test",
    }[dialect]
    backend = MetastoreStateBackend(url)
    try:
        with pytest.raises(BackendUnavailableError) as info:
            backend.get(TASK, "k")
        assert "127.0.0.1" in str(info.value)
        assert "s3cret" not in str(info.value)
        assert info.value.__cause__ is not None
    finally:
        backend.close()


def test_missing_server_database_says_create_it(db_url: URL, dialect: str) -> None:
    if dialect == "sqlite":
        pytest.skip("SQLite creates its file")
    url = db_url.set(database="statestore_no_such_database")
    if dialect == "postgresql":
        url = url.set(query={})  # the schema option belongs to the real database
    backend = MetastoreStateBackend(url.render_as_string(hide_password=False))
    try:  # not "run db upgrade": that would fail the same way and send the user in a circle
        with pytest.raises(BackendUnavailableError, match="does not exist on the server; create"):
            backend.get(TASK, "k")
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("url", "module"),
    [("postgresql+psycopg2://u@127.0.0.1/db", "psycopg2"), ("mysql+mysqldb://u@h/db", "MySQLdb")],
)
def test_missing_driver_is_a_config_error(url: str, module: str) -> None:
    import importlib.util

    from statestore import ConfigError, StateStore

    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")

    with StateStore(url) as store, pytest.raises(ConfigError, match="leave the driver out"):
        store.task_state(TASK).get("k")


async def test_missing_async_driver_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from statestore import ConfigError, StateStore

    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if it were not installed
    async with StateStore("postgresql+asyncpg://u@127.0.0.1/db") as store:
        with pytest.raises(ConfigError, match="asyncpg module, which is not installed") as caught:
            await store.task_state(TASK).aget("k")
    assert 'pip install "statestore[asyncpg]"' in str(caught.value)


async def test_sqlite_file_in_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    from statestore import StateStore

    missing = tmp_path / "no" / "such"
    with StateStore(f"sqlite:///{missing / 'state.db'}") as store:
        state = store.task_state(TASK)
        with pytest.raises(BackendUnavailableError, match=f"its folder {missing} does not"):
            state.get("k")
        with pytest.raises(BackendUnavailableError, match="does not exist"):
            await state.aget("k")
    assert not missing.exists()  # nothing created on the way
