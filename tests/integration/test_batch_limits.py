"""The largest batch the settings allow works on every dialect, sync and async.

``[state_store] max_batch_keys`` goes up to 5000 because every dialect takes a batch
of 5000 keys in one statement: PostgreSQL binds three arrays, SQLite and MySQL three
parameters per key (under SQLite's 32766 and MySQL's 65535), the scope bound once.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import URL

from statestore import AssetScope, StateStore, StateStoreConfig, TaskScope

pytestmark = pytest.mark.usefixtures("migrated_url")

MOST = 5000


def _store(url: URL) -> StateStore:
    config = StateStoreConfig(
        database={"url": url.render_as_string(hide_password=False)},
        state_store={"max_batch_keys": MOST},
    )
    return StateStore(config=config)


def test_the_largest_batch_on_every_dialect(migrated_url: URL) -> None:
    keys = [f"key-{i:05d}" for i in range(MOST)]
    with _store(migrated_url) as store:
        for state in (
            store.task_state(TaskScope("dag", "run", "task")),
            store.asset_state(AssetScope(name="big-batches")),
        ):
            state.set_many({key: i for i, key in enumerate(keys)})
            found = state.get_many(keys)
            assert found == {key: i for i, key in enumerate(keys)}
            assert list(found) == keys
            items = state.get_items(keys[-3:])
            assert [(k, i.value, i.version) for k, i in items.items()] == [
                (key, MOST - 3 + n, 1) for n, key in enumerate(keys[-3:])
            ]
            state.delete_many(keys[: MOST - 1])
            assert state.get_many(keys) == {keys[-1]: MOST - 1}


async def test_the_largest_batch_async(migrated_url: URL) -> None:
    keys = [f"key-{i:05d}" for i in range(MOST)]
    store = _store(migrated_url)
    try:
        state = store.task_state(TaskScope("dag", "run", "async-task"))
        await state.aset_many(dict.fromkeys(keys, "v"))
        assert await state.aget_many(keys) == dict.fromkeys(keys, "v")
        await state.adelete_many(keys)
        assert await state.aget_many(keys) == {}
    finally:
        await store.aclose()
