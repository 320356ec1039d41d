"""The HTTP contract of batches, imported by the server's batch routes and the client.

One ``POST`` per batch, the scope in the query as on every state route (so the token
is checked against it by the same dependency), the keys in a JSON body:

* ``POST {state}/get-many`` ``{"keys": [k, ...]}`` -> ``200 {"items": [{"key", "value",
  "version", "updated_at", "updated_by", "expires_at"}, ...]}``: the live keys only,
  each value inlined as the JSON it is (``get_many`` and ``get_items`` send the same).
* ``POST {state}/set-many`` ``{"items": [{"key": k, "value": <JSON>}, ...]}``, with
  ``expires_at`` (task state) and ``updated_by`` in the query as on a one-key ``PUT``
  -> ``204``; all or nothing.
* ``POST {state}/delete-many`` ``{"keys": [k, ...]}`` -> ``204``.

Values are inlined by concatenating the stored JSON text, never decoded on the way out
(the listing does the same); the client compacts each back into text. Malformed bodies
are ``InvalidValueError`` problems (422), like any other bad request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from statestore import wire
from statestore.codec import decode_value
from statestore.exceptions import InvalidValueError
from statestore.items import StoredItem
from statestore.scopes import StateScope, TaskScope

__all__ = [
    "ASSET_DELETE_MANY",
    "ASSET_GET_MANY",
    "ASSET_SET_MANY",
    "TASK_DELETE_MANY",
    "TASK_GET_MANY",
    "TASK_SET_MANY",
    "entries_body",
    "entries_from_body",
    "items_from_json",
    "items_json",
    "keys_body",
    "keys_from_body",
    "parse_body",
    "paths_for",
    "set_params",
]

TASK_GET_MANY = f"{wire.TASK_STATE}/get-many"
TASK_SET_MANY = f"{wire.TASK_STATE}/set-many"
TASK_DELETE_MANY = f"{wire.TASK_STATE}/delete-many"
ASSET_GET_MANY = f"{wire.ASSET_STATE}/get-many"
ASSET_SET_MANY = f"{wire.ASSET_STATE}/set-many"
ASSET_DELETE_MANY = f"{wire.ASSET_STATE}/delete-many"


def paths_for(scope: StateScope) -> tuple[str, str, str]:
    """The get-many, set-many and delete-many paths of ``scope``'s kind."""
    if isinstance(scope, TaskScope):
        return TASK_GET_MANY, TASK_SET_MANY, TASK_DELETE_MANY
    return ASSET_GET_MANY, ASSET_SET_MANY, ASSET_DELETE_MANY


def _key_json(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


# -- requests (client side) ----------------------------------------------------------------


def keys_body(keys: Sequence[str]) -> bytes:
    """The body of a get-many or delete-many."""
    return ('{"keys":[' + ",".join(map(_key_json, keys)) + "]}").encode("utf-8")


def entries_body(entries: Sequence[tuple[str, str]]) -> bytes:
    """The body of a set-many: each value's JSON text inlined verbatim."""
    parts = [f'{{"key":{_key_json(key)},"value":{value}}}' for key, value in entries]
    return ('{"items":[' + ",".join(parts) + "]}").encode("utf-8")


def set_params(
    scope: StateScope, *, expires_at: datetime | None, updated_by: str | None
) -> dict[str, str]:
    """The query of a set-many: the scope, and as on a one-key PUT the expiry and writer."""
    params = wire.scope_params(scope)
    if expires_at is not None:
        params["expires_at"] = expires_at.isoformat()
    if updated_by is not None:
        params["updated_by"] = updated_by
    return params


# -- requests (server side) ----------------------------------------------------------------


def parse_body(text: str) -> Any:
    """A batch body as JSON (a value's own rules are checked later, per value)."""
    try:
        return decode_value(text)
    except ValueError as exc:  # JSONDecodeError is one
        raise InvalidValueError(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidValueError("the body is nested too deeply") from None


def _list_field(body: Any, name: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get(name), list):
        raise InvalidValueError(f'the body must be a JSON object {{"{name}": [...]}}')
    found: list[Any] = body[name]
    return found


def keys_from_body(body: Any) -> list[Any]:
    """The ``keys`` of a get-many or delete-many body (checked as keys by the caller)."""
    return _list_field(body, "keys")


def entries_from_body(body: Any) -> dict[Any, Any]:
    """The ``{key: value}`` of a set-many body (a key given twice: the last one wins)."""
    entries: dict[Any, Any] = {}
    for entry in _list_field(body, "items"):
        if not isinstance(entry, dict) or set(entry) != {"key", "value"}:
            raise InvalidValueError('each item must be {"key": ..., "value": ...}')
        key = entry["key"]
        if not isinstance(key, str):
            raise InvalidValueError(f"a key must be a string, not {json.dumps(key)[:40]}")
        entries[key] = entry["value"]
    return entries


# -- responses -----------------------------------------------------------------------------


def _optional_time(moment: datetime | None) -> str:
    return "null" if moment is None else f'"{moment.isoformat()}"'


def items_json(items: dict[str, StoredItem]) -> str:
    """A get-many answer: each stored text inlined verbatim, never decoded."""
    parts = [
        f'{{"key":{_key_json(key)},"value":{item.value},"version":{item.version},'
        f'"updated_at":"{item.updated_at.isoformat()}",'
        f'"updated_by":{"null" if item.updated_by is None else _key_json(item.updated_by)},'
        f'"expires_at":{_optional_time(item.expires_at)}}}'
        for key, item in items.items()
    ]
    return '{"items":[' + ",".join(parts) + "]}"


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def items_from_json(body: bytes | str) -> dict[str, StoredItem]:
    """The live keys of a get-many answer, each value compacted back into JSON text."""
    found: dict[str, StoredItem] = {}
    for entry in json.loads(body)["items"]:
        updated_at = datetime.fromisoformat(entry["updated_at"])
        found[entry["key"]] = StoredItem(
            value=json.dumps(
                entry["value"], ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ),
            version=int(entry["version"]),
            updated_at=updated_at,
            updated_by=entry["updated_by"],
            expires_at=_time(entry["expires_at"]),
        )
    return found
