"""Stable identity for mapped tasks: ``map_key`` survives a reordered re-expansion.

Against the in-memory backend and every database, through the public accessors.
"""

from __future__ import annotations

import pytest

from statestore import (
    InvalidScopeError,
    InvalidValueError,
    StateStore,
    TaskScope,
    map_key_for,
)
from statestore.backends.objectstore import _checked, object_ref

FILES = ["s3://in/a.csv", "s3://in/b.csv", "s3://in/c.csv"]


def _instance(item: str, position: int) -> TaskScope:
    return TaskScope("ingest", "run-1", "load_file", position, map_key=map_key_for(item))


def test_reordered_inputs_keep_their_own_state(store: StateStore) -> None:
    for position, item in enumerate(FILES):  # first expansion: a, b, c
        store.task_state(_instance(item, position)).set("rows_loaded", item)
    reordered = [FILES[2], FILES[0], FILES[1]]  # the retry expands c, a, b
    for position, item in enumerate(reordered):
        assert store.task_state(_instance(item, position)).get("rows_loaded") == item
    # By position alone, index 0 would now read another file's state:
    by_position = TaskScope("ingest", "run-1", "load_file", 0)
    store.task_state(by_position).set("rows_loaded", FILES[0])
    assert store.task_state(by_position).get("rows_loaded") != reordered[0]


def test_clearing_one_keyed_instance_or_all_of_them(store: StateStore) -> None:
    keyed = [_instance(item, position) for position, item in enumerate(FILES)]
    positional = TaskScope("ingest", "run-1", "load_file", 0)
    for scope in [*keyed, positional]:
        store.task_state(scope).set("k", scope.instance)
        store.task_state(scope).set("other", 1)
    store.task_state(keyed[0]).clear()
    assert store.task_state(keyed[0]).get("k") is None
    assert store.task_state(keyed[1]).get("k") == keyed[1].instance
    assert store.task_state(positional).get("k") == "0"  # same index, different identity
    assert list(store.task_state(keyed[1]).keys()) == ["k", "other"]
    assert list(store.task_state(positional).keys()) == ["k", "other"]
    store.task_state(keyed[2]).clear(all_map_indices=True)
    for scope in [*keyed, positional]:
        assert store.task_state(scope).get("k") is None


def test_map_keys_are_stable_and_checked() -> None:
    assert map_key_for({"b": 1, "a": [1, 2]}) == map_key_for({"a": [1, 2], "b": 1})
    assert map_key_for("a") != map_key_for("b")
    assert len(map_key_for(FILES[0])) == 32
    with pytest.raises(InvalidValueError):
        map_key_for({1, 2})
    with pytest.raises(InvalidScopeError):
        TaskScope("d", "r", "t", map_key="")
    with pytest.raises(InvalidScopeError):
        TaskScope("d", "r", "t", map_key="x" * 251)
    scope = _instance(FILES[0], 4)
    assert scope.describe().startswith("task ingest/run-1/load_file[key=")
    # Objects of keyed instances get their own folder, inside the base, never the key text.
    ref = object_ref(scope, "rows")
    assert _checked(ref) == ref
    assert map_key_for(FILES[0]) not in ref
