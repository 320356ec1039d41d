"""The batch wire contract (``wire_batch``): what the client sends is what the server
reads, and what the server answers is what the client decodes -- values exact."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from statestore import wire_batch
from statestore.exceptions import InvalidValueError
from statestore.items import StoredItem
from statestore.scopes import AssetScope, TaskScope
from statestore.testing.cases import STORED_VALUES

WHEN = datetime(2026, 12, 1, 12, 30, 0, 123456, tzinfo=timezone.utc)


def test_paths_by_scope_kind() -> None:
    assert wire_batch.paths_for(TaskScope("d", "r", "t")) == (
        "/api/v1/task-state/get-many", "/api/v1/task-state/set-many",
        "/api/v1/task-state/delete-many",
    )  # fmt: skip
    assert wire_batch.paths_for(AssetScope(name="a"))[0] == "/api/v1/asset-state/get-many"


def test_keys_and_entries_round_trip_through_the_server_parser() -> None:
    keys = ["a", "é/ü", 'quote"and\\slash', "😀", "k" * 512]
    body = wire_batch.parse_body(wire_batch.keys_body(keys).decode())
    assert wire_batch.keys_from_body(body) == keys
    entries = [(f"k{i}", value) for i, value in enumerate(STORED_VALUES)]
    parsed = wire_batch.entries_from_body(
        wire_batch.parse_body(wire_batch.entries_body(entries).decode())
    )
    assert list(parsed) == [key for key, _ in entries]


def test_answers_decode_to_the_exact_stored_text() -> None:
    found = {
        f"k{i}": StoredItem(
            value, i + 1, WHEN, None if i % 2 else f"writer-{i}", None if i % 3 else WHEN
        )
        for i, value in enumerate(STORED_VALUES)
    }
    assert wire_batch.items_from_json(wire_batch.items_json(found)) == found


def test_set_params_carry_expiry_and_writer() -> None:
    params = wire_batch.set_params(TaskScope("d", "r", "t", 3), expires_at=WHEN, updated_by="me")
    assert params == {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": "3",
                      "expires_at": WHEN.isoformat(), "updated_by": "me"}  # fmt: skip
    assert wire_batch.set_params(AssetScope(name="a"), expires_at=None, updated_by=None) == {
        "name": "a"
    }


def _read(body: str) -> object:
    parsed = wire_batch.parse_body(body)
    if "items" in body:
        return wire_batch.entries_from_body(parsed)
    return wire_batch.keys_from_body(parsed)


@pytest.mark.parametrize(
    "body",
    ["{", "[]", '{"keys": "a"}', '{"items": [1]}', '{"items": [{"key": "k"}]}',
     '{"items": [{"key": 1, "value": 1}]}', '{"items": [{"key": "k", "value": 1, "x": 2}]}'],
)  # fmt: skip
def test_malformed_bodies_are_invalid_values(body: str) -> None:
    with pytest.raises(InvalidValueError):
        _read(body)
