"""A backend or store used again after close() reopens its engines instead of hanging."""

from __future__ import annotations

from sqlalchemy.engine import URL

from statestore import StateStore
from statestore.scopes import TaskScope

SCOPE = TaskScope("d", "r", "t")


def test_use_after_close_reopens(migrated_url: URL) -> None:
    store = StateStore(migrated_url.render_as_string(hide_password=False))
    store.task_state(SCOPE).set("k", 1)
    store.close()
    store.task_state(SCOPE).set("k", 2)  # used to deadlock on the backend's lock
    assert store.task_state(SCOPE).get("k") == 2
    store.close()


async def test_async_use_after_aclose_reopens(migrated_url: URL) -> None:
    store = StateStore(migrated_url.render_as_string(hide_password=False))
    await store.task_state(SCOPE).aset("k", 1)
    await store.aclose()
    await store.task_state(SCOPE).aset("k", 2)
    assert await store.task_state(SCOPE).aget("k") == 2
    await store.aclose()


def test_no_arguments_uses_sqlite_in_the_working_directory() -> None:
    from pathlib import Path

    with StateStore() as store:
        store.task_state(SCOPE).set("k", 1)
        assert store.task_state(SCOPE).get("k") == 1
    assert Path("statestore.db").is_file()  # tests run in a temporary working directory


def test_config_must_be_a_config() -> None:
    import pytest

    from statestore import InMemoryStateBackend
    from statestore.exceptions import InvalidTypeError

    with pytest.raises(InvalidTypeError):
        StateStore(config={"state_store": {}}, backend=InMemoryStateBackend())  # type: ignore[arg-type]
