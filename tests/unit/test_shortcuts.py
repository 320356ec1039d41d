"""Plain-Python shortcuts: accessors over the default store, and cron-style run ids."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import statestore
from statestore import (
    InMemoryStateBackend,
    InvalidTypeError,
    InvalidValueError,
    StateStore,
    TaskScope,
    run_id_for,
    set_default_store,
)


def test_task_and_asset_state_use_the_default_store() -> None:
    store = StateStore(backend=InMemoryStateBackend())
    set_default_store(store)
    try:
        statestore.task_state("nightly", "r1", "export").set("offset", 100)
        scope = TaskScope("nightly", "r1", "export")
        assert store.task_state(scope).get("offset") == 100
        statestore.asset_state("orders", updated_by="nightly.py").set("wm", "2026-11-28")
        item = store.asset_state("orders").get_item("wm")
        assert item is not None
        assert item.updated_by == "nightly.py"
        keyed = statestore.task_state("nightly", "r1", "export", 2, map_key="a", store=store)
        assert keyed.scope.map_key == "a"
    finally:
        set_default_store(None)
        store.close()


def test_run_ids_name_the_schedule_interval() -> None:
    hourly = timedelta(hours=1)
    at = datetime(2026, 11, 29, 6, 42, 17, tzinfo=timezone.utc)
    assert run_id_for(hourly, at) == "2026-11-29T06:00:00+00:00"
    assert run_id_for(hourly, at + timedelta(minutes=17)) == run_id_for(hourly, at)
    assert run_id_for(hourly, at + timedelta(minutes=18)) == "2026-11-29T07:00:00+00:00"
    assert run_id_for(timedelta(days=1), at) == "2026-11-29T00:00:00+00:00"
    other_zone = at.astimezone(timezone(timedelta(hours=-5)))
    assert run_id_for(hourly, other_zone) == run_id_for(hourly, at)  # same instant
    assert run_id_for(hourly).endswith(":00:00+00:00")


@pytest.mark.parametrize(
    ("every", "at", "error"),
    [
        (3600, None, InvalidTypeError),
        (timedelta(0), None, InvalidValueError),
        (timedelta(hours=1), datetime(2026, 1, 1), InvalidTypeError),
    ],
)
def test_bad_run_id_arguments_are_typed(every: object, at: object, error: type) -> None:
    with pytest.raises(error):
        run_id_for(every, at)  # type: ignore[arg-type]
