"""Envelopes: user data that looks like a marker is data; references resolve or refuse."""

from __future__ import annotations

import pytest

from statestore import ConfigError, InMemoryStateBackend, StateStore, TaskScope
from statestore.backends.offload import WorkerBackedStateBackend, ref_of
from statestore.backends.worker import MARKER, escape_value, parse_envelope, ref_envelope

SCOPE = TaskScope("d", "r", "t")


def test_escape_only_touches_marker_dicts() -> None:
    for value in (1, "s", [{"$statestore": 1}], {"a": 1}):
        assert escape_value(value) is value
    assert escape_value({MARKER: "x"}) == {MARKER: "data", "value": {MARKER: "x"}}


def test_ref_envelope_round_trip() -> None:
    text = ref_envelope("task/abc.json")
    assert ref_of(text) == "task/abc.json"
    assert parse_envelope({MARKER: "ref", "ref": "r"}).ref == "r"
    assert ref_of('{"a":1}') is None
    assert ref_of(None) is None
    with pytest.raises(ConfigError, match="unknown statestore envelope"):
        parse_envelope({MARKER: "surprise"})


def test_a_reference_without_a_worker_backend_is_a_clear_error() -> None:
    backend = InMemoryStateBackend()
    backend.set(SCOPE, "k", ref_envelope("task/x.json"))
    with pytest.raises(ConfigError, match=r"\[workers\] state_backend"):
        StateStore(backend=backend).task_state(SCOPE).get("k")


class DictWorker(InMemoryStateBackend):
    """A worker-side backend over a dict: references are "obj:<key>"."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, str] = {}

    def serialize_task_state_to_ref(self, *, value: str, key: str, scope: TaskScope) -> str:
        self.objects[f"obj:{key}"] = value
        return f"obj:{key}"

    def deserialize_task_state_from_ref(self, stored: str) -> str:
        try:
            return self.objects[stored]
        except KeyError:
            raise LookupError(stored) from None

    def delete_task_state_objects(
        self, *, scope: TaskScope, key: str | None = None, all_map_indices: bool = False
    ) -> None:
        if key is None:
            self.objects.clear()
        else:
            self.objects.pop(f"obj:{key}", None)


def test_custom_worker_backend_ordering_and_missing_objects() -> None:
    primary, worker = InMemoryStateBackend(), DictWorker()
    backend = WorkerBackedStateBackend(primary, worker)
    store = StateStore(backend=backend)
    state = store.task_state(SCOPE)
    state.set("k", {"v": 1})
    assert primary.get(SCOPE, "k") == ref_envelope("obj:k")
    assert state.get("k") == {"v": 1}
    worker.objects.clear()  # the object vanished (a racing delete): the key reads as gone
    assert state.get("k") is None
    state.set("k", 2)
    state.delete("k")
    assert primary.get(SCOPE, "k") is None
    assert worker.objects == {}
    primary.set(SCOPE, "inline", "5")  # written before a worker backend was configured
    assert state.get("inline") == 5
