"""What the UI's pages share: the scope a page names, checked against the grant, and
how a stored value is shown and read back from a form.

Scopes travel in the query string exactly as in the API (``dag_id``, ``run_id``,
``task_id``, ``map_index`` or ``map_key``; an asset by ``name``), parsed by
:func:`statestore.wire.scope_from_params`, so ids with ``/`` or any other character
work. Every check is the API's own (:class:`~statestore.wire.Grant`'s
``may_touch_task``, ``may_read_asset``, ``may_write_asset``), made before anything is
read, and a refusal names only what the request asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from statestore import wire
from statestore.backends.worker import escape_value, parse_envelope
from statestore.codec import decode_value, encode_value, utf8_size
from statestore.exceptions import (
    AccessDeniedError,
    ConfigError,
    InvalidValueError,
    UnsupportedOperationError,
)
from statestore.metastore.backend import MetastoreStateBackend
from statestore.scopes import AssetScope, TaskScope
from statestore.server.state import ServerState
from statestore.server.ui.session import UiSession

__all__ = [
    "FOLD_BYTES",
    "Shown",
    "asset_scope",
    "metastore",
    "parse_value",
    "scope_query",
    "show_value",
    "state",
    "task_scope",
]

FOLD_BYTES = 4096
"""Values larger than this are shown folded (a ``<details>``), with their size."""


def state(request: Request) -> ServerState:
    found: ServerState = request.app.state.statestore
    return found


def metastore(request: Request) -> MetastoreStateBackend:
    """The database backend the browse queries run on (other backends cannot list)."""
    backend = state(request).backend
    if not isinstance(backend, MetastoreStateBackend):
        raise UnsupportedOperationError(
            f"browsing needs the database backend, not {type(backend).__name__}"
        )
    return backend


def _denied(what: str) -> AccessDeniedError:
    return AccessDeniedError(f"the token does not grant {what}")


def task_scope(
    request: Request, ui: UiSession, *, write: bool = False, all_map_indices: bool = False
) -> TaskScope:
    """The task instance the query names, if the session's grant covers it."""
    del write  # a task token reads and writes its own instance alike
    scope = wire.scope_from_params(request.query_params, task=True)
    assert isinstance(scope, TaskScope)
    if not ui.grant.may_touch_task(scope, all_map_indices=all_map_indices):
        raise _denied(f"the task state of {scope.describe()}")
    return scope


def asset_scope(request: Request, ui: UiSession, *, write: bool = False) -> AssetScope:
    """The asset the query names (by ``name``), if the grant covers reading (writing)."""
    name = request.query_params.get("name")
    if name is None:
        raise InvalidValueError("the query needs name= (an asset's name)")
    scope = AssetScope(name=name)
    if write and not ui.grant.may_write_asset(scope):
        raise _denied(f"writing the state of asset {name!r}")
    if not ui.grant.may_read_asset(scope):
        raise _denied(f"reading the state of asset {name!r}")
    return scope


def scope_query(scope: TaskScope | AssetScope) -> dict[str, str]:
    """The query parameters that name ``scope`` in the UI's links (the API's own)."""
    if isinstance(scope, AssetScope):
        assert scope.name is not None
        return {"name": scope.name}
    return wire.scope_params(scope)


@dataclass(frozen=True)
class Shown:
    """A stored value as a page shows it."""

    text: str
    """Pretty JSON of the value (of the reference's envelope, for a reference)."""
    size: int
    """Bytes of the stored JSON text (UTF-8)."""
    ref: str | None
    """The object-store reference, when the row holds one instead of the value."""

    @property
    def folded(self) -> bool:
        return self.size > FOLD_BYTES


def show_value(stored: str) -> Shown:
    """The user's value of a stored JSON text: envelopes unwrapped, references named."""
    size = utf8_size(stored)
    decoded = decode_value(stored)
    try:
        envelope = parse_envelope(decoded)
    except ConfigError:  # an envelope of a kind this release does not know: show it raw
        return Shown(json.dumps(decoded, indent=2, ensure_ascii=False), size, None)
    if envelope.ref is not None:
        return Shown(json.dumps(decoded, indent=2, ensure_ascii=False), size, envelope.ref)
    return Shown(json.dumps(envelope.value, indent=2, ensure_ascii=False), size, None)


def parse_value(text: str, max_value_bytes: int) -> str:
    """The JSON text to store for what a person typed, by the library's own rules
    (``encode_value``: no null, no NaN, depth, size; a dict carrying the envelope
    marker is escaped as the accessors escape it)."""
    if not text.strip():
        raise InvalidValueError("the value is empty: type JSON, or delete the key instead")
    try:
        value: Any = decode_value(text)  # the API's own decoder (server.body.read_value)
    except ValueError as exc:
        raise InvalidValueError(f"the value is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidValueError("the value is nested too deeply") from None
    return encode_value(escape_value(value), max_bytes=max_value_bytes)


def flag(params: Mapping[str, str], name: str) -> bool:
    """A ``true``/``false`` form or query field (absent: false)."""
    return wire.flag(params, name)
